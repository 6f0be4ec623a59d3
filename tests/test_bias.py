"""`bias=auto` on pre-activation networks: a conv whose output reaches a BN only through sums
(and concats) drops its bias, as the Wide ResNet and pre-activation ResNet authors write every
conv without one.  The reference counts come from hand-written PyTorch modules."""

from __future__ import annotations

import pytest

import archlang

torch = pytest.importorskip("torch")
nn = torch.nn

WRN = """\
set padding = same

# the first block of a group: its 1x1 shortcut reads the activated input (Zagoruyko & Komodakis)
def wide_first(c, stride) = bn > relu > (conv3x3 c /stride > bn > relu > conv3x3 c | conv1x1 c /stride)
def wide(c) = bn > relu > conv3x3 c > bn > relu > conv3x3 c | skip
def group(c, n, stride) = wide_first c stride > wide c x(n-1)

network wrn(depth=16, k=8, classes=10):
    input 3x32x32
    conv1 = conv3x3 16
    conv2 = group 16*k (depth-4)//6 1
    conv3 = group 32*k (depth-4)//6 2
    conv4 = group 64*k (depth-4)//6 2
    head  = bn > relu > gap > dense classes
"""

PREACT = """\
set padding = same

# He et al. 2016, Identity Mappings in Deep Residual Networks: BN and ReLU before each conv
def preact_first(c, stride) = bn > relu > (conv3x3 c /stride > bn > relu > conv3x3 c | conv1x1 c /stride)
def preact(c) = bn > relu > conv3x3 c > bn > relu > conv3x3 c | skip
def stage(c) = preact_first c 2 > preact c

network preact18(classes=10):
    input 3x32x32
    conv1  = conv3x3 64
    layer1 = preact 64 x2
    layer2 = stage 128
    layer3 = stage 256
    layer4 = stage 512
    head   = HEAD
"""


