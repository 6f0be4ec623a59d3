"""Every spec named after a torchvision model, against torchvision's own model (tests/torchvision_ref.py):
parameters equal `sum(p.numel())`, MACs equal FlopCounterMode's total / 2 at torchvision's input size
(counted on the meta device, so the largest model costs nothing to count), and torchvision's
re-randomised weights (BN statistics included) load with `archlang.load_weights` and give the same
outputs in eval mode.  Outputs are compared at a smaller input where the architecture allows it
(ResNets are fully convolutional up to the global pool); VGG-16 and AlexNet end in an adaptive pool
and a flattening classifier, so they run at their full size."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archlang  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.torchvision_ref import IMPORT_ERROR, models, rerandomise  # noqa: E402

if models is None:  # pragma: no cover - the Makefile installs torchvision
    pytest.skip(f"torchvision is not importable: {IMPORT_ERROR!r} (make test installs it)", allow_module_level=True)

GOOGLENET_DIFFERS = ("specs/googlenet.arch differs from torchvision on purpose (see tests/references.py): BatchNorm "
                     "eps 1e-5 where torchvision has 1e-3, and stride-2 max pools padded by one where torchvision "
                     "uses ceil_mode=True; specs/torchvision/googlenet.arch is torchvision's model exactly "
                     "(`set bn.eps = 0.001`, `maxpool3x3 /2 ceil`)")

# spec file, network, torchvision builder name, keyword arguments, input size for the output comparison
SPECS_TV = {
    "resnet18": ("resnets.arch", "resnet18", "resnet18", {}, 64),
    "resnet34": ("resnet34.arch", "resnet34", "resnet34", {}, 64),
    "resnet50": ("resnets.arch", "resnet50", "resnet50", {}, 64),
    "resnet152": ("resnets.arch", "resnet152", "resnet152", {}, 64),
    "vgg16": ("vgg16.arch", "vgg16", "vgg16", {}, 224),
    "alexnet_torchvision": ("alexnet.arch", "alexnet_torchvision", "alexnet", {}, 224),
    "googlenet": ("googlenet.arch", "googlenet", "googlenet", {"aux_logits": False, "init_weights": False}, 224),
}
SLOW = {"resnet152", "vgg16"}
# networks named after a torchvision model that are deliberately another network
NOT_TORCHVISION = {"alexnet": "the course's AlexNet (227x227, 96 channels, LRN); torchvision's is alexnet_torchvision"}


def _param(name, xfail: str | None = None):
    marks = [pytest.mark.slow] if name in SLOW else []
    if xfail:
        marks.append(pytest.mark.xfail(strict=True, reason=xfail))
    return pytest.param(name, marks=marks, id=name)


def _compile(name):
    file, network, *_ = SPECS_TV[name]
    return archlang.compile_file(SPECS / file, network=network)[network]


def _torchvision(name, device="cpu"):
    _, _, builder, kwargs, _ = SPECS_TV[name]
    with torch.device(device):
        return getattr(models, builder)(weights=None, **kwargs)


def test_every_spec_named_after_a_torchvision_model_is_compared():
    known = set(models.list_models(module=models))
    named = set()
    for path in SPECS.glob("*.arch"):  # the course's specs; specs/torchvision/ is compared below
        for net in archlang.compile_file(path):
            stem = net.name.removesuffix("_torchvision")
            if stem in known:
                named.add(net.name)
    assert named - set(NOT_TORCHVISION) == set(SPECS_TV)
    assert {SPECS_TV[n][2] for n in SPECS_TV} <= known


@pytest.mark.parametrize("name", [_param(n) for n in SPECS_TV])
def test_params_and_macs_equal_torchvision(name):
    net = _compile(name)
    reference = _torchvision(name, "meta")  # shapes only: nothing is allocated or computed
    assert net.params == sum(p.numel() for p in reference.parameters())
    counter = FlopCounterMode(display=False)
    with counter:
        reference(torch.empty(1, *net.input_shape, device="meta"))
    assert net.macs == counter.get_total_flops() // 2


def _compare(name, reference, size: int) -> float:
    reference.eval()
    net = _compile(name)
    generated = net.to_torch().eval()
    archlang.load_weights(generated, reference.state_dict())
    x = torch.randn(2, net.input_shape[0], size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), generated(x)
    assert got.shape == expected.shape
    diff = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    print(f"{name}: output max abs diff {diff:.3g} (output scale {scale:.3g}) at {size}x{size}")
    torch.testing.assert_close(got, expected, atol=1e-4 * scale, rtol=1e-4)
    return diff


@pytest.mark.parametrize("name", [_param(n, GOOGLENET_DIFFERS if n == "googlenet" else None) for n in SPECS_TV])
def test_outputs_equal_torchvision_with_its_weights(name):
    torch.manual_seed(0)
    reference = rerandomise(_torchvision(name), seed=1)
    _compare(name, reference, SPECS_TV[name][4])


def test_googlenet_equals_torchvision_once_the_two_known_differences_are_aligned():
    """The xfail above is exactly the two documented differences: with torchvision's BN eps set to
    PyTorch's default and its ceil-mode stride-2 pools replaced by padded ones, the outputs agree."""
    from torch import nn

    reference = rerandomise(_torchvision("googlenet"), seed=2)
    for m in reference.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-5
    for name in ("maxpool1", "maxpool2", "maxpool3"):
        setattr(reference, name, nn.MaxPool2d(3, 2, padding=1))
    _compare("googlenet", reference, SPECS_TV["googlenet"][4])


