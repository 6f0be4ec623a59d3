"""Ops that change the spatial size the other way: `upsample` (nearest or bilinear) and the
transposed conv `convtranspose` (`upconv`, the U-Net's "up-convolution"); and the structural
ops that fit a reference to the other branches of a join (`[@enc4 crop, skip]`): a centre
crop and a zero pad.  One register() call each, as in archlang/compiler/ops/layers.py."""

from __future__ import annotations

import math

from archlang.compiler.ir import Layout, TensorType, shape
from archlang.compiler.ops import (
    Arg,
    ArgError,
    Draw,
    Emit,
    Example,
    NoForm,
    OpSpec,
    ShapeError,
    need_image,
    nonneg_int,
    positive_float,
    positive_int,
    register,
    saves_input,
    switch,
)
from archlang.compiler.ops.layers import CONV, PLAIN, POOL, _kwargs, _one, _pair, _stride_text, _two, conv_widths
from archlang.compiler.symbolic import Unstageable, is_symbolic

# ---- upsample ----

MODES = ("nearest", "bilinear")


def _mode(value):
    if value in MODES:
        return value
    raise ArgError(f"must be nearest or bilinear, not {value!r}")


def _upsample_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_image("upsample", inp)
    scale, size = a["scale"], a["size"]
    if (scale is None) == (size is None):
        raise ShapeError("upsample takes a scale factor (`upsample 2`) or an output size (`upsample size=64`), "
                         "one of the two")
    if a["align_corners"] and a["mode"] != "bilinear":
        raise ShapeError("align_corners is a flag of bilinear upsampling only")
    if size is not None:
        return shape(inp.c, size, size)
    if is_symbolic(scale) or (is_symbolic(inp.dims) and not float(scale).is_integer()):
        raise Unstageable("an upsampling scale that is a parameter, or fractional on a size that is one")
    if float(scale).is_integer():
        h, w = inp.h * int(scale), inp.w * int(scale)
    else:
        h, w = math.floor(inp.h * scale), math.floor(inp.w * scale)
    if h < 1 or w < 1:
        raise ShapeError(f"upsample {scale:g} takes {inp.h}x{inp.w} to {h}x{w}")
    return shape(inp.c, h, w)


def _upsample_module(a, ins, out) -> str:
    if a["size"] is not None:
        head = f"size={a['size']}"
    else:
        scale = a["scale"]
        head = f"scale_factor={int(scale) if float(scale).is_integer() else scale!r}"
    extra = _kwargs(mode=a["mode"] if a["mode"] != "nearest" else None,
                    align_corners=True if a["align_corners"] else None)
    return f"nn.Upsample({head}{extra})"


def _upsample_label(a) -> str:
    what = f"size={a['size']}" if a["size"] is not None else f"{a['scale']:g}"
    return f"upsample {what}" + (" bilinear" if a["mode"] == "bilinear" else "") + \
        (" align_corners" if a["align_corners"] else "")


def _upsample_read(site) -> dict:
    """nn.Upsample, or F.interpolate(x, size, scale_factor, mode, align_corners)."""
    m = site.module
    if m is not None:
        size, scale, mode, corners = m.size, m.scale_factor, m.mode, m.align_corners
        recompute = m.recompute_scale_factor
    else:
        size, scale = site.value(site.arg(1, "size")), site.value(site.arg(2, "scale_factor"))
        mode, corners = site.arg(3, "mode", "nearest"), site.arg(4, "align_corners")
        recompute = site.arg(5, "recompute_scale_factor")
        if site.arg(6, "antialias", False):
            raise NoForm("antialiased interpolation")
    if mode not in MODES:
        raise NoForm(f"mode={mode!r}: archlang upsamples nearest or bilinear")
    if size is not None:
        return {"size": _one("size", tuple(size) if isinstance(size, tuple | list) else size), "mode": mode,
                "align_corners": bool(corners)}
    scale = float(_one("scale_factor", scale))
    if recompute and not scale.is_integer():
        raise NoForm("recompute_scale_factor with a fractional scale")
    return {"scale": int(scale) if scale.is_integer() else scale, "mode": mode, "align_corners": bool(corners)}


