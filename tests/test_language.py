"""The constructs of LANGUAGE.md, each compiled and checked for shapes and counts."""

from __future__ import annotations

import pytest

import archlang
from archlang import ArchError


def net(body: str, input_shape: str = "16x8x8", head: str = "", **kw) -> archlang.Network:
    lines = "\n".join("    " + line for line in body.strip().splitlines())
    src = f"{head}\nnetwork n:\n    input {input_shape}\n{lines}\n"
    return archlang.compile(src, "t.arch", **kw)["n"]


def ops(n: archlang.Network) -> list[str]:
    return [node.op for node in n.nodes]


def test_brief_residual_line():
    n = net("conv3x3 same ×2 | skip")
    assert n.output_shape == (16, 8, 8)
    assert ops(n) == ["_input", "conv", "conv", "_add"]
    assert n.params == 2 * (16 * 16 * 9 + 16)
    assert n.projections == []


def test_brief_naive_inception():
    n = net("inception[1x1,3x3,5x5,pool]", "192x28x28")
    assert n.output_shape == (768, 28, 28)


def test_repeat_forms_are_equivalent():
    counts = {form: net(f"conv3x3 same {form}").params for form in ("x3", "×3", "× 3", "x(1+2)", "×(6//2)")}
    assert set(counts.values()) == {3 * (16 * 16 * 9 + 16)}


def test_repeat_zero_is_identity():
    n = net("relu > conv3x3 32 x0")
    assert n.output_shape == (16, 8, 8) and ops(n) == ["_input", "relu"]


def test_repeat_binds_tighter_than_sequence_and_sum():
    n = net("relu > conv3x3 same x2")
    assert ops(n) == ["_input", "relu", "conv", "conv"]
    n = net("conv1x1 | conv1x1 x2")  # (conv1x1) | (conv1x1 x2)
    assert ops(n).count("conv") == 3 and ops(n)[-1] == "_add"


def test_grouping():
    n = net("(conv3x3 same > relu) x2")
    assert ops(n) == ["_input", "conv", "relu", "conv", "relu"]


def test_kernel_suffix_decodes_rectangles():
    n = net("conv1x7 32 same > conv7x1 same")
    convs = [x for x in n.nodes if x.op == "conv"]
    assert [c.attrs["kernel"] for c in convs] == [(1, 7), (7, 1)]
    assert [c.attrs["padding"] for c in convs] == [(0, 3), (3, 0)]
    assert n.output_shape == (32, 8, 8)


