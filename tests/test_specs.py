"""Every spec in specs/ against the published figures of ../shared/REFERENCE.md."""

from __future__ import annotations

import pytest

import archlang
from tests.conftest import SPECS

# (file, network, input, output, params, MACs, inserted projections)
REFERENCE = [
    ("lenet5.arch", "lenet5", (1, 32, 32), (10,), 61_706, 416_520, []),
    ("alexnet.arch", "alexnet", (3, 227, 227), (1000,), 62_378_344, 1_135_256_096, []),
    ("alexnet.arch", "alexnet_torchvision", (3, 224, 224), (1000,), 61_100_840, 714_188_480, []),
    ("vgg16.arch", "vgg16", (3, 224, 224), (1000,), 138_357_544, 15_470_264_320, []),
    ("resnet34.arch", "resnet34", (3, 224, 224), (1000,), 21_797_672, 3_663_761_408,
     ["layer2.0.ws", "layer3.0.ws", "layer4.0.ws"]),
    ("resnet34_options.arch", "resnet34_a", (3, 224, 224), (1000,), 21_623_848, 3_644_493_824,
     ["layer2.0.ws", "layer3.0.ws", "layer4.0.ws"]),
    ("resnet34_options.arch", "resnet34_c", (3, 224, 224), (1000,), 22_716_840, 3_830_747_136,
     [f"layer{s}.{b}.ws" for s, n in ((1, 3), (2, 4), (3, 6), (4, 3)) for b in range(n)]),
    ("resnet34_options.arch", "plain34", (3, 224, 224), (1000,), 21_623_848, 3_644_493_824, []),
    ("resnets.arch", "resnet18", (3, 224, 224), (1000,), 11_689_512, 1_814_073_344,
     ["layer2.0.ws", "layer3.0.ws", "layer4.0.ws"]),
    ("resnets.arch", "resnet50", (3, 224, 224), (1000,), 25_557_032, 4_089_184_256,
     ["layer1.0.ws", "layer2.0.ws", "layer3.0.ws", "layer4.0.ws"]),
    ("resnets.arch", "resnet152", (3, 224, 224), (1000,), 60_192_808, 11_513_626_624,
     ["layer1.0.ws", "layer2.0.ws", "layer3.0.ws", "layer4.0.ws"]),
    ("resnet_torchvision.arch", "resnet18", (3, 224, 224), (1000,), 11_689_512, 1_814_073_344,
     ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]),
    ("resnet_torchvision.arch", "resnet34", (3, 224, 224), (1000,), 21_797_672, 3_663_761_408,
     ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]),
    ("resnet_torchvision.arch", "resnet50", (3, 224, 224), (1000,), 25_557_032, 4_089_184_256,
     ["layer1.0.downsample", "layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]),
    ("googlenet.arch", "googlenet", (3, 224, 224), (1000,), 6_624_904, 1_498_376_192, []),
    ("inception.arch", "inception3a", (192, 28, 28), (256, 28, 28), 163_696, 128_049_152, []),
    ("inception.arch", "inception_naive", (192, 28, 28), (768, 28, 28), 1_290_816, 1_011_548_160, []),
    ("bottleneck_cost.arch", "conv5x5_direct", (192, 28, 28), (32, 28, 28), 153_632, 120_422_400, []),
    ("bottleneck_cost.arch", "conv5x5_bottleneck", (192, 28, 28), (32, 28, 28), 15_920, 12_443_648, []),
    ("bottleneck_cost.arch", "conv1x1_32", (192, 28, 28), (32, 28, 28), 6_176, 4_816_896, []),
    ("dense_residual.arch", "dense_residual", (128,), (256,), 131_584, 131_072, ["ws"]),
    # (tests/test_unet.py holds the two against a hand-written U-Net)
    ("unet.arch", "unet", (1, 572, 572), (2, 388, 388), 31_030_658, 150_428_424_448, []),
    ("unet.arch", "unet_padded", (3, 256, 256), (2, 256, 256), 17_263_042, 39_984_300_032, []),
    ("dense_residual.arch", "dense_residual_pad", (128,), (256,), 98_816, 98_304, ["ws"]),
    ("cifar_resnet.arch", "cifar_resnet", (3, 32, 32), (10,), 269_722, 40_551_040, ["layer2.0.ws", "layer3.0.ws"]),
]


@pytest.mark.parametrize("file,network,inp,out,params,macs,ws", REFERENCE, ids=[r[1] for r in REFERENCE])
def test_reference_figures(file, network, inp, out, params, macs, ws):
    net = archlang.compile_file(SPECS / file)[network]
    assert net.input_shape == inp
    assert net.output_shape == out
    assert net.params == params
    assert net.macs == macs
    assert [n.path.rsplit(".", 1)[0] if "." in n.path else "ws" for n in net.projections] == ws


def test_every_spec_is_in_the_table():
    compiled = {(p.name, name) for p in SPECS.glob("*.arch") for name in archlang.compile_file(p).networks}
    assert compiled == {(f, n) for f, n, *_ in REFERENCE}


def test_plain_option_equals_plain34():
    plain = archlang.compile_file(SPECS / "resnet34.arch", plain=True)["resnet34"]
    assert (plain.params, plain.macs) == (21_623_848, 3_644_493_824)
    assert plain.projections == []
    assert not any(n.op == "_add" for n in plain.nodes)


def test_lenet5_shapes_follow_the_course():
    net = archlang.compile_file(SPECS / "lenet5.arch")["lenet5"]
    shapes = {n.path: str(n.shape) for n in net.nodes}
    assert [shapes[p] for p in ("c1.conv", "s2", "c3.conv", "s4", "f5.flatten")] == [
        "6x28x28", "6x14x14", "16x10x10", "16x5x5", "400"]


def test_alexnet_shapes_follow_the_course():
    net = archlang.compile_file(SPECS / "alexnet.arch")["alexnet"]
    shapes = {n.path: str(n.shape) for n in net.nodes}
    assert [shapes[p] for p in ("conv1.conv", "pool1", "conv2.conv", "pool2", "pool5", "fc6.flatten")] == [
        "96x55x55", "96x27x27", "256x27x27", "256x13x13", "256x6x6", "9216"]


def test_resnet34_names_follow_torchvision():
    net = archlang.compile_file(SPECS / "resnet34.arch")["resnet34"]
    convs = [n.path for n in net.nodes if n.op in ("conv", "bn") and n.path.startswith("layer2.0.")]
    assert convs == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv2", "layer2.0.bn2",
                     "layer2.0.ws.conv", "layer2.0.ws.bn"]
    ws = next(n for n in net.nodes if n.path == "layer2.0.ws.conv")
    assert ws.attrs["stride"] == 2 and ws.attrs["kernel"] == (1, 1) and ws.attrs["bias"] is False
    assert ws.in_shapes[0].dims == (64, 56, 56) and ws.shape.dims == (128, 28, 28)


