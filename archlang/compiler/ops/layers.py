"""The built-in ops of LANGUAGE.md §5 and the structural ops the compiler inserts, one
register() call each.

Each `infer` checks the inputs, completes `attrs` with resolved values (padding as numbers,
input width) and returns the output shape."""

from __future__ import annotations

from archlang.compiler.ir import Layout, TensorType, shape
from archlang.compiler.ops import (
    SAVES_INPUT,
    Arg,
    Draw,
    Emit,
    Example,
    NoForm,
    OpSpec,
    Saved,
    ShapeError,
    need_image,
    nonneg_int,
    padding_value,
    positive_float,
    positive_int,
    probability,
    register,
    resolve_padding,
    saves_input,
    saves_output,
    spatial,
    subsample_stride,
    switch,
)
from archlang.compiler.symbolic import Unstageable, is_symbolic

# diagram fills by kind: muted colours that print well
CONV, DENSE, NORM, POOL, ACT, PLAIN = "#dbe8f6", "#e6def5", "#eeeeee", "#fbe3d6", "#e1f0dc", "#f5f5f5"


def _pair(v):
    """A kernel/stride/padding as PyTorch takes it: 3 for (3, 3), (1, 3) as is."""
    if isinstance(v, tuple):
        return v[0] if v[0] == v[1] else v
    return v


def _kwargs(**kw) -> str:
    return "".join(f", {k}={v!r}" for k, v in kw.items() if v is not None)


def _stride_text(stride) -> str:
    if stride == 1:
        return ""
    return f" /{stride[0]}x{stride[1]}" if isinstance(stride, tuple) else f" /{stride}"


# ---- conv ----


def conv_widths(op: str, a, inp: TensorType) -> None:
    """A conv's (or transposed conv's) input and output widths into `a` (the output defaults to
    the input's), checked against its groups."""
    need_image(op, inp)
    a["in_c"] = inp.c
    if a.get("out") is None:
        a["out"] = inp.c
    g = a["groups"]
    if inp.c % g or a["out"] % g:
        raise ShapeError(
            f"groups={g} must divide both the input width {inp.c} and the output width {a['out']}"
        )


def _conv_infer(a, ins) -> TensorType:
    inp = ins[0]
    conv_widths("conv", a, inp)
    a["padding"] = resolve_padding(a["padding"], a["kernel"], a["dilation"])
    h, w = spatial(f"conv{a['kernel'][0]}x{a['kernel'][1]}", inp, a["kernel"], a["stride"], a["padding"], a["dilation"])
    return shape(a["out"], h, w)


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


def _conv_module(a, ins, out) -> str:
    extra = _kwargs(stride=_pair(a["stride"]) if a["stride"] != 1 else None,
                    padding=_pair(a["padding"]) if a["padding"] != (0, 0) else None,
                    dilation=a["dilation"] if a["dilation"] != 1 else None,
                    groups=a["groups"] if a["groups"] != 1 else None,
                    bias=False if not a["bias"] else None)
    return f"nn.Conv2d({a['in_c']}, {a['out']}, {_pair(a['kernel'])!r}{extra})"


def _two(v) -> tuple:
    return tuple(v) if isinstance(v, tuple | list) else (v, v)


def _one(name: str, v):
    """One value for both axes (a stride, a dilation), as the ops take it."""
    v = _two(v)
    if v[0] != v[1]:
        raise NoForm(f"{name} {v} differs between height and width")
    return v[0]


def _conv_read(site) -> dict:
    m = site.module
    if m.padding_mode != "zeros":
        raise NoForm(f"padding_mode={m.padding_mode!r}: only zero padding is written")
    if m.output_padding != (0, 0) or m.transposed:
        raise NoForm("a transposed convolution")
    return {"kernel": _two(m.kernel_size), "out": m.out_channels, "stride": _one("stride", m.stride),
            "padding": m.padding if isinstance(m.padding, str) else _two(m.padding), "groups": m.groups,
            "dilation": _one("dilation", m.dilation), "bias": m.bias is not None}


register(OpSpec(
    name="conv", family="conv", kernel=True, infer=_conv_infer, main=True,
    positional=("out",),
    args={"out": Arg(positive_int), "stride": Arg(positive_int, 1), "padding": Arg(padding_value),
          "groups": Arg(positive_int, 1), "dilation": Arg(positive_int, 1)},
    flags={"same": ("padding", "same"), "valid": ("padding", "valid"),
           "bias": ("bias", True), "nobias": ("bias", False)},
    settings={"padding": "padding", "bias": "bias"},
    params=lambda a, i, o: _conv_weights(a) + (a["out"] if a["bias"] else 0),
    macs=lambda a, i, o: _conv_weights(a) * o.h * o.w,
    other_ops=lambda a, i, o: o.numel if a["bias"] else 0,  # the bias adds
    saved=saves_input,  # for the weights' gradient (the weights for the input's are parameters)
    label=_conv_label,
    emit=Emit(module=_conv_module, torch_types=("nn.Conv2d",), read=_conv_read),
    draw=Draw(fill=CONV),
    doc="Conv2d; default width keeps C",
    examples=(Example("conv3x3 16 /2 same"), Example("conv5x5 8 groups=4 dilation=2 padding=2 nobias"),
              Example("conv1x3 6 valid bias"), Example("conv1x1 /3")),
))