register(OpSpec(
    name="upsample", family="upsample", infer=_upsample_infer, main=True, positional=("scale",),
    args={"scale": Arg(positive_float), "size": Arg(positive_int), "mode": Arg(_mode, "nearest"),
          "align_corners": Arg(switch, False)},
    flags={"nearest": ("mode", "nearest"), "bilinear": ("mode", "bilinear"), "align_corners": ("align_corners", True)},
    # a gather per output element (nearest), a weighted sum of four neighbours (bilinear)
    other_ops=lambda a, i, o: o.numel * (4 if a["mode"] == "bilinear" else 1),
    label=_upsample_label,
    emit=Emit(module=_upsample_module, torch_types=("nn.Upsample", "nn.UpsamplingNearest2d",
                                                    "nn.UpsamplingBilinear2d", "F.interpolate"),
              read=_upsample_read),
    draw=Draw(fill=POOL),
    doc="nn.Upsample by a scale factor or to `size`: nearest (default), or `bilinear` [`align_corners`]",
    examples=(Example("upsample 2"), Example("upsample 2 bilinear align_corners", "8x5x7"),
              Example("upsample 1.5 bilinear", "8x7x7"), Example("upsample size=20 nearest"),
              Example("upsample 3 bilinear", "4x3x3")),
))

# ---- transposed conv ----


def _convt_infer(a, ins) -> TensorType:
    inp = ins[0]
    conv_widths("convtranspose", a, inp)
    s, p, d, op = a["stride"], a["padding"], a["dilation"], a["output_padding"]
    if op >= max(s, d):
        raise ShapeError(f"output_padding {op} must be smaller than the stride or the dilation")
    kh, kw = a["kernel"]
    h = (inp.h - 1) * s - 2 * p + d * (kh - 1) + op + 1
    w = (inp.w - 1) * s - 2 * p + d * (kw - 1) + op + 1
    if h < 1 or w < 1:
        raise ShapeError(f"convtranspose{kh}x{kw} on {inp} with padding {p} leaves a spatial size of {h}x{w}")
    return shape(a["out"], h, w)


