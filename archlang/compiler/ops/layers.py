"""The built-in ops of LANGUAGE.md §5 and the structural ops the compiler inserts.

Each `infer` checks the input, completes `attrs` with resolved values (padding as numbers,
input width) and returns the output shape."""

from __future__ import annotations

from archlang.compiler.ir import TensorType, shape
from archlang.compiler.ops import (
    Arg,
    OpSpec,
    ShapeError,
    need_image,
    padding_value,
    positive_float,
    positive_int,
    probability,
    register,
    resolve_padding,
    spatial,
    subsample_stride,
)

# ---- conv ----


def _conv_infer(a, inp: TensorType) -> TensorType:
    need_image("conv", inp)
    a["in_c"] = inp.c
    if a.get("out") is None:
        a["out"] = inp.c
    g = a["groups"]
    if inp.c % g or a["out"] % g:
        raise ShapeError(
            f"groups={g} must divide both the input width {inp.c} and the output width {a['out']}"
        )
    a["padding"] = resolve_padding(a["padding"], a["kernel"], a["dilation"])
    h, w = spatial(f"conv{a['kernel'][0]}x{a['kernel'][1]}", inp, a["kernel"], a["stride"], a["padding"], a["dilation"])
    return shape(a["out"], h, w)


def _stride_text(stride) -> str:
    if stride == 1:
        return ""
    return f" /{stride[0]}x{stride[1]}" if isinstance(stride, tuple) else f" /{stride}"


def _conv_label(a) -> str:
    kh, kw = a["kernel"]
    text = f"conv{kh}x{kw} {a['out']}{_stride_text(a['stride'])}"
    if a["groups"] != 1:
        text += " dw" if a["groups"] == a["in_c"] == a["out"] else f" groups={a['groups']}"
    if a["dilation"] != 1:
        text += f" dilation={a['dilation']}"
    return text