# ---- dense ----


def _dense_infer(a, ins) -> TensorType:
    inp = ins[0]
    if inp.is_image:  # pragma: no cover - the elaborator flattens first (flatten_input)
        raise ShapeError(f"dense needs a feature vector, not {inp}")
    a["in_f"] = inp.c
    return inp.with_c(a["out"])  # a vector; on tokens or channels-last, per position


register(OpSpec(
    name="dense", family="fc", aliases=("fc", "linear"), infer=_dense_infer, main=True, flatten_input=True,
    positional=("out",),
    args={"out": Arg(positive_int, required=True)},
    flags={"bias": ("bias", True), "nobias": ("bias", False)},
    settings={"bias": "bias"},
    params=lambda a, i, o: a["in_f"] * a["out"] + (a["out"] if a["bias"] else 0),
    macs=lambda a, i, o: a["in_f"] * o.numel,  # in x out for each token or position
    other_ops=lambda a, i, o: o.numel if a["bias"] else 0,
    # on tokens or positions, a strided input is reshaped to 2 dims first: a copy, which is kept
    saved=lambda a, i, o: (Saved("input", copy_if_strided=len(i[0].dims) > 1),),
    label=lambda a: f"dense {a['out']}",
    emit=Emit(module=lambda a, i, o: f"nn.Linear({a['in_f']}, {a['out']}{', bias=False' if not a['bias'] else ''})",
              torch_types=("nn.Linear",), read=lambda site: {"out": site.module.out_features,
                                                             "bias": site.module.bias is not None}),
    draw=Draw(fill=DENSE),
    doc="Linear; flattens a CxHxW input first; on tokens (or channels-last) applied to each one",
    examples=(Example("dense 10", "8x3x3"), Example("fc 5 nobias", "20"), Example("linear 7 bias", "12"),
              Example("dense 12", "5x8"), Example("channels_last > dense 6 nobias", "4x3x5")),
))

# ---- normalisation ----


def _bn_infer(a, ins) -> TensorType:
    inp = ins[0]
    if inp.layout not in (Layout.IMAGE, Layout.VECTOR):
        raise ShapeError(f"bn normalises the channels of CxHxW or F, not {inp.layout.the} {inp}; "
                         "use layernorm on tokens")
    a["features"] = inp.c
    a["dims"] = 1 if inp.is_vector else 2
    return inp


def _bn_module(a, ins, out) -> str:
    extra = _kwargs(eps=a["eps"] if a["eps"] != 1e-5 else None,
                    momentum=a["momentum"] if a["momentum"] != 0.1 else None)
    return f"nn.BatchNorm{a['dims']}d({a['features']}{extra})"


def _bn_read(site) -> dict:
    m = site.module
    if not m.affine or not m.track_running_stats or m.momentum is None:
        raise NoForm("a BatchNorm without affine weights, running statistics or a momentum")
    return {"eps": m.eps, "momentum": m.momentum}


register(OpSpec(
    name="bn", family="bn", infer=_bn_infer, absorbs_bias=True, batch_statistics=True,
    args={"eps": Arg(positive_float, 1e-5), "momentum": Arg(probability, 0.1)},
    params=lambda a, i, o: 2 * o.c,
    buffers=lambda a, i, o: 2 * o.c + 1,  # running mean, running var, num_batches_tracked
    other_ops=lambda a, i, o: o.numel,
    # the input, and the batch's mean and inverse deviation per channel
    saved=lambda a, i, o: (Saved("input"), Saved("own", elements=2 * o.c, dtype="float32", per_sample=False)),
    emit=Emit(module=_bn_module, torch_types=("nn.BatchNorm2d", "nn.BatchNorm1d"), read=_bn_read),
    draw=Draw(fill=NORM),
    doc="BatchNorm2d on CxHxW, BatchNorm1d on F",
    examples=(Example("bn"), Example("bn eps=0.001 momentum=0.01", "16")),
))


def _lrn_infer(a, ins) -> TensorType:
    need_image("lrn", ins[0])
    return ins[0]


register(OpSpec(
    name="lrn", family="lrn", infer=_lrn_infer, positional=("size",),
    args={"size": Arg(positive_int, 5), "alpha": Arg(positive_float, 1e-4),
          "beta": Arg(positive_float, 0.75), "k": Arg(positive_float, 1.0)},
    other_ops=lambda a, i, o: o.numel * a["size"],
    # F.local_response_norm: x·x padded over channels for an avg_pool3d, the pooled sum scaled and
    # raised to beta, and the divisor
    saved=lambda a, i, o: (Saved("input"), Saved("own", elements=(o.c + a["size"] - 1) * o.h * o.w + 2 * o.numel)),
    emit=Emit(module=lambda a, i, o: f"nn.LocalResponseNorm({a['size']}, alpha={a['alpha']!r}, "
                                     f"beta={a['beta']!r}, k={a['k']!r})",
              torch_types=("nn.LocalResponseNorm",),
              read=lambda site: {"size": site.module.size, "alpha": site.module.alpha, "beta": site.module.beta,
                                 "k": site.module.k}),
    draw=Draw(fill=NORM),
    doc="LocalResponseNorm",
    examples=(Example("lrn"), Example("lrn 3 alpha=0.001 beta=0.5 k=2")),
))

