"""Ops on token sequences (SxD) and channels-last images (HxWxC), and the moves between them and
CxHxW images: what a Vision Transformer is written with (patch embedding as a strided conv then
`tokens`, a learned class token and position embedding, multi-head self-attention, the class
token's selection) and what a Swin Transformer's channels-last stages need (`channels_last`,
`channels_first`).  Dense, layernorm, layerscale, chunk, concat and the elementwise ops of
archlang/compiler/ops/layers.py work on these layouts too (on the features of each token)."""

from __future__ import annotations

from archlang.compiler.ir import Layout, TensorType, shape
from archlang.compiler.ops import (
    Arg,
    Draw,
    Emit,
    Example,
    NoForm,
    OpSpec,
    Saved,
    ShapeError,
    need_layout,
    nonneg_int,
    positive_int,
    probability,
    register,
    switch,
)
from archlang.compiler.ops.layers import CONV, DENSE, PLAIN
from archlang.compiler.symbolic import is_symbolic

# ---- layout moves ----


def _tokens_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_layout("tokens", inp, Layout.IMAGE, Layout.GRID)
    a["grid"] = inp.layout is Layout.GRID
    return shape(inp.h * inp.w, inp.c)


register(OpSpec(
    name="tokens", family="tokens", infer=_tokens_infer, view=True,
    # an image's flatten(2).transpose(1, 2) is strided; a channels-last image's flatten(1, 2) keeps its layout
    memory_view=lambda a, contiguous: contiguous and a["grid"],
    emit=Emit(call=lambda args, a: f"{args[0]}.flatten(1, 2)" if a["grid"]
              else f"{args[0]}.flatten(2).transpose(1, 2)",
              torch_types=("flatten(2).transpose(1, 2)",), read=lambda site: {}),
    draw=Draw(fill=PLAIN),
    doc="CxHxW (or HxWxC) → (H*W)xC: one token per position, in row-major order (ViT after its patch conv)",
    examples=(Example("tokens", "8x3x5"), Example("channels_last > tokens", "6x2x2")),
))


def _permute(name: str, src: Layout, doc: str, dims: str) -> OpSpec:
    order = tuple(int(d) for d in dims.split(", "))
    def infer(a, ins) -> TensorType:
        inp = ins[0]
        need_layout(name, inp, src)
        if src is Layout.IMAGE:
            return TensorType((inp.h, inp.w, inp.c), Layout.GRID)
        return TensorType((inp.c, inp.h, inp.w), Layout.IMAGE)

    return register(OpSpec(
        name=name, family=name, infer=infer, view=True,
        # a permute: strided, or contiguous again where it undoes the other one
        memory_view=lambda a, contiguous: not contiguous,
        emit=Emit(call=lambda args, a: f"{args[0]}.permute({dims})",
                  torch_types=("torchvision.ops.misc.Permute", "Tensor.permute", "torch.permute"),
                  read=lambda site: {} if site.layout is src and site.dims == order else None),
        draw=Draw(fill=PLAIN),
        doc=doc,
        examples=(Example(name if src is Layout.IMAGE else f"channels_last > {name}", "4x3x5"),),
    ))


_permute("channels_last", Layout.IMAGE, "CxHxW → HxWxC, the same tensor with channels last (a permute: Swin's layout)",
         "0, 2, 3, 1")
_permute("channels_first", Layout.GRID, "HxWxC → CxHxW (a permute back)", "0, 3, 1, 2")

# ---- learned embeddings: parameters of the enclosing block ----


def _class_token_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_layout("class_token", inp, Layout.TOKENS)
    a["features"] = inp.c
    return shape(inp.s + 1, inp.c)


register(OpSpec(
    name="class_token", family="class_token", infer=_class_token_infer,
    params=lambda a, i, o: o.c,
    emit=Emit(module=lambda a, i, o: f"nn.Parameter(torch.zeros(1, 1, {a['features']}))", imports=("torch",),
              torch_types=("cat([parameter, x])",),
              read=lambda site: {} if tuple(site.param.shape)[:2] == (1, 1) else None,
              apply=lambda x, attr: f"torch.cat([{attr}.expand({x}.shape[0], -1, -1), {x}], dim=1)"),
    draw=Draw(fill=DENSE),
    doc="prepends a learned class token (an nn.Parameter (1, 1, D) of its block, zeros at first): S → S+1",
    examples=(Example("class_token", "5x8"),),
))


def _pos_embedding_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_layout("pos_embedding", inp, Layout.TOKENS)
    a["length"], a["features"] = inp.s, inp.c
    return inp


