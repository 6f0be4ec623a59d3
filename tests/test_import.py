"""`archc import` (archlang.importer.from_torch): PyTorch models back to .arch text.

Round trips against the models themselves: the imported text compiles to the model's parameter
count and MACs (FlopCounterMode / 2, on the meta device), the model's re-randomised weights load
into the compiled module (by name where the names line up, else by order) and the outputs agree
to 1e-4 of their scale in eval mode."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archlang  # noqa: E402
from archlang.cli import main  # noqa: E402
from archlang.importer import from_torch  # noqa: E402
from archlang.importer.trace import ImportFailure  # noqa: E402
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
    try:
        with torch.device("meta"):
            meta = build()
    except NotImplementedError:  # RegNet reads tensor values while it builds
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


# model, input size for the outputs (None: the model's own), whether slow
TORCHVISION = [("resnet34", 64, False), ("vgg11", 64, True), ("alexnet", None, False), ("densenet121", 64, False),
               ("mobilenet_v2", 64, False), ("mobilenet_v3_small", 64, False), ("squeezenet1_0", 96, False),
               ("efficientnet_b0", 64, False), ("regnet_y_400mf", 64, False), ("mnasnet0_5", 64, False),
               ("convnext_tiny", 64, True), ("vit_b_16", None, True), ("shufflenet_v2_x0_5", 64, False),
               ("swin_t", None, True), ("maxvit_t", None, True)]


@needs_tv
@pytest.mark.parametrize("name,size", [pytest.param(n, s, marks=[pytest.mark.slow] if slow else [], id=n)
                                       for n, s, slow in TORCHVISION])
def test_torchvision_round_trip(name, size):
    round_trip(lambda: getattr(models, name)(weights=None), (3, 224, 224), size, name)


@needs_tv
def test_shufflenet_reads_chunk_and_the_reshape_shuffle():
    """torchvision's channel_shuffle (view to groups, transpose, view back) is `shuffle 2`, and
    `x.chunk(2, dim=1)` with its two halves taken apart is `[chunk 2, chunk 2 1 > ...]`."""
    with torch.device("meta"):
        model = models.shufflenet_v2_x1_0(weights=None)
    text = from_torch(model, (3, 224, 224), name="shufflenet")
    assert "    shuffle 2\n" in text and "        chunk 2,\n        chunk 2 1 > conv1x1 in.c//2 > bn" in text
    assert "stage3  = inverted_residual 116 > inverted_residual2 x7" in text


@needs_tv
@pytest.mark.parametrize("name,size,heads", [("googlenet", 224, ("aux1", "aux2")),
                                             pytest.param("inception_v3", 299, ("AuxLogits",), marks=pytest.mark.slow)])
def test_auxiliary_heads_import_as_aux_lines(name, size, heads):
    """torchvision's GoogLeNet and Inception-v3 as built by default (aux_logits=True): the heads,
    which forward computes in training only, become `aux` lines reading the line they branch
    from, and the compiled module returns what torchvision's does in training mode too."""
    def build():
        return getattr(models, name)(weights=None, init_weights=False)

    figures = round_trip(build, (3, size, size), 64 if name == "googlenet" else None, name)
    text = figures["text"]
    for head in heads:
        assert f"aux {head}" in text
    if name == "googlenet":
        assert "    aux aux1    = @inception4a > inception_aux\n    aux aux2    = @inception4d > inception_aux" in text
        assert text.rstrip().endswith("output @fc, @aux2, @aux1")
    torch.manual_seed(0)
    reference = rerandomise(build())
    generated = archlang.compile(text, f"{name}.arch")[name].to_torch()
    archlang.load_weights(generated, reference.state_dict())
    for model in (reference, generated):  # training mode, without the randomness of dropout
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    expected, got = tuple(reference.train()(x)), generated.train()(x)
    assert len(got) == len(expected) == len(heads) + 1
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4 * b.abs().max().item(), rtol=1e-4)


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.spare = nn.Linear(8, 8)

    def forward(self, x):
        return self.conv(x)


