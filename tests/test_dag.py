"""References (`@label`), fitted references (`crop`, `pad`), auxiliary heads and `output` lines:
shapes and counts, the generated module against hand-written PyTorch, its readable signatures,
the report, the diagram and the layout."""

from __future__ import annotations

import pytest

import archlang
from archlang.frontend.format import format_source, same_ast

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

FPN = """\
network fpn:
    input 3x32x32
    c2 = conv3x3 8 /2 same > relu
    c3 = conv3x3 16 /2 same > relu
    c4 = conv3x3 32 /2 same > relu
    p4 = conv1x1 16
    p3 = upsample 2 > (skip | @c3 > conv1x1 16)
    p2 = upsample 2 > (skip | @c2 > conv1x1 16)
    out = [@p4 > upsample 4, @p3 > upsample 2, skip] > conv1x1 4
"""


class Fpn(nn.Module):
    """The network above, by hand."""

    def __init__(self):
        super().__init__()
        self.c2 = nn.Conv2d(3, 8, 3, 2, 1)
        self.c3 = nn.Conv2d(8, 16, 3, 2, 1)
        self.c4 = nn.Conv2d(16, 32, 3, 2, 1)
        self.p4 = nn.Conv2d(32, 16, 1)
        self.l3 = nn.Conv2d(16, 16, 1)
        self.l2 = nn.Conv2d(8, 16, 1)
        self.out = nn.Conv2d(48, 4, 1)

    def forward(self, x):
        c2 = F.relu(self.c2(x))
        c3 = F.relu(self.c3(c2))
        c4 = F.relu(self.c4(c3))
        p4 = self.p4(c4)
        p3 = F.interpolate(p4, scale_factor=2) + self.l3(c3)
        p2 = F.interpolate(p3, scale_factor=2) + self.l2(c2)
        return self.out(torch.cat([F.interpolate(p4, scale_factor=4), F.interpolate(p3, scale_factor=2), p2], 1))


def _load_and_compare(net, reference, train=False, x=None):
    generated = net.to_torch()
    archlang.load_weights(generated, reference.state_dict())
    generated.train(train)
    reference.train(train)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0)) if x is None else x
    with torch.no_grad():
        return generated(x), reference(x)


def test_an_fpn_of_references_equals_hand_written_pytorch():
    net = archlang.compile(FPN)["fpn"]
    assert net.output_shape == (4, 16, 16)
    reference = Fpn()
    assert net.params == sum(p.numel() for p in reference.parameters())
    got, expected = _load_and_compare(net, reference)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    source = net.source()
    assert "def forward(self, x, c3):" in source  # p3 reads the line before it (p4) and c3
    assert "p3 = self.p3(p4, c3)" in source and "x = self.out(x, p4, p3)" in source


def test_references_inside_a_def_and_to_the_input():
    text = """\
def dense_pair(c):
    a = conv3x3 c same > relu
    b = conv3x3 c same > relu
    [@input, @a, skip]

network n:
    input 4x8x8
    dense_pair 4
    dense_pair 6
    back = @input > conv1x1 22
    out = skip & sigmoid
"""
    net = archlang.compile(text)["n"]
    assert net.output_shape == (22, 8, 8)
    assert [n.shape.dims for n in net.nodes if n.op == "_concat"] == [(12, 8, 8), (24, 8, 8)]
    # `back` ignores the line before it: the network's input feeds its conv
    back = next(n for n in net.nodes if n.path == "back")
    assert back.inputs == (0,)