def _conv_weights(a) -> int:
    kh, kw = a["kernel"]
    return a["out"] * (a["in_c"] // a["groups"]) * kh * kw


register(OpSpec(
    name="conv", family="conv", kernel=True, infer=_conv_infer,
    positional=("out",),
    args={"out": Arg(positive_int), "stride": Arg(positive_int, 1), "padding": Arg(padding_value),
          "groups": Arg(positive_int, 1), "dilation": Arg(positive_int, 1)},
    flags={"same": ("padding", "same"), "valid": ("padding", "valid"),
           "bias": ("bias", True), "nobias": ("bias", False)},
    params=lambda a, i, o: _conv_weights(a) + (a["out"] if a["bias"] else 0),
    macs=lambda a, i, o: _conv_weights(a) * o.h * o.w,
    other_ops=lambda a, i, o: o.numel if a["bias"] else 0,  # the bias adds
    label=_conv_label,
    doc="Conv2d; default width keeps C",
))

# ---- dense ----


def _dense_infer(a, inp: TensorType) -> TensorType:
    # The elaborator inserts the implicit flatten, so a dense always sees a vector here.
    assert inp.is_vector
    a["in_f"] = inp.c
    return shape(a["out"])


register(OpSpec(
    name="dense", family="fc", aliases=("fc", "linear"), infer=_dense_infer,
    positional=("out",),
    args={"out": Arg(positive_int, required=True)},
    flags={"bias": ("bias", True), "nobias": ("bias", False)},
    params=lambda a, i, o: a["in_f"] * a["out"] + (a["out"] if a["bias"] else 0),
    macs=lambda a, i, o: a["in_f"] * a["out"],
    other_ops=lambda a, i, o: a["out"] if a["bias"] else 0,
    label=lambda a: f"dense {a['out']}",
    doc="Linear; flattens a CxHxW input first",
))

# ---- normalisation ----


def _bn_infer(a, inp: TensorType) -> TensorType:
    a["features"] = inp.c
    a["dims"] = 1 if inp.is_vector else 2
    return inp


register(OpSpec(
    name="bn", family="bn", infer=_bn_infer,
    args={"eps": Arg(positive_float, 1e-5), "momentum": Arg(probability, 0.1)},
    params=lambda a, i, o: 2 * i.c,
    buffers=lambda a, i, o: 2 * i.c + 1,  # running mean, running var, num_batches_tracked
    other_ops=lambda a, i, o: o.numel,
    doc="BatchNorm2d on CxHxW, BatchNorm1d on F",
))


def _lrn_infer(a, inp: TensorType) -> TensorType:
    need_image("lrn", inp)
    return inp


register(OpSpec(
    name="lrn", family="lrn", infer=_lrn_infer, positional=("size",),
    args={"size": Arg(positive_int, 5), "alpha": Arg(positive_float, 1e-4),
          "beta": Arg(positive_float, 0.75), "k": Arg(positive_float, 1.0)},
    other_ops=lambda a, i, o: o.numel * a["size"],
    doc="LocalResponseNorm",
))

# ---- activations ----

for _act in ("relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "softmax"):
    register(OpSpec(name=_act, family=_act, infer=lambda a, inp: inp,
                    other_ops=lambda a, i, o: o.numel,
                    doc="softmax over channels" if _act == "softmax" else "activation"))

# ---- pools ----


def _pool_infer(kind: str):
    def infer(a, inp: TensorType) -> TensorType:
        need_image(kind, inp)
        kh, kw = a["kernel"]
        if a.get("stride") is None:
            a["stride"] = kh if kh == kw else (kh, kw)  # PyTorch's default: stride = kernel
        a["padding"] = resolve_padding(a["padding"], a["kernel"])
        if a["padding"][0] > kh // 2 or a["padding"][1] > kw // 2:
            raise ShapeError(f"{kind}{kh}x{kw} padding {a['padding'][0]} is more than half the kernel")
        h, w = spatial(f"{kind}{kh}x{kw}", inp, a["kernel"], a["stride"], a["padding"])
        return shape(inp.c, h, w)

    return infer


for _pool in ("maxpool", "avgpool"):
    register(OpSpec(
        name=_pool, family=_pool, kernel=True, infer=_pool_infer(_pool),
        args={"stride": Arg(positive_int), "padding": Arg(padding_value)},
        flags={"same": ("padding", "same"), "valid": ("padding", "valid")},
        other_ops=lambda a, i, o: o.numel * a["kernel"][0] * a["kernel"][1],
        label=lambda a, _pool=_pool: f"{_pool}{a['kernel'][0]}x{a['kernel'][1]}{_stride_text(a['stride'])}",
        doc="MaxPool2d" if _pool == "maxpool" else "AvgPool2d",
    ))

# ---- reshaping ----


def _gap_infer(a, inp: TensorType) -> TensorType:
    need_image("gap", inp)
    return shape(inp.c, 1, 1)


register(OpSpec(name="gap", family="gap", infer=_gap_infer,
                other_ops=lambda a, i, o: i.numel, doc="global average pool, CxHxW → Cx1x1"))


def _flatten_infer(a, inp: TensorType) -> TensorType:
    return shape(inp.numel)


register(OpSpec(name="flatten", family="flatten", infer=_flatten_infer, doc="CxHxW → F"))

register(OpSpec(name="dropout", family="dropout", infer=lambda a, inp: inp, positional=("p",),
                args={"p": Arg(probability, 0.5)}, label=lambda a: f"dropout {a['p']:g}", doc="Dropout"))

# ---- structural ops the compiler creates (not callable by name) ----


def _no_infer(a, inp):  # pragma: no cover - structural ops get their shapes from the elaborator
    raise ShapeError("internal op")


register(OpSpec(name="_input", family="input", infer=_no_infer, doc="the network input"))
register(OpSpec(name="_add", family="add", infer=_no_infer,
                other_ops=lambda a, i, o: o.numel * (a["arity"] - 1), doc="sum of branches"))
register(OpSpec(name="_concat", family="cat", infer=_no_infer, doc="concatenation on channels"))


def _pad_infer(a, inp: TensorType) -> TensorType:
    target = a["target"]
    if inp.is_vector != (len(target) == 1):
        raise ShapeError(f"cannot pad the skip from {inp} to {TensorType(dims=target)}")
    if target[0] < inp.c:
        raise ShapeError(f"a zero-padded skip cannot narrow {inp.c} channels to {target[0]}")
    if not inp.is_vector:
        a["stride"] = subsample_stride(inp, target)
    return TensorType(dims=target)


register(OpSpec(name="_pad", family="pad", infer=_pad_infer, args={"target": Arg(tuple)}, label=lambda a: "zero-pad",
                doc="shortcut option A: subsample, then zero-pad channels"))