@pytest.mark.parametrize("network", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_named_specs_load_torchvision_state_dicts_as_they_are(network):
    """specs/resnet_torchvision.arch names layers as torchvision does (`set shortcut_name =
    downsample`), so torchvision's state_dict loads with plain strict `load_state_dict`: the same
    keys in the same order, and the same outputs."""
    reference = rerandomise(getattr(models, network)(weights=None), seed=2).eval()
    net = archlang.compile_file(SPECS / "resnet_torchvision.arch", network=network)[network]
    generated = net.to_torch().eval()
    assert list(generated.state_dict()) == list(reference.state_dict())
    generated.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(generated(x), expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)
    assert net.params == sum(p.numel() for p in reference.parameters())


# ---- specs/torchvision/: every convolutional classification model of torchvision, by its name ----

TV_SPECS = SPECS / "torchvision"
# builder keyword arguments where torchvision's defaults are not the spec's model
TV_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False},
             "inception_v3": {"aux_logits": False, "init_weights": False},
             "googlenet_aux": {"aux_logits": True, "init_weights": False},
             "inception_v3_aux": {"aux_logits": True, "init_weights": False}}
# networks that are a torchvision model built with other arguments (TV_KWARGS): the model's builder
TV_BUILDERS = {"googlenet_aux": "googlenet", "inception_v3_aux": "inception_v3"}
# input size of the output comparison: 64 (every one of these is convolutional up to a global or
# adaptive pool) unless the network needs more; params and MACs are always checked at full size
TV_SIZE = {"inception_v3": 299, "inception_v3_aux": 299,
           # a ViT's position embedding fixes its input size
           "vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224, "vit_h_14": 224,
           # MaxViT's partitions need each stage's size to be a multiple of 7
           "maxvit_t": 224,
           # a Swin pads its feature maps to whole windows: at 112 windows pad, and stages shift or not
           "swin_t": 112, "swin_s": 112, "swin_b": 112, "swin_v2_t": 112, "swin_v2_s": 112, "swin_v2_b": 112}
TV_SLOW_PARAMS = 50_000_000  # larger models are slow-marked (they still run in CI)


def _tv_cases():
    cases = []
    for path in sorted(TV_SPECS.glob("*.arch")):
        for name, net in archlang.compile_file(path).networks.items():
            marks = [pytest.mark.slow] if net.params > TV_SLOW_PARAMS else []
            cases.append(pytest.param(path.name, name, marks=marks, id=name))
    return cases


TV_CASES = _tv_cases()


def test_specs_torchvision_hold_every_classification_model_of_torchvision_by_its_name():
    classification = set(models.list_models(module=models))
    named = [c.values[1] for c in TV_CASES]
    assert len(named) == len(set(named)), "a model is written twice"
    models_named = {TV_BUILDERS.get(n, n) for n in named}
    assert models_named <= classification, sorted(models_named - classification)
    missing = classification - models_named
    assert not missing, f"not written yet: {sorted(missing)}"
    assert len(models_named) == 80 and len(named) == 80 + len(TV_BUILDERS)