register(OpSpec(
    name="pos_embedding", family="pos_embedding", infer=_pos_embedding_infer,
    params=lambda a, i, o: o.numel,
    other_ops=lambda a, i, o: o.numel,
    emit=Emit(module=lambda a, i, o: f"nn.Parameter(torch.empty(1, {a['length']}, {a['features']}).normal_(std=0.02))",
              imports=("torch",), apply=lambda x, attr: f"{x} + {attr}",
              torch_types=("x + parameter",),
              read=lambda site: {} if tuple(site.param.shape) == (1, *site.in_dims) else None),
    draw=Draw(fill=DENSE),
    doc="adds a learned position embedding (an nn.Parameter (1, S, D) of its block, normal with std 0.02)",
    examples=(Example("pos_embedding", "5x8"),),
))


def _token_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_layout("token", inp, Layout.TOKENS)
    if a["index"] >= inp.s:
        raise ShapeError(f"token {a['index']}: the sequence has {inp.s} tokens, counted from 0")
    return shape(inp.c)


def _token_read(site) -> dict | None:
    """x[:, i] of a token sequence."""
    index = site.arg(1, "index", None)
    if site.layout is not Layout.TOKENS or not isinstance(index, tuple) or len(index) != 2:
        return None
    if index[0] != slice(None) or not isinstance(index[1], int) or index[1] < 0:
        return None
    return {"index": index[1]}


register(OpSpec(
    name="token", family="token", infer=_token_infer, view=True, positional=("index",),
    memory_view=lambda a, contiguous: False,
    args={"index": Arg(nonneg_int, 0)},
    label=lambda a: f"token {a['index']}",
    emit=Emit(call=lambda args, a: f"{args[0]}[:, {a['index']}]", torch_types=("operator.getitem",), read=_token_read),
    draw=Draw(fill=PLAIN),
    doc="token I (default 0, the class token) of a sequence, as a feature vector: SxD → D",
    examples=(Example("token", "5x8"), Example("token 3 > dense 2", "5x8")),
))

# ---- attention ----


def _mha_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_layout("mha", inp, Layout.TOKENS)
    if inp.c % a["heads"]:
        raise ShapeError(f"mha {a['heads']}: {a['heads']} heads must divide the token width {inp.c}")
    a["features"] = inp.c
    return inp


def _mha_parts(a, ins, out) -> list[tuple[str, int]]:
    s, d = out.s, out.c
    return [("q, k, v projections", 3 * s * d * d), ("q·kᵀ", s * s * d), ("attention·v", s * s * d),
            ("output projection", s * d * d)]


def _mha_saved(a, ins, out) -> tuple[Saved, ...]:
    """nn.MultiheadAttention (batch first) on its fused path (scaled_dot_product_attention's flash or
    memory-efficient kernel, which keeps no SxS matrix): the input transposed to sequence-first (a
    copy), q, k and v (one tensor), the attention's output (which the output projection reads as
    it is) and its log-sum-exp per head and token."""
    return (Saved("own", elements=5 * out.numel), Saved("own", elements=a["heads"] * out.s, dtype="float32"))


def _mha_module(a, ins, out) -> str:
    extra = f", dropout={a['dropout']!r}" if is_symbolic(a["dropout"]) or a["dropout"] else ""
    extra += "" if a["bias"] else ", bias=False"
    return f"nn.MultiheadAttention({a['features']}, {a['heads']}{extra}, batch_first=True)"


def _mha_read(site) -> dict:
    m = site.module
    if not m.batch_first or not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise NoForm("attention that is not batch-first self-attention with one packed projection")
    return {"heads": m.num_heads, "dropout": float(m.dropout), "bias": m.in_proj_bias is not None}


register(OpSpec(
    name="mha", family="attn", infer=_mha_infer, main=True, positional=("heads",),
    args={"heads": Arg(positive_int, required=True), "dropout": Arg(probability, 0.0), "bias": Arg(switch, True)},
    flags={"bias": ("bias", True), "nobias": ("bias", False)},
    params=lambda a, i, o: 4 * o.c * o.c + (4 * o.c if a["bias"] else 0),
    macs=lambda a, i, o: sum(m for _, m in _mha_parts(a, i, o)),
    breakdown=_mha_parts,
    # the softmax over each head's S x S scores, and the projections' bias adds
    other_ops=lambda a, i, o: a["heads"] * o.s * o.s + (4 * o.numel if a["bias"] else 0),
    saved=_mha_saved,
    label=lambda a: f"mha {a['heads']}",
    emit=Emit(module=_mha_module, forward=lambda x, attr: f"{attr}({x}, {x}, {x}, need_weights=False)[0]",
              torch_types=("nn.MultiheadAttention",), read=_mha_read),
    draw=Draw(fill=CONV),
    doc="multi-head self-attention over a token sequence, as nn.MultiheadAttention (packed in_proj, "
        "batch_first); `dropout` on the attention weights",
    examples=(Example("mha 2", "5x8"), Example("mha 4 nobias dropout=0.1", "3x8")),
))
