"""specs/unet.arch against the hand-written U-Net of tests/unet_reference.py: parameters and MACs
(FlopCounterMode / 2, counted on the meta device at full width), and outputs with the reference's
random weights loaded by order (archlang.load_weights), at a smaller width to keep the run short."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archlang  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.torchvision_ref import rerandomise  # noqa: E402
from tests.unet_reference import UNet  # noqa: E402

UNET = SPECS / "unet.arch"
PADDED = {"unet": False, "unet_padded": True}


def _reference(network: str, net, device="cpu", **kwargs):
    with torch.device(device):
        return UNet(channels=net.input_shape[0], classes=net.arguments["classes"], base=net.arguments["base"],
                    padded=PADDED[network], **kwargs)


@pytest.mark.parametrize("network", list(PADDED))
def test_params_and_macs_equal_the_hand_written_unet(network):
    net = archlang.compile_file(UNET, network=network)[network]
    reference = _reference(network, net, "meta")
    assert net.params == sum(p.numel() for p in reference.parameters())
    assert net.buffers == sum(b.numel() for b in reference.buffers())
    counter = FlopCounterMode(display=False)
    with counter:
        out = reference(torch.empty(1, *net.input_shape, device="meta"))
    assert tuple(out.shape[1:]) == net.output_shape
    assert net.macs == counter.get_total_flops() // 2


def test_ronnebergers_unet_has_the_papers_shapes_and_31_03m_parameters():
    net = archlang.compile_file(UNET, network="unet")["unet"]
    assert (net.input_shape, net.output_shape) == ((1, 572, 572), (2, 388, 388))
    assert net.params == 31_030_658
    crops = [n for n in net.nodes if n.op == "_crop"]
    assert [(n.in_shapes[0].dims, n.shape.dims) for n in crops] == [
        ((512, 64, 64), (512, 56, 56)), ((256, 136, 136), (256, 104, 104)),
        ((128, 280, 280), (128, 200, 200)), ((64, 568, 568), (64, 392, 392))]


def _compare(network: str, net, size=None, train: bool = False) -> float:
    torch.manual_seed(0)
    reference = rerandomise(_reference(network, net), seed=2)
    generated = net.to_torch()
    archlang.load_weights(generated, reference.state_dict())
    reference.train(train)
    generated.train(train)
    x = torch.randn(2, *(size or net.input_shape), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = reference(x), generated(x)
    assert got.shape == expected.shape == (2, *net.output_shape)
    diff = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    print(f"{network} {tuple(x.shape[1:])}: output max abs diff {diff:.3g} (scale {scale:.3g})")
    torch.testing.assert_close(got, expected, atol=1e-4 * scale, rtol=1e-4)
    return diff


def test_unet_outputs_equal_the_hand_written_unet():
    net = archlang.compile_file(UNET, overrides={"base": 8}, network="unet")["unet"]
    _compare("unet", net)


@pytest.mark.parametrize(("shape", "train"), [("3x64x64", False), ("3x64x64", True), ("3x100x75", False),
                                              ("1x37x21", False)])
def test_padded_unet_outputs_equal_the_hand_written_unet_at_any_size(shape, train):
    """Sizes that do not halve evenly (100 → 50 → 25 → 12 → 6, 37, 21) make the upsampled map
    smaller than its skip: `@enc4 pad` zero-pads it as the reference does; BN in training uses
    batch statistics."""
    text = UNET.read_text().replace("input 3x256x256", f"input {shape}")
    net = archlang.compile(text, "unet.arch", overrides={"base": 4}, network="unet_padded")["unet_padded"]
    if shape != "3x64x64":
        assert any(n.op == "_zeropad" for n in net.nodes)
    _compare("unet_padded", net, train=train)


def test_unet_module_is_staged_and_its_blocks_read_the_skip_by_name():
    source = archlang.compile_file(UNET, network="unet")["unet"].source()
    assert "def __init__(self, classes=2, base=64):" in source
    assert "def forward(self, x, enc4):" in source
    assert "x = self.dec4(x, enc4)" in source
    assert "enc4[:, :, 4:60, 4:60]" in source
