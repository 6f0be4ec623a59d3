"""`archc import` (archlang.importer.from_torch): PyTorch models back to .arch text.

Round trips against the models themselves: the imported text compiles to the model's parameter
count and MACs (FlopCounterMode / 2, on the meta device), the model's re-randomised weights load
into the compiled module (by name where the names line up, else by order) and the outputs agree
to 1e-4 of their scale in eval mode."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archlang  # noqa: E402
from archlang.importer import from_torch  # noqa: E402
from tests.torchvision_ref import models, rerandomise  # noqa: E402


def _macs(model: nn.Module, dims) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.backends.mha.set_fastpath_enabled(False)
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model.eval()(torch.empty(1, *dims, device=next(model.parameters()).device))
    return counter.get_total_flops() // 2


def round_trip(build, dims, size=None, name="net", strict=False) -> dict:
    """Import `build()` (made on the meta device for the text and the counts), compile it, and
    hold the compiled network against a real, re-randomised instance.  Returns the figures."""
    with torch.device("meta"):
        meta = build()
    text = from_torch(meta, dims, name=name)
    net = archlang.compile(text, f"{name}.arch")[name]
    params = sum(p.numel() for p in meta.parameters())
    assert net.params == params, text
    assert net.macs == _macs(meta, dims), text
    torch.manual_seed(0)
    reference = rerandomise(build()).eval()
    generated = net.to_torch().eval()
    if strict:
        generated.load_state_dict(reference.state_dict())
    else:
        archlang.load_weights(generated, reference.state_dict())
    shape = (2, *dims) if size is None else (2, dims[0], size, size)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), generated(x)
    torch.testing.assert_close(got, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)
    return {"text": text, "lines": len(text.splitlines()), "params": params, "macs": net.macs}


needs_tv = pytest.mark.skipif(models is None, reason="torchvision is not importable")


@needs_tv
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_round_trip_loads_by_name(name):
    figures = round_trip(lambda: getattr(models, name)(weights=None), (3, 224, 224), 64, name, strict=True)
    assert "set shortcut_name = downsample" in figures["text"]
    assert figures["lines"] < 40


@needs_tv
def test_resnet152_imports_to_under_40_lines():
    with torch.device("meta"):
        model = models.resnet152(weights=None)
    text = from_torch(model, (3, 224, 224), name="resnet152")
    assert len(text.splitlines()) < 40
    assert "layer3  = bottleneck 256 /2 > bottleneck 256 x35" in text
