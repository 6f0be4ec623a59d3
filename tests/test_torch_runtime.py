"""Generated modules as a user trains and deploys them: loss falls in a short CPU training run,
train/eval modes, dtypes and memory formats, and the graph tools (fx, TorchScript, export,
torch.compile)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import archlang  # noqa: E402
from tests.conftest import SPECS  # noqa: E402

TINY_RESNET = """\
use "resnet34.arch"
set padding = same

network resnet_tiny(classes=4):
    input 3x16x16
    stem   = conv3x3 16 > bn > relu
    layer1 = stage 16 1 /1
    layer2 = stage 32 1
    head   = gap > dense classes
"""


def tiny_resnet():
    return archlang.compile(TINY_RESNET, "tiny.arch", base=SPECS)["resnet_tiny"]


def _train(module: nn.Module, inputs, labels, steps=30, lr=3e-3) -> list[float]:
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(module(inputs), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("make", ["lenet5", "resnet_tiny"])
def test_loss_falls_in_30_steps(make):
    torch.manual_seed(0)
    if make == "lenet5":
        net = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"].with_arguments(classes=4)
    else:
        net = tiny_resnet()
    module = net.to_torch()
    classes = net.output_shape[0]
    # a learnable synthetic task: the class is the quadrant holding a bright square
    n = 64
    labels = torch.arange(n) % classes
    inputs = torch.randn(n, *net.input_shape) * 0.1
    h, w = net.input_shape[1] // 2, net.input_shape[2] // 2
    for i, c in enumerate(labels.tolist()):
        r, q = divmod(c % 4, 2)
        inputs[i, :, r * h:(r + 1) * h, q * w:(q + 1) * w] += 1.0
    losses = _train(module, inputs, labels)
    assert losses[-1] < 0.5 * losses[0], losses
    module.eval()
    with torch.no_grad():
        accuracy = (module(inputs).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9


def test_dropout_and_bn_follow_train_and_eval():
    src = "network n:\n    input 16\n    dense 64 > bn > relu > dropout 0.5 > dense 4\n"
    net = archlang.compile(src, "t.arch")["n"]
    module = net.to_torch()
    x = torch.randn(8, 16)
    module.train()
    torch.manual_seed(0)
    a = module(x)
    torch.manual_seed(1)
    b = module(x)
    assert not torch.equal(a, b)  # dropout is active
    module.eval()
    before = module.get_submodule("bn").running_mean.clone()
    assert torch.equal(module(x), module(x))
    assert torch.equal(module.get_submodule("bn").running_mean, before)  # eval does not update statistics


def test_dtype_device_and_memory_format_are_not_hard_coded():
    net = tiny_resnet()
    module = net.to_torch().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = module(x)
        double = module.to(torch.float64)(x.double())
        assert double.dtype == torch.float64
        torch.testing.assert_close(double.float(), ref, atol=1e-5, rtol=1e-5)
        module = module.float().to(memory_format=torch.channels_last)
        torch.testing.assert_close(module(x.to(memory_format=torch.channels_last)), ref, atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = module(x)
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), ref, atol=0.1, rtol=0.1)


# the networks that exercise every emitted construct: residual sums, Ws, zero-pad shortcuts,
# concats, implicit flatten
GRAPH_CASES = [("resnet34_options.arch", "resnet34_a"), ("googlenet.arch", "googlenet"),
               ("resnets.arch", "resnet18"), ("lenet5.arch", "lenet5")]


@pytest.mark.filterwarnings("ignore:`torch.jit.script")
@pytest.mark.parametrize("file,name", GRAPH_CASES, ids=[c[1] for c in GRAPH_CASES])
def test_fx_script_and_export_agree_with_eager(file, name):
    net = archlang.compile_file(SPECS / file)[name]
    module = net.to_torch().eval()
    size = 32 if name == "lenet5" else 64
    x = torch.randn(2, net.input_shape[0], size, size)
    with torch.no_grad():
        expected = module(x)
        traced = torch.fx.symbolic_trace(module)
        torch.testing.assert_close(traced(x), expected)
        scripted = torch.jit.script(module)
        torch.testing.assert_close(scripted(x), expected)
        exported = torch.export.export(module, (x,))
        torch.testing.assert_close(exported.module()(x), expected)


@pytest.mark.slow
def test_torch_compile_runs_on_cpu():
    net = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"]
    module = net.to_torch().eval()
    compiled = torch.compile(module)
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)