def test_conv_arguments():
    n = net("conv3x3 32 /2 padding=1 groups=4 dilation=1 nobias", "16x9x9")
    c = n.nodes[1]
    assert n.output_shape == (32, 5, 5)
    assert n.params == 32 * (16 // 4) * 9
    assert c.attrs["bias"] is False


def test_stride_with_expression():
    n = archlang.compile("def d(s) = conv3x3 /(s*2)\nnetwork n:\n    input 4x16x16\n    d 2\n", "t.arch")["n"]
    assert n.output_shape == (4, 4, 4)


@pytest.mark.parametrize(("args", "column", "shown"), [
    ("in.c/2", 13, "in.c//2 (half the channels) or in.c /2 (stride 2)"),
    ("(in.c*2)/ s", 13, "(in.c*2)//s ((in.c*2) divided by s) or (in.c*2) /s (stride s)"),
    ("8 groups=in.c/4", 15, "groups=in.c//4 (the channels divided by 4) or groups=in.c /4 (stride 4)"),
])
def test_a_stride_glued_to_a_value_is_an_error_naming_both_readings(args, column, shown):
    with pytest.raises(ArchError) as info:
        archlang.compile(f"network n(s=2):\n    input 16x8x8\n    conv1x1 {args}\n", "t.arch")
    assert "'/' right after a value is ambiguous" in info.value.message
    assert info.value.hint == f"did you mean {shown}?"
    assert (info.value.line, info.value.column) == (3, column)


def test_the_two_readings_of_a_glued_stride_and_a_stride_after_the_op_name():
    assert net("conv1x1 in.c//2").output_shape == (8, 8, 8)
    assert net("conv1x1 in.c /2").output_shape == (16, 4, 4)
    assert net("maxpool2x2/2 > conv3x3/1 same").output_shape == (16, 4, 4)  # glued to the name: a stride


def test_same_padding_is_ceil_division():
    for size, stride in ((224, 2), (7, 2), (9, 3), (10, 4)):
        n = net(f"conv3x3 /{stride} same", f"1x{size}x{size}")
        assert n.output_shape[1] == -(-size // stride)


def test_valid_is_default_padding():
    assert net("conv3x3").output_shape == (16, 6, 6)
    assert net("conv3x3", head="set padding = same").output_shape == (16, 8, 8)


def test_set_inside_network_applies_from_its_line_on():
    n = net("conv3x3\nset padding = same\nconv3x3")
    assert n.output_shape == (16, 6, 6)


def test_pools():
    assert net("maxpool2x2").output_shape == (16, 4, 4)
    assert net("maxpool3x3 /1 same").output_shape == (16, 8, 8)
    assert net("avgpool3x3 /2 padding=1").output_shape == (16, 4, 4)


def test_in_attributes_follow_the_incoming_tensor():
    n = net("conv1x1 in.c//2 > conv1x1 in.c*4", "64x8x8")
    assert n.output_shape == (256, 8, 8)
    src = "def half = conv1x1 in.c//2 > conv1x1 in.c\nnetwork n:\n    input 64x8x8\n    half\n"
    # `in` inside a def is the shape entering the call, on every line of its body
    assert archlang.compile(src, "t.arch")["n"].output_shape == (64, 8, 8)


def test_in_h_and_w():
    # at network level `in` is the shape entering the line (5x7), not the pool's output
    assert net("avgpool3x3 /1 > conv1x1 in.h*in.w", "2x5x7").output_shape == (35, 3, 5)


def test_def_defaults_keywords_and_stride():
    head = "def block(c, stride=1, k=2) = conv3x3 c /stride same > conv1x1 c*k"
    assert net("block 8", head=head).output_shape == (16, 8, 8)
    assert net("block 8 /2 k=1", head=head).output_shape == (8, 4, 4)
    assert net("block c=4 stride=2", head=head).output_shape == (8, 4, 4)


def test_default_may_use_earlier_params_and_in():
    head = "def block(c=in.c*2, d=c+1) = conv1x1 c > conv1x1 d"
    assert net("block", head=head).output_shape == (33, 8, 8)


def test_multi_line_def_body_runs_in_sequence():
    head = "def basic(c):\n    conv3x3 c same > bn > relu > conv3x3 c same > bn | skip\n    relu"
    n = net("basic 16", head=head)
    assert ops(n) == ["_input", "conv", "bn", "relu", "conv", "bn", "_add", "relu"]


def test_network_params_and_overrides():
    src = "network n(width=8, classes=3):\n    input 3x8x8\n    conv3x3 width > gap > dense classes\n"
    assert archlang.compile(src, "t.arch")["n"].output_shape == (3,)
    assert archlang.compile(src, "t.arch", overrides={"classes": 7})["n"].output_shape == (7,)
    assert archlang.compile(src, "t.arch", overrides={"width": "4"})["n"].params == 4 * 27 + 4 + 4 * 3 + 3


def test_order_of_defs_and_networks_does_not_matter():
    src = "network n:\n    input 4x4x4\n    b\ndef b = a > a\ndef a = relu\n"
    assert ops(archlang.compile(src, "t.arch")["n"]) == ["_input", "relu", "relu"]


def test_several_networks_in_one_file():
    src = "network a:\n    input 4\n    dense 2\nnetwork b:\n    input 4\n    dense 3\n"
    p = archlang.compile(src, "t.arch")
    assert list(p.networks) == ["a", "b"] and p["b"].output_shape == (3,)


def test_comments_and_brackets_span_lines():
    src = """# top
network n:   # trailing
    input 8x4x4
    # a comment line

    [conv1x1 4,    # branch one
     conv1x1 4]
"""
    assert archlang.compile(src, "t.arch")["n"].output_shape == (8, 4, 4)


def test_concat_and_densenet_skip():
    n = net("[skip, bn > relu > conv3x3 32 same]", "64x8x8")
    assert n.output_shape == (96, 8, 8)
    assert n.projections == []  # skip inside a concat is the plain identity


def test_sum_of_branches_and_label():
    n = net("block = conv1x1 32 | conv3x3 32 same")
    assert n.output_shape == (32, 8, 8)
    assert {x.path for x in n.nodes if x.op == "conv"} == {"block.branch1.conv", "block.branch2.conv"}


def test_projection_on_width_change_and_stride():
    n = net("conv3x3 32 /2 same | skip")
    ws = n.projections
    assert len(ws) == 1 and ws[0].attrs["stride"] == 2 and ws[0].shape.dims == (32, 4, 4)
    assert n.params == (32 * 16 * 9 + 32) + 32 * 16 + 2 * 32


def test_skip_pad_and_optional_and_always():
    assert net("conv3x3 32 /2 same | skip pad").params == 32 * 16 * 9 + 32
    opt = net("conv3x3 32 /2 same | skip optional")
    assert opt.params == 32 * 16 * 9 + 32 and ops(opt) == ["_input", "conv"]
    assert "skip optional" in opt.notes[0]
    same = net("conv3x3 same | skip optional")
    assert ops(same) == ["_input", "conv", "_add"]
    always = net("conv3x3 same | skip", head="set shortcut = always")
    assert len(always.projections) == 1
    per_use = net("conv3x3 32 same | skip pad", head="set shortcut = always")
    assert per_use.projections[0].op == "_pad"


def test_pad_shortcut_subsamples_and_pads():
    n = net("conv3x3 32 /2 same | skip", head="set shortcut = pad")
    pad = n.projections[0]
    assert pad.op == "_pad" and pad.attrs["stride"] == 2 and pad.shape.dims == (32, 4, 4)


def test_bias_auto_on_off():
    assert net("conv3x3 32 > bn").params == 32 * 16 * 9 + 64
    assert net("conv3x3 32 > relu").params == 32 * 16 * 9 + 32
    assert net("conv3x3 32 > bn", head="set bias = on").params == 32 * 16 * 9 + 32 + 64
    assert net("conv3x3 32", head="set bias = off").params == 32 * 16 * 9
    assert net("conv3x3 32 bias > bn").params == 32 * 16 * 9 + 32 + 64


def test_implicit_flatten_before_dense():
    n = net("dense 10", "4x3x3")
    assert ops(n) == ["_input", "flatten", "dense"]
    assert n.nodes[1].role == "implicit" and n.params == 36 * 10 + 10
    assert ops(net("fc 10", "4")) == ["_input", "dense"] and ops(net("linear 2", "4"))[-1] == "dense"


def test_bn_on_vectors_and_images():
    assert net("bn", "12").params == 24 and net("bn", "12").buffers == 25
    assert net("bn").params == 32


def test_other_ops_keep_shapes():
    n = net("relu > relu6 > tanh > sigmoid > gelu > silu > softmax > dropout 0.3 > lrn size=3")
    assert n.output_shape == (16, 8, 8) and n.params == 0
    assert net("gap").output_shape == (16, 1, 1) and net("flatten").output_shape == (1024,)


def test_inception_bn_flag_drops_conv_bias():
    plain = net("inception[1x1 8, 3x3 8 reduce=4, pool 8]")
    with_bn = net("inception[1x1 8, 3x3 8 reduce=4, pool 8] bn")
    assert plain.output_shape == with_bn.output_shape == (24, 8, 8)
    convs = [n for n in with_bn.nodes if n.op == "conv"]
    assert all(c.attrs["bias"] is False for c in convs)
    bias = sum(c.attrs["out"] for c in convs)
    bn_params = 2 * bias
    assert with_bn.params == plain.params - bias + bn_params


def test_use_imports_defs(tmp_path):
    (tmp_path / "blocks.arch").write_text("def twice = relu > relu\n")
    (tmp_path / "main.arch").write_text('use "blocks.arch"\nnetwork n:\n    input 4\n    twice\n')
    assert ops(archlang.compile_file(tmp_path / "main.arch")["n"]) == ["_input", "relu", "relu"]


def test_settings_stay_in_their_file(tmp_path):
    (tmp_path / "blocks.arch").write_text("set padding = same\ndef c3 = conv3x3\n")
    (tmp_path / "main.arch").write_text('use "blocks.arch"\nnetwork n:\n    input 4x8x8\n    c3 > conv3x3\n')
    # the def keeps its own file's `same`; the network's file keeps the default `valid`
    assert archlang.compile_file(tmp_path / "main.arch")["n"].output_shape == (4, 6, 6)


def test_plain_removes_skips_but_not_concat_identity():
    n = net("(conv3x3 same | skip) > [skip, conv1x1 4]", plain=True)
    assert n.output_shape == (20, 8, 8)
    assert "_add" not in ops(n)


def test_language_md_first_look_example():
    from tests.conftest import SPECS

    n = archlang.compile_file(SPECS / "resnet34.arch")["resnet34"]
    assert (n.params, n.macs) == (21_797_672, 3_663_761_408)


def test_reserved_repeat_names():
    with pytest.raises(ArchError, match="reserved"):
        archlang.compile("def x2 = relu\nnetwork n:\n    input 4\n    relu\n", "t.arch")


def test_api_error_attributes():
    with pytest.raises(ArchError) as info:
        net("conv3x3 16 > rleu")
    err = info.value
    assert (err.filename, err.line, err.column) == ("t.arch", 4, 18)
    assert "did you mean relu?" in str(err)