@pytest.mark.parametrize(("file", "network"), TV_CASES)
def test_torchvision_spec_is_exact(file, network):
    """Params and MACs equal torchvision's at the full input size (on the meta device), and
    torchvision's re-randomised weights give the same outputs (to 1e-4 of their scale)."""
    from tests.torchvision_ref import compare

    with torch.no_grad():
        figures = compare(TV_SPECS / file, network, TV_SIZE.get(network, 64), builder=TV_BUILDERS.get(network),
                          **TV_KWARGS.get(network, {}))
    print(network, figures)



@pytest.mark.parametrize(("kind", "h", "w"), [("window", 6, 9), ("grid", 6, 6), ("grid", 6, 9)])
def test_maxvit_partition_attention_equals_torchvision(kind, h, w):
    """`KIND_partition 3 > relpos_mha 2 > KIND_departition` against torchvision's own modules:
    RelativePositionalMultiHeadAttention with its re-randomised weights, and WindowPartition,
    SwapAxes and WindowDepartition where torchvision's take the image (windows of any image; grids
    of square ones only, as torchvision cuts a grid with one stride for both axes).  maxvit_t has
    square stages only; a grid of a 6x9 image is checked against the definition itself: token (i, j)
    of grid window (a, b) is position (2i + a, 3j + b)."""
    from torchvision.models import maxvit

    source = f"network n:\n    input 8x{h}x{w}\n    {kind}_partition 3 > relpos_mha 2 > {kind}_departition\n"
    generated = archlang.compile(source, "n.arch")["n"].to_torch().eval()
    attention = rerandomise(maxvit.RelativePositionalMultiHeadAttention(8, 4, 9), seed=3).eval()
    archlang.load_weights(generated, attention.state_dict())
    x = torch.randn(2, 8, h, w, generator=torch.Generator().manual_seed(4))
    gh, gw = h // 3, w // 3  # windows down and across
    with torch.no_grad():
        got = generated(x)
        if kind == "window":
            expected = maxvit.WindowDepartition()(attention(maxvit.WindowPartition()(x, 3)), 3, gh, gw)
        elif h == w:
            swap = maxvit.SwapAxes(-2, -3)
            windows = swap(maxvit.WindowPartition()(x, gh))
            expected = maxvit.WindowDepartition()(swap(attention(windows)), gh, 3, 3)
        else:
            expected = torch.empty_like(x)
            for a in range(gh):
                for b in range(gw):
                    tokens = x[:, :, a::gh, b::gw].flatten(2).transpose(1, 2)  # 2 x 9 x 8, row-major
                    out = attention(tokens[:, None])[:, 0]
                    expected[:, :, a::gh, b::gw] = out.transpose(1, 2).reshape(2, 8, 3, 3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("file", "network", "size", "heads"),
                         [("googlenet.arch", "googlenet_aux", 64, 3), ("inception.arch", "inception_v3_aux", 299, 2)])
def test_auxiliary_heads_return_torchvisions_tuple_in_training_mode(file, network, size, heads):
    """googlenet_aux returns torchvision's GoogLeNetOutputs (logits, aux2, aux1) in training mode and
    inception_v3_aux its InceptionOutputs (logits, aux), with torchvision's re-randomised weights:
    BN on batch statistics, dropout (GoogLeNet's heads' 0.7, the trunk's) drawing the same masks from
    the same seed, as the heads' dropouts run in the same order; in eval mode the logits alone."""
    net = archlang.compile_file(TV_SPECS / file, network=network)[network]
    assert [train for _, _, train in net.outputs] == [False] + [True] * (heads - 1)
    torch.manual_seed(0)
    reference = rerandomise(getattr(models, TV_BUILDERS[network])(weights=None, **TV_KWARGS[network]), seed=3)
    generated = net.to_torch()
    archlang.load_weights(generated, reference.state_dict())
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(4))
    reference.train()
    generated.train()
    with torch.no_grad():
        torch.manual_seed(5)
        expected = reference(x)
        torch.manual_seed(5)
        got = generated(x)
    assert isinstance(got, tuple) and len(got) == len(expected) == heads
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        scale = e.abs().max().item()
        print(f"{network} training output {i}: max abs diff {(g - e).abs().max().item():.3g} (scale {scale:.3g})")
        torch.testing.assert_close(g, e, atol=1e-4 * scale, rtol=1e-4)
    reference.eval()
    generated.eval()
    with torch.no_grad():
        expected, got = reference(x), generated(x)
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, expected, atol=1e-4 * expected.abs().max().item(), rtol=1e-4)
