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
    conv and linear weights He-initialised (normal, std sqrt(2 / fan_in)), random biases, and
    BatchNorm with random affine weight and bias and random running mean and variance (so eval
    mode really normalises).  Deterministic for a seed; returns the model."""
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
    return model