class PreActBlock(nn.Module):
    """The block of the authors' code: every conv without bias; a 1x1 shortcut (no BN) on the
    activated input where the width or the size changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = torch.relu(self.bn1(x))
        y = self.conv2(torch.relu(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class PreActNet(nn.Module):
    def __init__(self, widths, blocks: int, classes: int = 10, final_bn: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16 if len(widths) == 3 else widths[0], 3, 1, 1, bias=False)  # WRN: 16
        layers, cin = [], self.conv1.out_channels
        for i, c in enumerate(widths):
            stride = 1 if i == 0 else 2
            for j in range(blocks):
                layers.append(PreActBlock(cin, c, stride if j == 0 else 1))
                cin = c
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin) if final_bn else None
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(self.conv1(x))
        if self.bn is not None:
            x = torch.relu(self.bn(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _same_outputs(net: archlang.Network, reference: nn.Module) -> None:
    """The reference's weights, in registration order, give the generated module the same outputs."""
    torch.manual_seed(0)
    module = net.to_torch().eval()
    reference = reference.eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.uniform_(-0.2, 0.2)
        for b in reference.buffers():
            if b.dtype.is_floating_point:
                b.uniform_(0.5, 1.5)
    theirs, ours = reference.state_dict(), module.state_dict()
    assert [t.shape for t in theirs.values()] == [t.shape for t in ours.values()]
    module.load_state_dict(dict(zip(ours, theirs.values(), strict=True)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(module(x), reference(x), rtol=1e-4, atol=1e-4)


def test_wrn_16_8_has_the_papers_11_0m_parameters_and_no_conv_bias():
    net = archlang.compile(WRN, "wrn.arch")["wrn"]
    reference = PreActNet([128, 256, 512], blocks=2)
    assert _count(reference) == 10_961_370  # Zagoruyko & Komodakis, Table: WRN-16-8, 11.0M
    assert net.params == _count(reference)
    assert round(net.params / 1e6, 1) == 11.0
    assert [n.attrs["bias"] for n in net.nodes if n.op == "conv"] == [False] * 16
    assert _count(net.to_torch()) == net.params  # the generated classes decide as the IR does
    _same_outputs(net, reference)


def test_wrn_28_10_counts_as_the_paper():
    net = archlang.compile(WRN, "wrn.arch", overrides={"depth": 28, "k": 10})["wrn"]
    assert net.params == _count(PreActNet([160, 320, 640], blocks=4)) == 36_479_194  # the paper: 36.5M


def test_preact_resnet18_has_no_conv_bias_before_its_final_bn():
    net = archlang.compile(PREACT.replace("HEAD", "bn > relu > gap > dense classes"), "p.arch")["preact18"]
    reference = PreActNet([64, 128, 256, 512], blocks=2)
    assert net.params == _count(reference)
    assert not any(n.attrs["bias"] for n in net.nodes if n.op == "conv")
    _same_outputs(net, reference)


def test_without_the_final_bn_the_last_stage_keeps_the_biases_nothing_absorbs():
    """The last stage's sums reach the classifier without a BN: the biases of its two second
    convs and of its shortcut stay (3 x 512); the stages before end in a BN (layer4's first)."""
    net = archlang.compile(PREACT.replace("HEAD", "gap > dense classes"), "p.arch")["preact18"]
    reference = PreActNet([64, 128, 256, 512], blocks=2, final_bn=False)
    assert net.params == _count(reference) + 3 * 512
    kept = [n.path for n in net.nodes if n.op == "conv" and n.attrs["bias"]]
    assert kept == ["layer4.0.branch1.conv2", "layer4.0.branch2.conv", "layer4.1.conv2"]
    assert _count(net.to_torch()) == net.params  # layer4's blocks are classes of their own
    for conv in (reference.layers[6].conv2, reference.layers[6].shortcut, reference.layers[7].conv2):
        conv.bias = nn.Parameter(torch.zeros(512))  # registered where Conv2d registers its bias
    _same_outputs(net, reference)


@pytest.mark.parametrize(("body", "biases"), [
    ("conv3x3 same | skip\nbn", 0),                      # the sum feeds a BN
    ("conv3x3 same | skip\nrelu > bn", 16),              # an activation between: the bias matters
    ("conv3x3 same | skip", 16),                         # the network's output
    ("(conv3x3 same | skip) | skip\nbn", 0),             # sums of sums
    ("a = conv3x3 same | skip\nbn\nconv3x3 same | @a", 32),  # @a is also read where nothing absorbs
    ("[conv3x3 8 same, skip] > bn", 0),                  # a concat on channels hands it on too
    ("(conv3x3 same & skip) > bn", 16),                  # a product scales it: no
])
def test_which_sums_absorb_a_bias(body, biases):
    lines = "\n".join("    " + line for line in body.split("\n"))
    net = archlang.compile(f"network n:\n    input 16x8x8\n{lines}\n", "t.arch")["n"]
    assert sum(n.attrs["out"] for n in net.nodes if n.op == "conv" and n.attrs["bias"]) == biases


def test_the_importer_writes_a_preactivation_model_without_bias_flags():
    from archlang.importer import from_torch

    reference = PreActNet([64, 128, 256, 512], blocks=2)
    text = from_torch(reference, (3, 32, 32), name="preact")
    assert "nobias" not in text and " bias" not in text
    assert archlang.compile(text, "preact.arch")["preact"].params == _count(reference)


@pytest.mark.parametrize(("c", "params"), [
    (8, 8 * 8 + 8 + 2 * 8 + 8 * 8 + 8),   # the skip fits: the first sum also reaches the output, bias kept
    (16, 8 * 8 + 2 * 8 + 8 * 16 + 16),    # the skip is dropped: the first sum reaches only the bn
])
def test_a_bias_behind_a_skip_optional_whose_fit_depends_on_a_value(c, params):
    """Found by the differential test: the generated classes would have to follow the fit, so
    the module is written for the compiled values, and its count is the IR's."""
    src = "network n(c=8):\n    input 8x8x8\n    conv1x1 8 | skip\n    (skip optional | bn > conv1x1 c > relu) > relu\n"
    net = archlang.compile(src, "t.arch", overrides={"c": c})["n"]
    assert net.params == params == _count(net.to_torch())