# ---- activations ----


def _same_shape(a, ins) -> TensorType:
    return ins[0]


def _plain_read(site) -> dict:
    if getattr(site.module, "approximate", "none") != "none":
        raise NoForm(f"approximate={site.module.approximate!r}")
    return {}


def activation(name: str, module: str, doc: str = "activation", functions: tuple[str, ...] = (),
               keeps_output: bool = False) -> OpSpec:
    """An elementwise activation: the shape is unchanged, one other op per element.  `functions`:
    its functional forms besides the module (`F.relu`, `torch.relu`, `Tensor.relu`).  For its
    gradient PyTorch keeps its input, or its output (`keeps_output`: ReLU, tanh, sigmoid)."""
    return register(OpSpec(
        name=name, family=name, infer=_same_shape, other_ops=lambda a, i, o: o.numel,
        saved=saves_output if keeps_output else saves_input,
        emit=Emit(module=lambda a, i, o: module, torch_types=(module.removesuffix("()"), *functions),
                  read=_plain_read),
        draw=Draw(fill=ACT), doc=doc,
        examples=(Example(name), Example(name, "6")),
    ))


activation("relu", "nn.ReLU()", functions=("F.relu", "torch.relu", "Tensor.relu", "F.relu_", "Tensor.relu_"),
           keeps_output=True)
activation("relu6", "nn.ReLU6()", functions=("F.relu6",))
activation("tanh", "nn.Tanh()", functions=("torch.tanh", "Tensor.tanh", "F.tanh"), keeps_output=True)
activation("sigmoid", "nn.Sigmoid()", functions=("torch.sigmoid", "Tensor.sigmoid", "F.sigmoid"), keeps_output=True)
activation("gelu", "nn.GELU()", functions=("F.gelu",))
activation("silu", "nn.SiLU()", functions=("F.silu",))
def _softmax_infer(a, ins) -> TensorType:
    a["last"] = bool(ins[0].layout.channel_axis)  # tokens and channels-last: over the last dim
    return ins[0]


def _softmax_read(site) -> dict:
    axis = 1 if site.layout.channel_axis == 0 else len(site.in_dims)  # counted with the batch
    if site.module.dim not in (axis, axis - len(site.in_dims) - 1):
        raise NoForm(f"softmax over dim={site.module.dim}, not over the channels")
    return {}


register(OpSpec(
    name="softmax", family="softmax", infer=_softmax_infer,
    other_ops=lambda a, i, o: o.numel,
    saved=saves_output,
    emit=Emit(module=lambda a, i, o: f"nn.Softmax(dim={-1 if a['last'] else 1})", torch_types=("nn.Softmax",),
              read=_softmax_read),
    draw=Draw(fill=ACT),
    doc="softmax over channels (of each token on a sequence)",
    examples=(Example("softmax"), Example("softmax", "6"), Example("softmax", "3x6")),
))
activation("hardswish", "nn.Hardswish()", "x * relu6(x + 3) / 6 (MobileNetV3)", ("F.hardswish",))
activation("hardsigmoid", "nn.Hardsigmoid()", "relu6(x + 3) / 6 (MobileNetV3's gates)", ("F.hardsigmoid",))

register(OpSpec(
    name="leakyrelu", family="leakyrelu", infer=_same_shape, positional=("slope",),
    args={"slope": Arg(positive_float, 0.01)},
    other_ops=lambda a, i, o: o.numel,
    saved=saves_input,
    label=lambda a: "leakyrelu" if a["slope"] == 0.01 else f"leakyrelu {a['slope']:g}",
    emit=Emit(module=lambda a, i, o: "nn.LeakyReLU()" if a["slope"] == 0.01 else f"nn.LeakyReLU({a['slope']!r})",
              torch_types=("nn.LeakyReLU",), read=lambda site: {"slope": site.module.negative_slope}),
    draw=Draw(fill=ACT),
    doc="LeakyReLU with negative slope `slope` (default 0.01)",
    examples=(Example("leakyrelu"), Example("leakyrelu 0.2", "6"), Example("leakyrelu slope=0.1")),
))


def _layernorm_infer(a, ins) -> TensorType:
    a["features"] = ins[0].c
    a["image"] = ins[0].is_image
    return ins[0]


def _channels_last(name: str, base: str, doc: str) -> str:
    """The source of a subclass of `base` applied over the channels at each position of an
    N x C x H x W tensor: permuted to channels-last around the base's own forward."""
    return (f"\n\nclass {name}({base}):\n    \"\"\"{doc}\"\"\"\n\n    def forward(self, x):\n"
            "        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)\n")


LAYERNORM_CLASS = _channels_last("LayerNorm2d", "nn.LayerNorm",
                                 "LayerNorm over the channels at each position of an N x C x H x W tensor.")


def _layernorm_module(a, ins, out) -> str:
    extra = _kwargs(eps=a["eps"] if a["eps"] != 1e-5 else None)
    return f"{'LayerNorm2d' if a['image'] else 'nn.LayerNorm'}({a['features']}{extra})"