@pytest.mark.parametrize("calls", ["    blk 6\n    blk 6\n", "    layer = blk 6 x2\n"])
def test_a_repeated_def_call_reading_its_input_by_reference(calls):
    """The second call is a copy of the first (replay): its `@input` is still read by reference
    (it crashed the compiler's invariant check when the def's last line had no label)."""
    text = f"""\
def blk(c):
    a = conv3x3 c same
    b = [@a, @input]
    conv1x1 c | @a

network n:
    input 6x8x8
{calls}"""
    net = archlang.compile(text)["n"]

    class Blk(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(6, 6, 3, padding=1)
            self.conv = nn.Conv2d(12, 6, 1)

        def forward(self, x):
            a = self.a(x)
            return self.conv(torch.cat([a, x], 1)) + a

    reference = nn.Sequential(Blk(), Blk())
    assert net.params == sum(p.numel() for p in reference.parameters())
    got, expected = _load_and_compare(net, reference)
    torch.testing.assert_close(got, expected)


def test_sum_and_product_branches_may_be_references():
    text = """\
network n:
    input 8x8x8
    a = conv3x3 8 same
    b = relu > (skip | @a)
    c = @a & sigmoid
"""
    net = archlang.compile(text)["n"]

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            a = self.a(x)
            return a * torch.sigmoid(F.relu(a) + a)

    got, expected = _load_and_compare(net, Ref())
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize(("line", "shape", "fit"), [
    ("[@a crop, skip]", (12, 6, 6), "_crop"),
    ("[skip, @a pad]", (12, 10, 10), "_zeropad"),
    ("conv1x1 8 | @a crop", (8, 6, 6), "_crop"),
    ("conv1x1 8 | @a pad", (8, 10, 10), "_zeropad"),
])
def test_a_fitted_reference_and_the_other_branches_meet_at_one_size(line, shape, fit):
    """crop takes the smaller size (the larger is centre-cropped), pad the larger (the smaller is
    zero-padded): whichever side is larger."""
    text = f"network n:\n    input 8x10x10\n    a = conv3x3 8 same\n    b = conv5x5 4 valid\n    c = {line}\n"
    net = archlang.compile(text)["n"]
    assert net.output_shape == shape
    assert any(n.op == fit for n in net.nodes)


def test_crop_and_pad_are_centred_as_the_u_net_and_milesial_take_them():
    text = ("network n:\n    input 1x9x8\n    a = maxpool2x2\n    c = [@input crop, upsample 2]\n"
            "    d = [@input pad, skip]\n")
    net = archlang.compile(text)["n"]
    module = net.to_torch()
    x = torch.arange(72.0).reshape(1, 1, 9, 8)
    up = F.interpolate(F.max_pool2d(x, 2), scale_factor=2)  # 1x8x8
    c = torch.cat([x[:, :, 0:8, 0:8], up], 1)  # 9 → 8: the top row is kept (floor of half the difference)
    expected = torch.cat([x, F.pad(c, [0, 0, 0, 1])], 1)  # 8 → 9: the extra row goes to the bottom
    torch.testing.assert_close(module(x), expected)


AUX = """\
network aux_net(classes=5):
    input 3x16x16
    stem = conv3x3 8 same > relu
    mid = conv3x3 16 /2 same > relu
    aux side = gap > dense classes
    aux side2 = @stem > gap > dense classes
    top = conv3x3 16 same > relu > gap > dense classes
"""


class AuxRef(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 16, 3, 2, 1)
        self.side = nn.Linear(16, 5)
        self.side2 = nn.Linear(8, 5)
        self.top_conv = nn.Conv2d(16, 16, 3, padding=1)
        self.top_fc = nn.Linear(16, 5)

    def forward(self, x):
        stem = F.relu(self.stem(x))
        mid = F.relu(self.mid(stem))
        top = self.top_fc(F.relu(self.top_conv(mid)).mean((2, 3)))
        if not self.training:
            return top
        return top, self.side(mid.mean((2, 3))), self.side2(stem.mean((2, 3)))


def test_auxiliary_heads_without_an_output_line_follow_the_main_output_in_line_order():
    net = archlang.compile(AUX)["aux_net"]
    assert net.outputs == [("top", (5,), False), ("side", (5,), True), ("side2", (5,), True)]
    reference = AuxRef()
    assert net.params == sum(p.numel() for p in reference.parameters())
    # the heads' MACs are left out of the network's (the eval path's), and reported apart
    assert net.macs == 8 * 27 * 256 + 16 * 72 * 64 + 16 * 144 * 64 + 16 * 5
    report = net.report()
    assert [(r.name, r.macs) for r in report.outputs] == [("top", 0), ("side", 80), ("side2", 40)]
    assert report.total.params == net.params and report.total.macs == net.macs
    assert "training only" in report.to_text()
    assert report.to_dict()["outputs"][1] == {"name": "side", "shape": [5], "training_only": True, "params": 85,
                                              "macs": 80}
    for train in (False, True):
        got, expected = _load_and_compare(net, reference, train=train)
        if train:
            assert isinstance(got, tuple) and len(got) == 3
            for g, e in zip(got, expected, strict=True):
                torch.testing.assert_close(g, e)
        else:
            torch.testing.assert_close(got, expected)
    source = net.source()
    assert "if self.training:  # auxiliary heads" in source
    assert "return x, side, side2" in source


def test_an_output_line_orders_the_outputs_and_may_return_several_in_eval_mode():
    text = """\
network two_heads:
    input 4x8x8
    trunk = conv3x3 8 same > relu
    seg = conv1x1 3
    aux deep = @trunk > conv1x1 3
    cls = @trunk > gap > dense 2
    output @cls, @deep, @seg
"""
    net = archlang.compile(text)["two_heads"]
    assert net.output_shape == (2,)
    assert net.outputs == [("cls", (2,), False), ("deep", (3, 8, 8), True), ("seg", (3, 8, 8), False)]
    module = net.to_torch()
    x = torch.randn(2, 4, 8, 8)
    module.eval()
    cls, seg = module(x)
    assert cls.shape == (2, 2) and seg.shape == (2, 3, 8, 8)
    module.train()
    cls2, deep, seg2 = module(x)
    torch.testing.assert_close(seg2, seg)
    assert deep.shape == (2, 3, 8, 8)


def test_check_lists_every_output(capsys, tmp_path):
    from archlang.cli import main

    path = tmp_path / "aux.arch"
    path.write_text(AUX)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "outputs: top 5, side 5 (training only), side2 5 (training only)" in out


def test_diagram_draws_references_beside_the_column_and_every_output():
    dot = archlang.compile(FPN)["fpn"].dot(depth=1)
    assert 'label=" @c3 16×8×8"' in dot and "constraint=false" in dot
    dot = archlang.compile(AUX)["aux_net"].dot()
    assert "(training only)" in dot and "output top 5" in dot


def test_layout_of_references_heads_and_outputs_round_trips():
    messy = ("network n:\n  input 3x8x8\n  a=conv3x3 4 same\n  aux   h=@a>gap>dense 3\n"
             "  bb = [ @a crop,skip ]\n  output   @bb ,@h\n")
    out = format_source(messy)
    assert out == ("network n:\n    input 3x8x8\n    a     = conv3x3 4 same\n    aux h = @a > gap > dense 3\n"
                   "    bb    = [@a crop, skip]\n    output @bb, @h\n")
    assert same_ast(messy, out) and format_source(out) == out


def test_aux_and_output_stay_ordinary_names_elsewhere():
    text = ("def aux(c) = conv1x1 c\n\nnetwork n:\n    input 3x8x8\n    output = aux 4\n    aux = relu\n"
            "    b = aux 2\n")
    net = archlang.compile(text)["n"]
    assert net.output_shape == (2, 8, 8)
    assert [n.path for n in net.nodes if n.op == "conv"] == ["output", "b"]


def test_a_fitted_reference_in_a_staged_def_falls_back_to_the_specialised_module():
    text = """\
def up(c):
    a = conv3x3 c
    [@input crop, skip]

network n(c=4):
    input 4x12x12
    up c
    relu
"""
    net = archlang.compile(text)["n"]
    assert net.output_shape == (8, 10, 10)
    source = net.source()
    assert "compiled with c=4" in source  # specialised: the crop's offsets depend on the def's input size
    module = net.to_torch()
    assert module(torch.randn(1, 4, 12, 12)).shape == (1, 8, 10, 10)