class UnequalSplit(nn.Module):
    def forward(self, x):
        a, b = torch.split(x, [2, 6], dim=1)
        return torch.cat([b, a], dim=1)


def test_what_forward_never_reaches_and_unequal_splits_are_errors():
    with pytest.raises(ImportFailure) as err:
        from_torch(Unused(), (3, 8, 8))
    assert "Unused holds 2 parameter tensors its forward does not use" in str(err.value)
    assert "(in spare)" in str(err.value)
    with pytest.raises(ImportFailure) as err:
        from_torch(UnequalSplit(), (8, 4, 4))
    assert "the function torch.split" in str(err.value) and "parts of different sizes" in str(err.value)


class CifarBlock(nn.Module):
    """He et al.'s CIFAR basic block with a 1x1 projection where the shape changes (option B)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(CifarBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def test_cifar_resnet_written_here_round_trips():
    figures = round_trip(CifarResNet, (3, 32, 32), name="cifar_resnet")
    text = figures["text"]
    assert "def cifar_block(c, stride=1) = (conv3x3 c /stride > bn > relu > conv3x3 c > bn | skip) > relu" in text
    assert ("blocks = ( cifar_block 16 x3 > cifar_block 32 /2 > cifar_block 32 x2 > cifar_block 64 /2 > "
            "cifar_block 64 x2 )") in " ".join(text.split())
    assert figures["params"] == 272_474  # He et al.'s ResNet-20 with option B projections


def test_unet_round_trips_with_references():
    """tests/unet_reference.py's U-Nets call `Up(x, skip)`, a module with two tensors: each
    becomes a line reading the encoder's line by reference, the slice of the skip a `crop`
    and the F.pad of the upsampled map a `pad` (at an odd size too)."""
    from tests.unet_reference import UNet

    valid = round_trip(lambda: UNet(padded=False, base=8), (1, 188, 188), name="unet")
    assert "convtranspose2x2 64 /2 > [@downs_2 crop, skip] > (conv3x3 64 > relu) x2" in valid["text"]
    assert valid["params"] == 485_682 and valid["lines"] == 14
    padded = round_trip(lambda: UNet(padded=True, channels=3, base=8), (3, 67, 61), name="unet")
    assert "upsample 2 bilinear align_corners > [@downs_2 pad, skip] >" in padded["text"]
    assert "downs_0 = maxpool2x2 > (conv3x3 16 > bn > relu) x2" in padded["text"]


def test_unet_at_the_papers_size_imports_to_the_spec_counts():
    """Ronneberger et al.'s U-Net, imported on the meta device at 1x572x572, has the counts of
    specs/unet.arch's `unet`, written by hand."""
    from tests.conftest import ROOT
    from tests.unet_reference import UNet

    with torch.device("meta"):
        model = UNet(padded=False)
    net = archlang.compile(from_torch(model, (1, 572, 572), name="unet"), "unet.arch")["unet"]
    spec = archlang.compile_file(ROOT / "specs" / "unet.arch")["unet"]
    assert (net.params, net.macs, net.output_shape) == (spec.params, spec.macs, spec.output_shape)
    assert net.params == sum(p.numel() for p in model.parameters()) == 31_030_658