def test_classes_override():
    net = archlang.compile_file(SPECS / "resnet34.arch", overrides={"classes": 10})["resnet34"]
    assert net.output_shape == (10,)
    assert net.params == 21_797_672 - 990 * 512 - 990


# He et al. (2016), Table 6: the CIFAR-10 ResNets' parameters, in millions, by n (6n+2 layers)
CIFAR_PAPER = {3: 0.27, 5: 0.46, 7: 0.66, 9: 0.85, 18: 1.7}


@pytest.mark.parametrize("n", sorted(CIFAR_PAPER))
def test_cifar_resnets_have_the_papers_parameters(n):
    net = archlang.compile_file(SPECS / "cifar_resnet.arch", {"n": n})["cifar_resnet"]
    assert round(net.params / 1e6, 2 if n < 18 else 1) == CIFAR_PAPER[n]
    layers = sum(node.op in ("conv", "dense") for node in net.nodes)  # option A adds no weighted layer
    assert layers == 6 * n + 2
    plain = archlang.compile_file(SPECS / "cifar_resnet.arch", {"n": n}, plain=True)["cifar_resnet"]
    assert (plain.params, plain.macs) == (net.params, net.macs)  # zero-padded shortcuts hold no weights
    assert not any(node.op == "_add" for node in plain.nodes)
