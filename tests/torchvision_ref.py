"""torchvision as a reference in tests.

torchvision 0.28.0 installs beside the project's torch 2.13.0 CPU build
(`pip install --no-deps torchvision==0.28.0`, done by the Makefile's set-up), but its C extension
cannot load against that torch, so importing it fails where it registers its meta kernels for
`torchvision::nms` and `torchvision::qnms`.  Defining the two op schemas before the import is
enough for every classification model to build (the detection ops themselves stay unusable).

    from tests.torchvision_ref import models, rerandomise   # models is None without torchvision
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _define_ops() -> torch.library.Library | None:
    # Only when the C extension has not registered them already (a working torchvision build).
    if _has_op("nms"):
        return None
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return lib


def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


# Kept alive at module level: the definitions disappear when the Library object is collected.
_LIB = _define_ops()

try:
    import torchvision  # noqa: E402
    from torchvision import models  # noqa: E402
except Exception as err:  # noqa: BLE001 - not installed, or broken in a way we cannot fix here
    torchvision = None
    models = None
    IMPORT_ERROR: Exception | None = err
else:
    IMPORT_ERROR = None


def rerandomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every layer random, non-trivial values so that no layer is inert in a comparison:
    conv and linear weights He-initialised (normal, std sqrt(2 / fan_in)), random biases,
    BatchNorm with random affine weight and bias and random running mean and variance (so eval
    mode really normalises), and every other parameter random too: LayerNorm's weight and bias,
    per-channel layer scales (around 1 rather than torchvision's 1e-6, so the branch counts),
    embeddings and tables.  Deterministic for a seed; returns the model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                c = m.num_features
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(c, generator=g) * 0.1)
                if m.track_running_stats:
                    m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                    m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
            else:  # LayerNorm, layer scales, embeddings, any parameter a module holds itself
                for key, p in m.named_parameters(recurse=False):
                    if key == "bias":
                        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
                    elif key == "weight" and p.dim() == 1:
                        p.copy_(torch.rand(p.shape, generator=g) + 0.5)
                    else:
                        p.copy_(torch.rand(p.shape, generator=g) + 0.5 if p.numel() < 4096 and p.dim() <= 3
                                and p.shape[-1] == 1 else torch.randn(p.shape, generator=g) * 0.5)
    return model


def compare(path, network: str, size: int | None = None, builder: str | None = None, seed: int = 1,
            **kwargs) -> dict:
    """Compile `network` of the spec at `path` and hold it against torchvision's model of the same
    name (or `builder`, built with `kwargs`): parameters, MACs (FlopCounterMode / 2 at the spec's
    input size, on the meta device), every BatchNorm's eps and momentum and every Dropout's p (in
    order), and outputs in eval mode after loading torchvision's
    re-randomised weights with `archlang.load_weights`, at `size` (default: the spec's own input
    size).  Returns the figures; raises AssertionError where they differ."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    import archlang

    net = archlang.compile_file(path, network=network)[network]
    build = getattr(models, builder or network)
    try:
        with torch.device("meta"):
            meta = build(weights=None, **kwargs)
    except NotImplementedError:  # RegNet reads a tensor's values while it builds
        with _no_init():
            meta = build(weights=None, **kwargs).to("meta")
    params = sum(p.numel() for p in meta.parameters())
    counter = FlopCounterMode(display=False)
    torch.backends.mha.set_fastpath_enabled(False)
    with counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        meta.eval()(torch.empty(1, *net.input_shape, device="meta"))
    macs = counter.get_total_flops() // 2
    assert net.params == params, f"{network}: params {net.params:,} here, {params:,} in torchvision"
    assert net.macs == macs, f"{network}: MACs {net.macs:,} here, {macs:,} in torchvision"
    torch.manual_seed(0)
    if _only_bn_buffers(meta):  # every tensor gets new values below: skip the models' own init
        reference = meta.to_empty(device="cpu")
    else:
        reference = build(weights=None, **kwargs)
    reference = rerandomise(reference, seed=seed).eval()
    with torch.device("meta"):
        generated = net.to_torch()
    if _only_bn_buffers(generated):
        generated = generated.to_empty(device="cpu")
    else:
        generated = net.to_torch()
    generated.eval()
    assert _training_settings(generated) == _training_settings(reference), f"{network}: BN/dropout settings"
    archlang.load_weights(generated, reference.state_dict())
    c, h, w = net.input_shape
    shape = (2, c, size or h, size or w)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        expected, got = reference(x), generated(x)
    assert got.shape == expected.shape, f"{network}: output {tuple(got.shape)} here, {tuple(expected.shape)}"
    scale = expected.abs().max().item()
    diff = (got - expected).abs().max().item()
    torch.testing.assert_close(got, expected, atol=1e-4 * scale, rtol=1e-4)
    return {"params": params, "macs": macs, "max_abs_diff": diff, "scale": scale, "size": shape[2:]}


class _no_init:
    """Builds a model without running torch.nn.init (its values are replaced anyway)."""

    NAMES = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "kaiming_uniform_",
             "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_")

    def __enter__(self):
        self.saved = {n: getattr(nn.init, n) for n in self.NAMES}
        for n in self.NAMES:
            setattr(nn.init, n, lambda tensor, *a, **k: tensor)

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(nn.init, n, f)


def _training_settings(model: nn.Module) -> list:
    """What eval-mode outputs do not show: each BatchNorm's eps and momentum, each Dropout's p, in order."""
    kinds = nn.BatchNorm1d | nn.BatchNorm2d | nn.Dropout
    return [("Dropout", m.p) if isinstance(m, nn.Dropout) else (type(m).__name__, m.eps, m.momentum)
            for m in model.modules() if isinstance(m, kinds)]


def _only_bn_buffers(model: nn.Module) -> bool:
    """Whether every buffer is a BatchNorm statistic (which rerandomise and load_weights set)."""
    return all(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.modules() if list(m.buffers(False)))


if __name__ == "__main__":  # python -m tests.torchvision_ref FILE NETWORK [SIZE]
    import sys

    _path, _net, *_rest = sys.argv[1:]
    print(compare(_path, _net, int(_rest[0]) if _rest else None))