class FlatUNet(nn.Module):
    """A U-Net written in one forward: the long skips are the network's own values, the crop
    and the pad functions of its forward."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.dec = nn.Conv2d(16, 8, 3, padding=1)
        self.side = nn.Conv2d(3, 8, 1)
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        enc = self.enc(x)
        y = self.up(self.down(enc))
        dh, dw = enc.shape[2] - y.shape[2], enc.shape[3] - y.shape[3]
        y = self.dec(torch.cat([enc[:, :, dh // 2:dh // 2 + y.shape[2], dw // 2:dw // 2 + y.shape[3]], y], 1))
        side = self.side(x)
        return self.out(torch.cat([y, side[:, :, 3:3 + y.shape[2], 3:3 + y.shape[3]]], 1))


class OffCentre(nn.Module):
    def __init__(self, pad: bool):
        super().__init__()
        self.pad = pad
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        y = self.conv(x)
        if self.pad:
            return torch.cat([nn.functional.pad(y, [0, 2, 0, 2]), x], 1)
        return torch.cat([x[:, :, :y.shape[2], :y.shape[3]], y], 1)


def test_long_skips_of_one_forward_become_references():
    figures = round_trip(FlatUNet, (3, 26, 26), name="flat")
    lines = figures["text"].splitlines()
    assert "    enc  = conv3x3 8 > relu" in lines
    assert "    [@enc crop, skip]" in lines and "    side = @input > conv1x1 8" in lines
    assert "    [@dec, @side crop]" in lines, figures["text"]


def test_a_crop_or_pad_off_the_centre_is_an_error():
    with pytest.raises(ImportFailure) as err:
        from_torch(OffCentre(pad=True), (3, 8, 8))
    assert "the function F.pad" in str(err.value) and "not centred as `@name pad` pads" in str(err.value)
    with pytest.raises(ImportFailure) as err:
        from_torch(OffCentre(pad=False), (3, 8, 8))
    assert "a crop of 8x8 to 6x6 from (0, 0), not the centre (1, 1)" in str(err.value)


class PadSum(nn.Module):
    """A decoder that adds (not concatenates) the skip, padded to it, and interpolates to the
    skip's size: `@up pad | @e`, never `skip | @e pad` (a sum's skip would be projected)."""

    def __init__(self):
        super().__init__()
        self.e = nn.Conv2d(3, 8, 3, padding=1)
        self.d = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1))
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.c = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        e = self.e(x)
        y = self.up(self.d(e))
        dh, dw = e.shape[2] - y.shape[2], e.shape[3] - y.shape[3]
        y = self.c(nn.functional.pad(y, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2]) + e)
        return torch.cat([nn.functional.interpolate(y, size=e.shape[2:], mode="bilinear"), e], 1)


class InnerFit(nn.Module):
    """A crop of a value inside a block (not a line of the network) cannot be a reference."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3)

    def forward(self, x, skip):
        y = self.a(x)
        return torch.cat([torch.cat([y[:, :, 1:-1, 1:-1], self.b(y)], 1), skip[:, :, 1:-1, 1:-1]], 1)


class InnerFitNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.e, self.f, self.blk = nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3, padding=1), InnerFit()

    def forward(self, x):
        e = self.e(x)
        return self.blk(self.f(e), e)