def _convt_weights(a) -> int:
    kh, kw = a["kernel"]
    return a["in_c"] * (a["out"] // a["groups"]) * kh * kw


def _convt_module(a, ins, out) -> str:
    extra = _kwargs(stride=a["stride"] if a["stride"] != 1 else None,
                    padding=a["padding"] if a["padding"] != 0 else None,
                    output_padding=a["output_padding"] if a["output_padding"] != 0 else None,
                    groups=a["groups"] if a["groups"] != 1 else None,
                    bias=False if not a["bias"] else None,
                    dilation=a["dilation"] if a["dilation"] != 1 else None)
    return f"nn.ConvTranspose2d({a['in_c']}, {a['out']}, {_pair(a['kernel'])!r}{extra})"


def _convt_label(a) -> str:
    kh, kw = a["kernel"]
    text = f"upconv{kh}x{kw} {a['out']}{_stride_text(a['stride'])}"
    if a["padding"]:
        text += f" padding={a['padding']}"
    if a["groups"] != 1:
        text += f" groups={a['groups']}"
    return text


def _convt_read(site) -> dict:
    m = site.module
    if site.arg(1, "output_size") is not None:
        raise NoForm("called with output_size (write its output_padding instead)")
    if m.padding_mode != "zeros":
        raise NoForm(f"padding_mode={m.padding_mode!r}: only zero padding is written")
    return {"kernel": _two(m.kernel_size), "out": m.out_channels, "stride": _one("stride", m.stride),
            "padding": _one("padding", m.padding), "output_padding": _one("output_padding", m.output_padding),
            "groups": m.groups, "dilation": _one("dilation", m.dilation), "bias": m.bias is not None}


register(OpSpec(
    name="convtranspose", family="upconv", aliases=("upconv",), kernel=True, infer=_convt_infer, main=True,
    positional=("out",),
    args={"out": Arg(positive_int), "stride": Arg(positive_int, 1), "padding": Arg(nonneg_int, 0),
          "output_padding": Arg(nonneg_int, 0), "groups": Arg(positive_int, 1), "dilation": Arg(positive_int, 1)},
    flags={"bias": ("bias", True), "nobias": ("bias", False)},
    settings={"bias": "bias"},
    params=lambda a, i, o: _convt_weights(a) + (a["out"] if a["bias"] else 0),
    # every input position scatters its kernel: in · out/groups · kh · kw per input position
    macs=lambda a, i, o: _convt_weights(a) * i[0].h * i[0].w,
    saved=saves_input,
    other_ops=lambda a, i, o: o.numel if a["bias"] else 0,
    label=_convt_label,
    emit=Emit(module=_convt_module, torch_types=("nn.ConvTranspose2d",), read=_convt_read),
    draw=Draw(fill=CONV),
    doc="ConvTranspose2d (`upconv` too): out = (in-1)·s - 2p + d(k-1) + output_padding + 1; "
        "convtranspose2x2 C /2 doubles the size",
    examples=(Example("convtranspose2x2 16 /2"), Example("upconv3x3 4 /2 padding=1 output_padding=1 nobias"),
              Example("convtranspose3x3 8 groups=4 dilation=2"), Example("upconv2x2 /2", "6x5x5"),
              Example("convtranspose1x3 5 /3 bias", "4x3x4")),
))

# words other libraries and papers use for these ops, and what they are called here
SYNONYMS = (("deconv", "convtranspose2x2 C /2 (or upconv2x2 C /2): a transposed conv"),
            ("transpose", "convtranspose2x2 C /2 (or upconv2x2 C /2): a transposed conv"),
            ("upconv", "upconv2x2 C /2: a 2x2 transposed conv that doubles the size"),
            ("interpolate", "upsample 2 (nearest) or upsample 2 bilinear [align_corners]"),
            ("upsampl", "upsample 2 (nearest) or upsample 2 bilinear [align_corners]"),
            ("resize", "upsample size=S, or upsample 2"),
            ("crop", "[@enc4 crop, skip]: a reference centre-cropped to the other branches' size"))


def synonym_hint(word: str) -> str | None:
    """A hint for an unknown op named as elsewhere (`deconv2x2`, `upsampling`, `interpolate`)."""
    low = word.lower()
    for stem, hint in SYNONYMS:
        if stem in low:
            return f"write {hint}"
    return None


# ---- fitting a reference to the other branches of a join (structural) ----


def _target(a, ins, op: str) -> tuple[TensorType, int, int]:
    inp = ins[0]
    need_image(op, inp)
    h, w = a["target"]
    if is_symbolic((inp.h, inp.w, h, w)):  # pragma: no cover - the elaborator stages no such fit
        raise Unstageable("a fitted reference of a size that depends on a value")
    return inp, h, w


def _crop_infer(a, ins) -> TensorType:
    inp, h, w = _target(a, ins, "crop")
    if h > inp.h or w > inp.w:
        raise ShapeError(f"cannot crop {inp} to {h}x{w}: it is smaller")
    a["top"], a["left"] = (inp.h - h) // 2, (inp.w - w) // 2
    return shape(inp.c, h, w)


def _crop_call(args, a) -> str:
    h, w = a["target"]
    return f"{args[0]}[:, :, {a['top']}:{a['top'] + h}, {a['left']}:{a['left'] + w}]"


def _crop_read(site) -> dict | None:
    """x[:, :, top:top + h, left:left + w] of an image: a centre crop, as a fitted reference writes it."""
    index = site.value(site.arg(1, "index"))
    if isinstance(index, tuple) and len(index) == 3 and index[0] is Ellipsis:
        index = (slice(None), slice(None), *index[1:])  # x[..., a:b, c:d]
    if site.layout is not Layout.IMAGE or not isinstance(index, tuple) or len(index) != 4 \
            or not all(isinstance(i, slice) for i in index):
        return None
    (_, h_in, w_in), (_, h, w) = site.in_dims, site.out_dims
    (top, _, dy), (left, _, dx) = index[2].indices(h_in), index[3].indices(w_in)
    if index[0] != slice(None) or index[1] != slice(None) or (dy, dx) != (1, 1):
        raise NoForm("a slice of an image other than a crop of its height and width")
    if (top, left) != ((h_in - h) // 2, (w_in - w) // 2):
        raise NoForm(f"a crop of {h_in}x{w_in} to {h}x{w} from ({top}, {left}), not the centre "
                     f"({(h_in - h) // 2}, {(w_in - w) // 2}) that `@name crop` takes")
    return {"target": (h, w)}


register(OpSpec(
    name="_crop", family="crop", infer=_crop_infer, view=True, args={"target": Arg(tuple)},
    memory_view=lambda a, contiguous: False,
    label=lambda a: f"crop {a['target'][0]}x{a['target'][1]}",
    emit=Emit(call=_crop_call, torch_types=("operator.getitem",), read=_crop_read),
    draw=Draw(fill=PLAIN),
    doc="a reference centre-cropped to the other branches' size (`[@enc4 crop, skip]`, U-Net)",
    examples=(Example("[@input crop, conv3x3 8]"), Example("conv5x5 8 | @input crop", "8x13x12"),
              Example("[conv3x3 4, @input crop, conv3x3 2 valid]")),
))


def _zeropad_infer(a, ins) -> TensorType:
    inp, h, w = _target(a, ins, "zero-pad")
    if h < inp.h or w < inp.w:
        raise ShapeError(f"cannot pad {inp} to {h}x{w}: it is larger")
    top, left = (h - inp.h) // 2, (w - inp.w) // 2
    a["pad"] = (left, w - inp.w - left, top, h - inp.h - top)  # as nn.functional.pad takes it
    return shape(inp.c, h, w)


def _zeropad_read(site) -> dict:
    """F.pad(x, [left, right, top, bottom]) with zeros, half the difference (rounded down) before."""
    pad = site.value(site.arg(1, "pad"))
    mode, value = site.arg(2, "mode", "constant"), site.arg(3, "value", None)
    if site.layout is not Layout.IMAGE or mode != "constant" or value not in (None, 0, 0.0) \
            or not isinstance(pad, tuple | list) or len(pad) != 4:
        raise NoForm("a pad other than zeros on the height and width of an image")
    (_, h_in, w_in), (_, h, w) = site.in_dims, site.out_dims
    left, _, top, _ = pad
    if min(pad) < 0:
        raise NoForm(f"a negative pad {list(pad)} (a crop: `@name crop` crops a reference, or slice it)")
    if (top, left) != ((h - h_in) // 2, (w - w_in) // 2):
        raise NoForm(f"a pad {list(pad)} of {h_in}x{w_in} to {h}x{w} that is not centred as `@name pad` pads "
                     "(half the difference, rounded down, before)")
    return {"target": (h, w)}


register(OpSpec(
    name="_zeropad", family="zeropad", infer=_zeropad_infer, args={"target": Arg(tuple)},
    label=lambda a: f"zero-pad to {a['target'][0]}x{a['target'][1]}",
    emit=Emit(call=lambda args, a: f"nn.functional.pad({args[0]}, {a['pad']!r})", torch_types=("F.pad",),
              read=_zeropad_read),
    draw=Draw(fill=PLAIN),
    doc="the smaller of a fitted reference and its join's other branches, zero-padded to the larger "
        "(`[@enc4 pad, skip]`: left/top get the floor of half the difference)",
    examples=(Example("[@input pad, conv3x3 8]"), Example("conv3x3 8 | @input pad", "8x9x8"),
              Example("[maxpool2x2, @input pad]", "8x7x9")),
))