def _layernorm_read(site) -> dict:
    m = site.module
    image = type(m).__name__ == "LayerNorm2d"
    if image != (site.layout is Layout.IMAGE):
        raise NoForm("a LayerNorm over another axis than the channels")
    if len(m.normalized_shape) != 1 or not m.elementwise_affine or getattr(m, "bias", True) is None:
        raise NoForm("a LayerNorm over several axes, or without its weight and bias")
    return {"eps": m.eps}


register(OpSpec(
    name="layernorm", family="norm", infer=_layernorm_infer,
    args={"eps": Arg(positive_float, 1e-5)},
    params=lambda a, i, o: 2 * o.c,
    other_ops=lambda a, i, o: o.numel,
    # the input (a channels-last view of an image's), and the mean and inverse deviation of each position
    saved=lambda a, i, o: (Saved("input"), Saved("own", elements=2 * (o.numel // o.c), dtype="float32")),
    emit=Emit(module=_layernorm_module, helper=LAYERNORM_CLASS, needs_helper=lambda a: a["image"],
              torch_types=("nn.LayerNorm", "torchvision.models.convnext.LayerNorm2d"), read=_layernorm_read),
    draw=Draw(fill=NORM),
    doc="LayerNorm over channels: of a vector, of each token, or at each position of CxHxW (ConvNeXt's "
        "LayerNorm2d)",
    examples=(Example("layernorm"), Example("layernorm eps=1e-6", "16"), Example("layernorm", "7x12")),
))

# ---- pools ----


def _pool_infer(kind: str):
    def infer(a, ins) -> TensorType:
        inp = ins[0]
        need_image(kind, inp)
        kh, kw = a["kernel"]
        if a.get("stride") is None:
            a["stride"] = kh if kh == kw else (kh, kw)  # PyTorch's default: stride = kernel
        a["padding"] = resolve_padding(a["padding"], a["kernel"])
        if a["padding"][0] > kh // 2 or a["padding"][1] > kw // 2:
            raise ShapeError(f"{kind}{kh}x{kw} padding {a['padding'][0]} is more than half the kernel")
        h, w = spatial(f"{kind}{kh}x{kw}", inp, a["kernel"], a["stride"], a["padding"], ceil=a["ceil"])
        return shape(inp.c, h, w)

    return infer


def _pool_module(cls: str):
    def emit(a, ins, out) -> str:
        stride = _pair(a["stride"])
        extra = _kwargs(stride=stride if stride != _pair(a["kernel"]) else None,
                        padding=_pair(a["padding"]) if a["padding"] != (0, 0) else None,
                        ceil_mode=True if a["ceil"] else None,
                        count_include_pad=False if not a.get("include_pad", True) else None)  # avgpool only
        return f"nn.{cls}({_pair(a['kernel'])!r}{extra})"

    return emit


def _pool_read(site) -> dict:
    """nn.MaxPool2d / nn.AvgPool2d, or F.max_pool2d / F.avg_pool2d (their arguments in that order)."""
    def get(i, name, default):
        return getattr(site.module, name) if site.module is not None else site.arg(i, name, default)

    maxpool = (type(site.module).__name__ if site.module is not None else site.key).lower().find("max") >= 0
    if maxpool and (get(4, "dilation", 1) not in (1, (1, 1)) or get(6, "return_indices", False)):
        raise NoForm("a max pool with dilation or returning indices")
    if not maxpool and get(6, "divisor_override", None) is not None:
        raise NoForm("an average pool with divisor_override")
    kernel = get(1, "kernel_size", None)
    found = {"kernel": _two(kernel), "stride": _one("stride", get(2, "stride", None) or kernel),
             "padding": _two(get(3, "padding", 0)), "ceil": bool(get(5 if maxpool else 4, "ceil_mode", False))}
    if not maxpool:
        found["include_pad"] = bool(get(5, "count_include_pad", True))
    return found


def _output_size(site):
    return site.module.output_size if site.module is not None else site.arg(1, "output_size", None)


def _pool_saved(a, i, o) -> tuple[Saved, ...]:
    """A max pool keeps its input and the int64 index of each output's maximum."""
    return Saved("input"), Saved("own", elements=o.numel, dtype="int64")


def pool(name: str, cls: str, args: dict, flags: dict, examples: tuple[Example, ...], doc: str) -> OpSpec:
    return register(OpSpec(
        name=name, family=name, kernel=True, infer=_pool_infer(name), main=True,
        args={"stride": Arg(positive_int), "padding": Arg(padding_value), "ceil": Arg(switch, False),
              **args},
        flags={"same": ("padding", "same"), "valid": ("padding", "valid"), "ceil": ("ceil", True),
               "floor": ("ceil", False), **flags},
        settings={"padding": "padding"},
        other_ops=lambda a, i, o: o.numel * a["kernel"][0] * a["kernel"][1],
        saved=_pool_saved if name == "maxpool" else saves_input,
        label=lambda a: f"{name}{a['kernel'][0]}x{a['kernel'][1]}{_stride_text(a['stride'])}"
                        + (" ceil" if a["ceil"] else "") + ("" if a.get("include_pad", True) else " exclude_pad"),
        emit=Emit(module=_pool_module(cls), torch_types=(f"nn.{cls}", f"F.{name[:3]}_pool2d"), read=_pool_read),
        draw=Draw(fill=POOL),
        doc=doc,
        examples=(Example(f"{name}3x3 /2 same"), Example(f"{name}2x2"), Example(f"{name}3x3 /1 padding=1"),
                  Example(f"{name}2x3 valid"), Example(f"{name}3x3 /2 ceil", "8x13x13"),
                  Example(f"{name}3x3 /2 padding=1 ceil", "8x14x14"), *examples),
    ))


pool("maxpool", "MaxPool2d", {}, {}, (), "MaxPool2d; `ceil` rounds the output size up (ceil_mode=True)")
pool("avgpool", "AvgPool2d", {"include_pad": Arg(switch, True)}, {"exclude_pad": ("include_pad", False)},
     (Example("avgpool3x3 /1 same exclude_pad"),),
     "AvgPool2d; `ceil` as for maxpool, `exclude_pad` leaves padding out of the mean (count_include_pad=False)")


def _adaptive_infer(kind: str):
    def infer(a, ins) -> TensorType:
        inp = ins[0]
        need_image(kind, inp)
        return shape(inp.c, a["size"], a["size"])

    return infer


def _windows(n: int, out: int) -> int:
    """The summed length of an adaptive pool's windows along one axis of `n` into `out`."""
    return sum(-(-(i + 1) * n // out) - (i * n) // out for i in range(out))


def adaptive(name: str, cls: str, doc: str) -> OpSpec:
    return register(OpSpec(
        name=name, family=name, infer=_adaptive_infer(name), main=True, positional=("size",),
        args={"size": Arg(positive_int, required=True)},
        other_ops=lambda a, i, o: o.c * _windows(i[0].h, o.h) * _windows(i[0].w, o.w),
        # to 1x1, PyTorch takes a mean, which keeps nothing
        saved=lambda a, i, o: () if a["size"] == 1 else _pool_saved(a, i, o) if "max" in name else SAVES_INPUT,
        label=lambda a: f"{name} {a['size']}",
        emit=Emit(module=lambda a, i, o: f"nn.{cls}({a['size']})",
                  torch_types=(f"nn.{cls}", f"F.{name[:12]}_{name[12:]}2d"),
                  read=lambda site: None if _two(_output_size(site)) == (1, 1)  # gap, gmp
                  else {"size": _one("output size", _output_size(site))}),
        draw=Draw(fill=POOL),
        doc=doc,
        examples=(Example(f"{name} 6", "8x13x13"), Example(f"{name} 4", "8x4x4"), Example(f"{name} 5", "3x3x7")),
    ))


adaptive("adaptive_avgpool", "AdaptiveAvgPool2d", "AdaptiveAvgPool2d to SIZE x SIZE (AlexNet's and VGG's `avgpool`)")
adaptive("adaptive_maxpool", "AdaptiveMaxPool2d", "AdaptiveMaxPool2d to SIZE x SIZE")

# ---- reshaping ----


def _global_read(site) -> dict | None:
    """An adaptive pool to 1x1, or a mean over H and W (`x.mean([2, 3])`, with or without keepdim)."""
    if site.key.endswith("mean"):
        dims = site.arg(1, "dim", None)
        return {} if isinstance(dims, tuple | list) and sorted(d % 4 for d in dims) == [2, 3] else None
    return {} if _two(_output_size(site)) == (1, 1) else None


def global_pool(name: str, cls: str, doc: str) -> OpSpec:
    def infer(a, ins) -> TensorType:
        need_image(name, ins[0])
        return shape(ins[0].c, 1, 1)

    return register(OpSpec(
        name=name, family=name, infer=infer, main=True,
        other_ops=lambda a, i, o: i[0].numel,
        saved=_pool_saved if name == "gmp" else lambda a, i, o: (),  # gap: a mean, which keeps nothing
        emit=Emit(module=lambda a, i, o: f"nn.{cls}(1)", read=_global_read,
                  torch_types=(f"nn.{cls}", f"F.adaptive_{cls[8:11].lower()}_pool2d",
                               *(("Tensor.mean", "torch.mean") if name == "gap" else ()))),
        draw=Draw(fill=POOL),
        doc=doc,
        examples=(Example(name),),
    ))


global_pool("gap", "AdaptiveAvgPool2d", "global average pool, CxHxW → Cx1x1")
global_pool("gmp", "AdaptiveMaxPool2d", "global max pool, CxHxW → Cx1x1")


def _chunk_infer(a, ins) -> TensorType:
    inp = ins[0]
    n, k = a["parts"], a["index"]
    if is_symbolic((n, k)):  # forward computes the chunk, and sees no constructor parameter
        raise Unstageable("a chunk's parts or index given by a parameter")
    if k >= n:
        raise ShapeError(f"chunk {n} {k}: the index counts from 0, so it must be less than {n}")
    if inp.c % n:
        raise ShapeError(f"chunk {n} cannot split {inp.c} channels into {n} equal parts")
    if inp.layout.channel_axis:
        a["dim"] = -1
    return inp.with_c(inp.c // n)


def _chunk_read(site) -> dict | None:
    """One part of `x.chunk(n, dim)` (or of an equal `torch.split`): site.param is (n, i, dim)."""
    parts, index, dim = site.param
    axis = len(site.in_dims) if site.layout.channel_axis else 1  # the channel axis, batch counted
    if dim % (len(site.in_dims) + 1) != axis % (len(site.in_dims) + 1):
        return None
    return {"parts": parts, "index": index}


register(OpSpec(
    name="chunk", family="chunk", infer=_chunk_infer, view=True, positional=("parts", "index"),
    memory_view=lambda a, contiguous: False,
    args={"parts": Arg(positive_int, required=True), "index": Arg(nonneg_int, 0)},
    label=lambda a: f"chunk {a['parts']} {a['index']}",
    emit=Emit(call=lambda args, a: f"{args[0]}.chunk({a['parts']}, dim={a.get('dim', 1)})[{a['index']}]",
              torch_types=("x.chunk(n)[i]",), read=_chunk_read),
    draw=Draw(fill=PLAIN),
    doc="chunk N I: the I-th (from 0) of N equal groups of channels (ShuffleNetV2's split)",
    examples=(Example("chunk 2 1"), Example("chunk 4", "8"), Example("[chunk 2 0, chunk 2 1 > conv1x1]"),
              Example("chunk 2 1", "3x8")),
))


def _shuffle_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_image("shuffle", inp)
    if inp.c % a["groups"]:
        raise ShapeError(f"shuffle {a['groups']} needs a width divisible by {a['groups']}, not {inp.c}")
    return inp


def _shuffle_read(site) -> dict:
    """nn.ChannelShuffle, the function, or torchvision's reshape form (site.param: the groups)."""
    if site.module is not None:
        return {"groups": site.module.groups}
    if site.param is not None:
        return {"groups": site.param}
    return {"groups": site.arg(1, "groups")}


register(OpSpec(
    name="shuffle", family="shuffle", infer=_shuffle_infer, positional=("groups",),
    args={"groups": Arg(positive_int, required=True)},
    label=lambda a: f"shuffle {a['groups']}",
    emit=Emit(module=lambda a, i, o: f"nn.ChannelShuffle({a['groups']})",
              torch_types=("nn.ChannelShuffle", "F.channel_shuffle", "torch.channel_shuffle",
                           "view(g, c/g) > transpose > view"),
              read=_shuffle_read),
    draw=Draw(fill=PLAIN),
    doc="channel shuffle in G groups (ShuffleNet): channel g*K+k goes to k*G+g",
    examples=(Example("shuffle 2"), Example("shuffle 4", "8x3x5")),
))


def _pointwise_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_image("pointwise", inp)
    a["in_f"] = inp.c
    return shape(a["out"], inp.h, inp.w)


POINTWISE_CLASS = _channels_last(
    "PointwiseLinear", "nn.Linear",
    "A Linear over the channels at each position of an N x C x H x W tensor (weights [out, in]).")

register(OpSpec(
    name="pointwise", family="fc", infer=_pointwise_infer, main=True, positional=("out",),
    args={"out": Arg(positive_int, required=True)},
    flags={"bias": ("bias", True), "nobias": ("bias", False)},
    settings={"bias": "bias"},
    params=lambda a, i, o: a["in_f"] * a["out"] + (a["out"] if a["bias"] else 0),
    macs=lambda a, i, o: a["in_f"] * a["out"] * o.h * o.w,
    other_ops=lambda a, i, o: o.numel if a["bias"] else 0,
    # the input permuted to channels-last, reshaped for the matmul: a copy
    saved=lambda a, i, o: (Saved("own", elements=i[0].numel),),
    label=lambda a: f"pointwise {a['out']}",
    emit=Emit(module=lambda a, i, o: f"PointwiseLinear({a['in_f']}, {a['out']}"
                                     f"{', bias=False' if not a['bias'] else ''})", helper=POINTWISE_CLASS),
    draw=Draw(fill=DENSE),
    doc="a Linear over channels at every position, CxHxW → out×H×W (ConvNeXt's pwconv: weights [out, in])",
    examples=(Example("pointwise 16"), Example("pointwise 4 nobias", "8x2x3")),
))


def _layerscale_infer(a, ins) -> TensorType:
    a["features"] = ins[0].c
    a["image"] = ins[0].is_image
    return ins[0]


def _layerscale_module(a, ins, out) -> str:
    dims = f"({a['features']}, 1, 1)" if a["image"] else f"({a['features']},)"
    init = f"float({a['init']})" if is_symbolic(a["init"]) else repr(float(a["init"]))  # never an integer tensor
    return f"nn.Parameter(torch.full({dims}, {init}))"


def _layerscale_read(site) -> dict | None:
    p = site.param
    if tuple(p.shape) != ((site.in_dims[0], 1, 1) if site.layout is Layout.IMAGE else (site.in_dims[-1],)):
        return None
    values = None if p.is_meta else p.detach().flatten().unique()
    return {"init": float(values[0])} if values is not None and len(values) == 1 and values[0] > 0 else {}


register(OpSpec(
    name="layerscale", family="layer_scale", infer=_layerscale_infer, positional=("init",),
    args={"init": Arg(positive_float, 1e-6)},
    params=lambda a, i, o: o.c,
    other_ops=lambda a, i, o: o.numel,
    saved=saves_input,  # for the scale's gradient
    label=lambda a: f"layerscale {a['init']:g}",
    emit=Emit(module=_layerscale_module, apply=lambda x, attr: f"{x} * {attr}", imports=("torch",),
              torch_types=("parameter * x",), read=_layerscale_read),
    draw=Draw(fill=NORM),
    doc="a learned per-channel scale, initialised to `init` (default 1e-6): an nn.Parameter (C, 1, 1) of its block",
    examples=(Example("layerscale"), Example("layerscale 0.5", "6"), Example("layerscale", "5x6")),
))

STOCHASTIC_DEPTH_CLASS = '''

class StochasticDepth(nn.Module):
    """Drops the whole branch for each sample with probability p in training, scaling the kept
    ones by 1 / (1 - p); the identity in eval mode (Huang et al. 2016, torchvision's "row" mode)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep
'''

def _stochastic_depth_read(site) -> dict:
    if site.module.mode != "row":
        raise NoForm(f"stochastic depth in mode {site.module.mode!r}: only 'row' (per sample) is written")
    return {"p": float(site.module.p)}


register(OpSpec(
    name="stochastic_depth", family="stochastic_depth", aliases=("droppath",), infer=_same_shape,
    positional=("p",),
    args={"p": Arg(probability, 0.0)},
    saved=lambda a, i, o: (Saved("own", elements=1),) if a["p"] else (),  # the kept-or-dropped factor per sample
    memory_view=lambda a, contiguous: contiguous if not a["p"] else None,  # p = 0: the input itself
    label=lambda a: f"stochastic_depth {a['p']:g}",
    emit=Emit(module=lambda a, i, o: f"StochasticDepth({a['p']!r})", helper=STOCHASTIC_DEPTH_CLASS,
              torch_types=("torchvision.ops.stochastic_depth.StochasticDepth",), read=_stochastic_depth_read),
    draw=Draw(fill=PLAIN),
    doc="stochastic depth: drops the branch per sample with probability p in training; identity in eval",
    examples=(Example("stochastic_depth 0.1"), Example("droppath 0.2", "6")),
))

def _flatten_read(site) -> dict | None:
    """nn.Flatten(), torch.flatten(x, 1), or a view/reshape to (N, -1) of an image."""
    return {} if site.layout is Layout.IMAGE and site.out_dims == (site.numel,) else None


register(OpSpec(
    name="flatten", family="flatten", infer=lambda a, ins: shape(ins[0].numel), view=True,
    memory_view=lambda a, contiguous: True if contiguous else None,  # a reshape: a copy of a strided input
    emit=Emit(module=lambda a, i, o: "nn.Flatten()", read=_flatten_read,
              torch_types=("nn.Flatten", "torch.flatten", "Tensor.flatten", "Tensor.view", "Tensor.reshape")),
    draw=Draw(fill=PLAIN),
    doc="CxHxW → F",
    examples=(Example("flatten"), Example("flatten", "5")),
))

register(OpSpec(
    name="dropout", family="dropout", infer=_same_shape, positional=("p",),
    args={"p": Arg(probability, 0.5)},
    saved=lambda a, i, o: (Saved("own", elements=o.numel, dtype="mask"),) if a["p"] else (),
    memory_view=lambda a, contiguous: contiguous if not a["p"] else None,  # p = 0: the input itself
    label=lambda a: f"dropout {a['p']:g}",
    emit=Emit(module=lambda a, i, o: f"nn.Dropout({a['p']!r})", torch_types=("nn.Dropout", "F.dropout"),
              read=lambda site: {"p": float(site.module.p if site.module else site.arg(1, "p", 0.5))}),
    draw=Draw(fill=PLAIN),
    doc="Dropout",
    examples=(Example("dropout"), Example("dropout 0.3", "9"), Example("dropout p=0.1")),
))

# ---- structural ops the compiler creates (not callable by name) ----


def _input_infer(a, ins) -> TensorType:  # pragma: no cover - the elaborator gives the input its shape
    raise ShapeError("the input has no inputs")


register(OpSpec(name="_input", family="input", infer=_input_infer, draw=Draw(shape="oval"),
                doc="the network input"))


def _add_infer(a, ins) -> TensorType:
    for i, t in enumerate(ins[1:], 1):
        if t != ins[0]:
            raise ShapeError(f"the branches of this sum have different shapes: {ins[0]} and {t}", index=i)
    a["arity"] = len(ins)
    return ins[0]


register(OpSpec(
    name="_add", family="add", infer=_add_infer, multi_input=True, passes_bias=True,
    other_ops=lambda a, i, o: o.numel * (len(i) - 1),
    emit=Emit(call=lambda args, a: " + ".join(args),
              torch_types=("operator.add", "operator.iadd", "torch.add", "Tensor.add"), read=lambda site: {}),
    draw=Draw(text="+", shape="circle", compact=True),
    doc="the sum of branches (`a | b`, `... | skip`)",
    examples=(Example("conv3x3 8 same | skip"), Example("(relu | tanh | skip)", "5")),
))


def _mul_infer(a, ins) -> TensorType:
    first = ins[0]
    dims = list(first.dims)
    for i, t in enumerate(ins[1:], 1):
        if t.layout != first.layout:
            raise ShapeError(f"cannot multiply {first} and {t}: a feature vector and an image", index=i)
        for k, (a_dim, b_dim) in enumerate(zip(dims, t.dims, strict=True)):
            if a_dim == b_dim or b_dim == 1:
                continue
            if a_dim == 1:
                dims[k] = b_dim
                continue
            raise ShapeError(f"cannot multiply {TensorType(tuple(dims), first.layout)} and {t}: "
                             f"their {first.layout.value.split('x')[k]} differ and neither is 1", index=i)
    a["arity"] = len(ins)
    return TensorType(tuple(dims), first.layout)


def _mul_saved(a, i, o) -> tuple[Saved, ...]:
    """`a * b * c`: each product keeps each factor for the other's gradient, the running product included."""
    return (Saved("input", 1, for_input=0), Saved("input", 0, for_input=1),
            *(Saved("input", k) for k in range(2, len(i))),
            *((Saved("own", elements=(len(i) - 2) * o.numel),) if len(i) > 2 else ()))


register(OpSpec(
    name="_mul", family="mul", infer=_mul_infer, multi_input=True,
    other_ops=lambda a, i, o: o.numel * (len(i) - 1),
    saved=_mul_saved,
    emit=Emit(call=lambda args, a: " * ".join(args),
              torch_types=("operator.mul", "operator.imul", "torch.mul", "Tensor.mul"), read=lambda site: {}),
    draw=Draw(text="×", shape="circle", compact=True, fill="#efe3f7"),
    doc="the elementwise product of branches, broadcasting dimensions of 1 (`skip & gate`)",
    examples=(Example("skip & gap > conv1x1 2 > relu > conv1x1 8 > sigmoid"), Example("(tanh & sigmoid)", "5"),
              Example("gap & skip", "3x4x4")),
))


def _concat_infer(a, ins) -> TensorType:
    first = ins[0]
    for i, t in enumerate(ins[1:], 1):
        if t.layout != first.layout:
            kinds = " and ".join(sorted((first.layout.noun, t.layout.noun)))
            raise ShapeError(f"cannot concatenate {first} and {t}: {kinds}", index=i)
        if t.with_c(0) != first.with_c(0):
            what = "lengths" if t.layout is Layout.TOKENS else "HxW"
            raise ShapeError(f"cannot concatenate {first} and {t}: their {what} differ", index=i)
    if first.layout.channel_axis:
        a["dim"] = -1
    return first.with_c(sum(t.c for t in ins))


def _concat_read(site) -> dict:
    dim = site.arg(1, "dim", 0)
    rank = len(site.in_dims) + 1
    if dim % rank != (1 if site.layout.channel_axis == 0 else rank - 1):
        raise NoForm(f"a concatenation on dim {dim}, not on the channels")
    return {}


register(OpSpec(
    name="_concat", family="cat", infer=_concat_infer, multi_input=True, passes_bias=True,
    emit=Emit(call=lambda args, a: f"torch.cat([{', '.join(args)}], dim={a.get('dim', 1)})", imports=("torch",),
              torch_types=("torch.cat", "torch.concat"), read=_concat_read),
    draw=Draw(text="concat", compact=True),
    doc="the concatenation of branches on channels (`[a, b]`)",
    examples=(Example("[conv1x1 4, skip, maxpool3x3 /1 same]"), Example("[dense 3, skip]", "4"),
              Example("[dense 3, skip]", "5x4")),
))


def _pad_infer(a, ins) -> TensorType:
    inp = ins[0]
    if inp.layout not in (Layout.IMAGE, Layout.VECTOR):
        raise ShapeError(f"a zero-padded skip takes CxHxW or F, not {inp.layout.the} {inp}")
    target = TensorType(a["target"])
    if inp.layout != target.layout:
        raise ShapeError(f"cannot pad the skip from {inp} to {target}")
    if target.c < inp.c:
        raise ShapeError(f"a zero-padded skip cannot narrow {inp.c} channels to {target.c}")
    a["extra"] = target.c - inp.c
    a["stride"] = 0 if inp.is_vector else subsample_stride(inp, target.dims)
    return target


ZERO_PAD_CLASS = '''

class ZeroPadShortcut(nn.Module):
    """He et al.'s shortcut option A: subsample by the stride, then zero-pad channels."""

    def __init__(self, extra_channels: int, stride: int = 0):
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride  # 0: the input is a feature vector

    def forward(self, x):
        if self.stride == 0:
            return nn.functional.pad(x, (0, self.extra_channels))
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
'''


def _pad_module(a, ins, out) -> str:
    if a["stride"] == 0:
        return f"ZeroPadShortcut(extra_channels={a['extra']})"
    return f"ZeroPadShortcut(extra_channels={a['extra']}, stride={a['stride']})"


def _pad_read(site) -> dict:
    """A ZeroPadShortcut of archlang's own (a `skip pad` of a generated module, read back)."""
    if not all(hasattr(site.module, a) for a in ("extra_channels", "stride")):
        raise NoForm("a ZeroPadShortcut that is not archlang's (no extra_channels and stride)")
    return {"target": site.out_dims}


register(OpSpec(
    name="_pad", family="pad", infer=_pad_infer, args={"target": Arg(tuple)},
    label=lambda a: "zero-pad",
    emit=Emit(module=_pad_module, helper=ZERO_PAD_CLASS, torch_types=("archlang.ZeroPadShortcut",), read=_pad_read),
    draw=Draw(fill="#fdf0e2"),
    doc="shortcut option A: subsample, then zero-pad channels",
    examples=(Example("conv3x3 16 /2 same | skip pad"), Example("dense 12 | skip pad", "4")),
))