class ZeroPadShortcut(nn.Module):
    """A user's option-A shortcut named as archlang's helper, but padding the channels centred."""

    def __init__(self, extra_channels, stride):
        super().__init__()
        self.extra_channels, self.stride = extra_channels, stride

    def forward(self, x):
        x = x[:, :, ::self.stride, ::self.stride]
        e = self.extra_channels
        return nn.functional.pad(x, (0, 0, 0, 0, e // 2, e - e // 2))


class CentredOptionA(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.sc = nn.Conv2d(4, 8, 3, stride=2, padding=1), ZeroPadShortcut(4, 2)

    def forward(self, x):
        return torch.relu(self.c(x) + self.sc(x))


def test_fits_in_sums_and_interpolation_to_a_skips_size_round_trip():
    figures = round_trip(PadSum, (3, 9, 9), name="pad_sum")
    lines = figures["text"].splitlines()
    assert lines[-5:] == ["    up = convtranspose2x2 8 /2", "    @up pad | @e", "    c = conv3x3 8",
                          "    upsample size=9 bilinear", "    [skip, @e]"], figures["text"]


def test_what_no_reference_can_say_is_an_error_not_a_guess():
    with pytest.raises(ImportFailure) as err:
        from_torch(InnerFitNet(), (3, 10, 10))
    assert "cannot import a concat whose branch is its input, cropped or padded" in str(err.value)
    with pytest.raises(ImportFailure) as err:  # not archlang's helper: traced, and its strided slice refused
        from_torch(CentredOptionA(), (4, 8, 8))
    assert "in sc (ZeroPadShortcut)" in str(err.value) and "crop cannot write a slice" in str(err.value)


def test_option_a_shortcuts_of_generated_modules_read_back_as_skip_pad():
    """specs/cifar_resnet.arch (He et al.'s option A) built to PyTorch and imported back: its
    ZeroPadShortcut is `skip pad` again, with the same counts and outputs."""
    from tests.conftest import ROOT

    net = archlang.compile_file(ROOT / "specs" / "cifar_resnet.arch")["cifar_resnet"]
    model = net.to_torch().eval()
    text = from_torch(model, tuple(net.input_shape), name="back")
    assert "| skip pad) > relu" in text
    back = archlang.compile(text, "back.arch")["back"]
    assert (back.params, back.macs) == (net.params, net.macs) == (269_722, 40_551_040)
    generated = back.to_torch().eval()
    archlang.load_weights(generated, model.state_dict())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(generated(x), model(x))


def test_network_named_and_input_written():
    with torch.device("meta"):
        text = from_torch(nn.Sequential(nn.Linear(8, 4), nn.ReLU()), (8,), name="tiny")
    assert text.splitlines()[-4:] == ["network tiny:", "    input 8", "    dense 4", "    relu"]


class Unmappable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.up = nn.PixelShuffle(2)

    def forward(self, x):
        return self.up(self.conv(x))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.conv(x)
        return x


def test_an_unmappable_layer_is_named_with_its_class_and_line():
    with pytest.raises(ImportFailure) as err:
        from_torch(Unmappable(), (3, 8, 8))
    message = str(err.value)
    assert message.startswith("cannot import up (torch.nn.modules.pixelshuffle.PixelShuffle) at ")
    assert "test_import.py:" in message and "no archlang op has this PyTorch form" in message


def test_data_dependent_control_flow_is_a_clear_error():
    with pytest.raises(ImportFailure) as err:
        from_torch(DataDependent(), (3, 8, 8))
    message = str(err.value)
    assert message.startswith("cannot trace DataDependent at ") and "test_import.py:" in message
    assert "control flow that depends on tensor values" in message


def test_cli_import_writes_the_file(tmp_path, capsys):
    out = tmp_path / "cifar.arch"
    code = main(["import", "tests.test_import:CifarResNet", "--input", "3x32x32", "--arg", "n=2", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    net = archlang.compile_file(out)["CifarResNet"]
    assert net.params == sum(p.numel() for p in CifarResNet(n=2).parameters())


def test_cli_import_errors(capsys):
    assert main(["import", "tests.test_import:Unmappable", "--input", "3x8x8"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("archc: error: cannot import up (torch.nn.modules.pixelshuffle.PixelShuffle)")
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_:
        main(["import", "specs/resnets.arch"])
    assert exit_.value.code == 2
    assert "not 'specs/resnets.arch'" in capsys.readouterr().err


@needs_tv
def test_the_guide_shows_what_archc_import_writes():
    from tests.conftest import ROOT

    guide = (ROOT / "docs" / "import.md").read_text()
    for name in ("resnet50", "densenet121"):
        with torch.device("meta"):
            model = getattr(models, name)(weights=None)
        text = from_torch(model, (3, 224, 224), name=name, source=f"torchvision.models:{name}")
        assert f"```arch\n{text}```" in guide, f"docs/import.md's {name} differs from what archc import writes"
    from tests.unet_reference import UNet

    with torch.device("meta"):
        text = from_torch(UNet(padded=False), (1, 572, 572), name="unet")
    assert f"```arch\n{text}```" in guide, "docs/import.md's U-Net differs from what archc import writes"


def test_report_render_and_diff_read_a_python_target_directly(tmp_path, capsys):
    """`archc report torchvision.models:resnet18` imports the model first (as `archc import`
    would) and reports it; an .arch path with a colon is still FILE:NETWORK, and a target that
    cannot be imported is a clean error."""
    from archlang.cli import main, python_target

    assert python_target("torchvision.models:resnet18")
    assert not python_target("specs/resnets.arch:resnet18") and not python_target("resnets.arch:resnet18")
    assert main(["report", "torchvision.models:resnet18", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)  # a list, as for every file
    reference = models.resnet18(weights=None)
    assert report["params"] == sum(p.numel() for p in reference.parameters()) == 11_689_512
    assert main(["diff", "torchvision.models:resnet18", "specs/resnets.arch:resnet18", "--json"]) == 0
    totals = json.loads(capsys.readouterr().out)  # torchvision's resnet18 and the spec's: one network
    assert totals["params"] == [11_689_512, 11_689_512] and totals["macs"][0] == totals["macs"][1]
    assert main(["render", "torchvision.models:resnet18", "-f", "dot", "-o", str(tmp_path / "r.dot")]) == 0
    assert "layer4" in (tmp_path / "r.dot").read_text()
    assert main(["report", "torchvision.models:no_such_model"]) == 1
    assert "torchvision.models has no no_such_model" in capsys.readouterr().err


def test_a_python_target_takes_input_and_arguments(capsys):
    """`archc report MODULE:CALLABLE --input CxHxW --arg k=v` reads the model at that input,
    built with those arguments; an .arch file refuses both (it gives its own)."""
    assert main(["report", "tests.test_import:CifarResNet", "--input", "3x32x32", "--arg", "n=2",
                 "--arg", "classes=7", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["params"] == sum(p.numel() for p in CifarResNet(n=2, classes=7).parameters())
    assert report["input_shape"] == [3, 32, 32] and report["output_shape"] == [7]
    assert main(["diff", "tests.test_import:CifarResNet", "tests.test_import:CifarResNet", "--input", "3x16x16",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs"][0] == _macs(CifarResNet(), (3, 16, 16))
    for argv in (["report", "specs/unet.arch", "--input", "3x64x64"], ["check", "specs/unet.arch", "--arg", "n=1"],
                 ["report", "tests.test_import:CifarResNet", "--input", "3xfoo"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "MODULE:CALLABLE target" in err or "--input takes CxHxW" in err, err


def test_generated_programs_import_exactly_or_fail_with_a_reason():
    """Random valid programs (tests/programs.py, every feature and hostile names), compiled to
    PyTorch modules, imported back: each either fails with an ImportFailure, or its text compiles
    to the same parameters and MACs and, with the module's weights, the same outputs — never a
    silent approximation, never another exception."""
    from tests.programs import ALL, generate

    torch.manual_seed(0)
    exact = failed = 0
    for seed in range(30):
        for net in archlang.compile(generate(seed, ALL).text, "gen.arch"):
            model = net.to_torch().eval()
            try:
                text = from_torch(model, tuple(net.input_shape), name="imported")
            except ImportFailure:
                failed += 1
                continue
            back = archlang.compile(text, "imported.arch")["imported"]
            assert (back.params, back.macs) == (net.params, net.macs), f"seed {seed}\n{text}"
            generated = back.to_torch().eval()
            archlang.load_weights(generated, model.state_dict())
            x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                expected, got = model(x), generated(x)
            if isinstance(expected, tuple):
                expected, got = expected[0], got[0]
            torch.testing.assert_close(got, expected, atol=1e-4 * max(1.0, expected.abs().max().item()), rtol=1e-4)
            exact += 1
    assert exact >= 20 and exact > failed, (exact, failed)
