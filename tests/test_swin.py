"""Swin's ops (archlang/compiler/ops/swin.py) and the blocks of specs/torchvision/swin.arch against
torchvision's own modules: ShiftedWindowAttention(V2), PatchMerging(V2), SwinTransformerBlock(V2).
The same state_dict layout (keys in torchvision's order, equal buffers), the same parameters and
MACs (FlopCounterMode / 2 at batch 1), and equal outputs with torchvision's re-randomised
weights, on sizes that pad, shift on both axes, on one, or not at all.  The whole models are in
tests/test_torchvision.py."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import archlang  # noqa: E402
from archlang import ArchError  # noqa: E402
from tests.conftest import SPECS  # noqa: E402
from tests.torchvision_ref import IMPORT_ERROR, models, rerandomise  # noqa: E402

if models is None:  # pragma: no cover - the Makefile installs torchvision
    pytest.skip(f"torchvision is not importable: {IMPORT_ERROR!r}", allow_module_level=True)

from torchvision.models import swin_transformer as tv  # noqa: E402

SWIN = SPECS / "torchvision" / "swin.arch"


def _compile(line: str, c: int, h: int, w: int, use: bool = False):
    source = (f'use "{SWIN}"\n\n' if use else "") + f"network n:\n    input {c}x{h}x{w}\n    channels_last > {line}\n"
    return archlang.compile(source, "t.arch")["n"]


def _macs(module, x) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


def _check(net, reference, h: int, w: int, prefix: str) -> None:
    """`net` (channels_last > one layer or block named `prefix`) is torchvision's `reference`."""
    reference = rerandomise(reference, seed=3).eval()
    generated = net.to_torch().eval()
    ours = generated.state_dict()
    assert [k.removeprefix(prefix) for k in ours] == list(reference.state_dict())
    for key, buffer in reference.named_buffers():  # computed alike, not only loaded
        assert torch.equal(ours[prefix + key], buffer), key
    assert net.params == sum(p.numel() for p in reference.parameters())
    assert net.buffers == sum(b.numel() for b in reference.buffers())
    x = torch.randn(2, h, w, net.input_shape[0], generator=torch.Generator().manual_seed(4))
    assert net.macs == _macs(reference, x[:1])
    archlang.load_weights(generated, reference)
    with torch.no_grad():
        expected, got = reference(x), generated(x.permute(0, 3, 1, 2))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# heads, window, shift, H, W: shifted on both axes; padded; shifted on W only (H fits one window);
# one window (no shift); unshifted
ATTENTION = [(2, 4, 2, 12, 12), (4, 5, 2, 7, 9), (1, 4, 2, 3, 10), (2, 4, 2, 4, 3), (2, 3, 0, 7, 5)]


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize(("heads", "window", "shift", "h", "w"), ATTENTION)
def test_window_attention_is_torchvisions(v2, heads, window, shift, h, w):
    c = 8
    op = "window_attention_v2" if v2 else "window_attention"
    net = _compile(f"{op} {heads} {window} shift={shift}", c, h, w)
    cls = tv.ShiftedWindowAttentionV2 if v2 else tv.ShiftedWindowAttention
    _check(net, cls(c, [window, window], [shift, shift], heads), h, w, "attn.")


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize(("h", "w"), [(6, 6), (5, 7)])
def test_patch_merging_is_torchvisions(v2, h, w):
    net = _compile("patch_merging_v2" if v2 else "patch_merging", 6, h, w)
    _check(net, (tv.PatchMergingV2 if v2 else tv.PatchMerging)(6), h, w, "merging.")
    assert net.output_shape == (-(-h // 2), -(-w // 2), 12)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("shift", [0, 2])
def test_the_specs_blocks_are_torchvisions(v2, shift):
    """swin.arch's `block` and `v2_block`; V2's norms are registered before the layers they
    follow in torchvision, so its weights load by module (archlang.load_weights's fallback)."""
    net = _compile(f"{'v2_block' if v2 else 'block'} 2 4 {shift} 0.1", 16, 10, 10, use=True)
    cls = tv.SwinTransformerBlockV2 if v2 else tv.SwinTransformerBlock
    reference = rerandomise(cls(16, 2, [4, 4], [shift, shift], stochastic_depth_prob=0.1), seed=3).eval()
    generated = net.to_torch().eval()
    assert net.params == sum(p.numel() for p in reference.parameters())
    x = torch.randn(2, 10, 10, 16, generator=torch.Generator().manual_seed(4))
    assert net.macs == _macs(reference, x[:1])
    archlang.load_weights(generated, reference)
    with torch.no_grad():
        torch.testing.assert_close(generated(x.permute(0, 3, 1, 2)), reference(x), atol=1e-5, rtol=1e-5)


def test_rerandomise_gives_every_swin_parameter_new_values():
    """The bias table, V2's temperatures and position-bias MLP included: no tensor compared in
    tests/test_torchvision.py keeps torchvision's initial values."""
    for module in (tv.ShiftedWindowAttention(8, [4, 4], [2, 2], 2), tv.ShiftedWindowAttentionV2(8, [4, 4], [2, 2], 2)):
        before = {k: p.clone() for k, p in module.named_parameters()}
        rerandomise(module, seed=1)
        for key, p in module.named_parameters():
            assert not torch.equal(p, before[key]), key
            assert p.std() > 0.05 or p.numel() == 1, key


@pytest.mark.parametrize(("line", "message"), [
    ("window_attention 2 4", "3:5: error: window_attention needs a channels-last HxWxC input, but gets the image "
                             "(CxHxW) 8x12x12; `channels_last` turns a CxHxW image into one"),
    ("channels_last > window_attention 3 4", "3:21: error: window_attention 3: 3 heads must divide the width 8"),
    ("channels_last > window_attention 2 4 shift=4", "3:21: error: window_attention: the shift (4) must be less "
                                                     "than the window (4); Swin shifts by half the window"),
    ("channels_last > window_attention_v2 2 1", "3:21: error: window_attention_v2: the window must be at least 2"),
    ("channels_last > tokens > patch_merging", "3:30: error: patch_merging needs a channels-last HxWxC input, but "
                                               "gets the token sequence (SxD) 144x8\n"),
])
def test_mistakes_are_located_errors(line, message):
    with pytest.raises(ArchError) as err:
        archlang.compile(f"network n:\n    input 8x12x12\n    {line}\n", "t.arch")
    assert message in str(err.value)
