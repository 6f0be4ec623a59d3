"""Ops for MaxViT's multi-axis attention (Tu et al. 2022; torchvision.models.maxvit): an image is
cut into windows of P x P tokens, either of adjacent positions (`window_partition`, block
attention) or of positions spread evenly over the image (`grid_partition`, grid attention);
attention with a learned bias per relative position (`relpos_mha`) runs within each window, the
MLP, layernorm, dropout and stochastic depth of archlang/compiler/ops/layers.py act on each token,
and `window_departition` / `grid_departition` put the windows back into a CxHxW image.

Windows are their own layout, Gh x Gw x S x D (Layout.WINDOWS): a Gh x Gw grid of windows of S =
P² tokens of D features, N x Gh x Gw x S x D in PyTorch.  torchvision holds the same values as N x
(Gh·Gw) x S x D (its WindowPartition, plus SwapAxes for a grid); keeping the grid's two axes lets
the way back know the image's height and width."""

from __future__ import annotations

import math

from archlang.compiler.ir import Layout, TensorType, shape
from archlang.compiler.ops import (
    Arg,
    Draw,
    Emit,
    Example,
    OpSpec,
    Saved,
    ShapeError,
    need_layout,
    positive_int,
    register,
)
from archlang.compiler.ops.layers import CONV, PLAIN
from archlang.compiler.symbolic import Unstageable, is_symbolic

# ---- partition into windows, and back ----

PARTITION_CLASS = '''

class WindowPartition(nn.Module):
    """Cuts an N x C x H x W image into windows of size x size tokens: N x H/size x W/size x size² x C,
    the tokens of each window in row-major order.  A window holds adjacent positions, or with `grid`
    positions spread evenly over the image, H/size rows and W/size columns apart (MaxViT's grid
    attention: torchvision's WindowPartition followed by SwapAxes)."""

    def __init__(self, size: int, grid: bool = False):
        super().__init__()
        self.size = size
        self.grid = grid

    def forward(self, x):
        n, c, h, w = x.shape
        p = self.size
        if self.grid:  # position (i * h/p + a, j * w/p + b) is token (i, j) of window (a, b)
            x = x.reshape(n, c, p, h // p, p, w // p).permute(0, 3, 5, 2, 4, 1)
        else:  # position (a * p + i, b * p + j) is token (i, j) of window (a, b)
            x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(n, h // p, w // p, p * p, c)
'''

DEPARTITION_CLASS = '''

class WindowDepartition(nn.Module):
    """Puts N x Gh x Gw x size² x C windows back into an N x C x H x W image: the inverse of
    WindowPartition(size, grid) (torchvision's SwapAxes, for a grid, then its WindowDepartition)."""

    def __init__(self, size: int, grid: bool = False):
        super().__init__()
        self.size = size
        self.grid = grid

    def forward(self, x):
        n, gh, gw, _, c = x.shape
        p = self.size
        x = x.reshape(n, gh, gw, p, p, c)
        if self.grid:
            return x.permute(0, 5, 3, 1, 4, 2).reshape(n, c, p * gh, p * gw)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(n, c, gh * p, gw * p)
'''


def _window_side(op: str, inp: TensorType) -> int:
    """P for windows of S = P² tokens."""
    s = inp.s
    if is_symbolic(s):  # the window's side as an expression of a parameter: no square root of it
        raise Unstageable(f"{op} on windows whose size is a parameter")
    p = math.isqrt(s)
    if p * p != s:
        raise ShapeError(f"{op} needs square windows, but they hold {s} tokens, which is no square")
    return p


def _partition(name: str, grid: bool) -> OpSpec:
    def infer(a, ins) -> TensorType:
        inp = ins[0]
        need_layout(name, inp, Layout.IMAGE)
        p = a["size"]
        if inp.h % p or inp.w % p:
            raise ShapeError(f"{name} {p} cannot cut {inp.h}x{inp.w} into {p}x{p} "
                             f"{'grids' if grid else 'windows'}: {p} must divide the height and the width")
        a["grid"] = grid
        return TensorType((inp.h // p, inp.w // p, p * p, inp.c), Layout.WINDOWS)

    what = ("windows of PxP positions spread evenly over the image, H/P rows and W/P columns apart (MaxViT's "
            "grid attention)") if grid else "windows of PxP adjacent positions (MaxViT's block attention)"
    return register(OpSpec(
        name=name, family="partition", infer=infer, view=True, positional=("size",),
        memory_view=lambda a, contiguous: None,  # a permute then a reshape: a copy
        args={"size": Arg(positive_int, required=True)},
        label=lambda a: f"{name} {a['size']}",
        emit=Emit(module=lambda a, i, o: f"WindowPartition({a['size']}{', grid=True' if grid else ''})",
                  helper=PARTITION_CLASS,
                  # torchvision's WindowPartition(x, p), and for a grid its partition into H/P windows
                  # followed by SwapAxes(-2, -3) (archlang.importer reads the pair; param: P)
                  torch_types=("WindowPartition > SwapAxes(-2, -3)",) if grid else
                  ("torchvision.models.maxvit.WindowPartition",),
                  read=(lambda site: {"size": site.param}) if grid else (lambda site: {"size": site.arg(1, "p")})),
        draw=Draw(fill=PLAIN),
        doc=f"CxHxW → (H/P)x(W/P)x(P·P)xC: {what}, tokens in row-major order",
        examples=(Example(f"{name} 3", "4x6x9"), Example(f"{name} 2 > dense 5", "3x4x4")),
    ))


_partition("window_partition", False)
_partition("grid_partition", True)


def _departition(name: str, grid: bool) -> OpSpec:
    def infer(a, ins) -> TensorType:
        inp = ins[0]
        need_layout(name, inp, Layout.WINDOWS)
        p = _window_side(name, inp)
        a["size"], a["grid"] = p, grid
        gh, gw, _, c = inp.dims
        return shape(c, gh * p, gw * p)

    kind = "grid" if grid else "window"
    return register(OpSpec(
        name=name, family="departition", infer=infer, view=True,
        memory_view=lambda a, contiguous: None,  # a permute then a reshape: a copy
        label=lambda a: name,
        emit=Emit(module=lambda a, i, o: f"WindowDepartition({a['size']}{', grid=True' if grid else ''})",
                  helper=DEPARTITION_CLASS,
                  torch_types=("SwapAxes(-2, -3) > WindowDepartition",) if grid else
                  ("torchvision.models.maxvit.WindowDepartition",),
                  read=lambda site: {}),
        draw=Draw(fill=PLAIN),
        doc=f"GhxGwx(P·P)xC → Cx(Gh·P)x(Gw·P): the image back from the windows of a `{kind}_partition P`",
        examples=(Example(f"{kind}_partition 3 > {name}", "4x6x9"),
                  Example(f"{kind}_partition 2 > dense 5 > {name}", "3x4x8")),
    ))


_departition("window_departition", False)
_departition("grid_departition", True)

# ---- attention with relative position biases ----

RELPOS_ATTENTION_CLASS = '''

class RelativePositionAttention(nn.Module):
    """Multi-head self-attention within each window of size x size tokens (the last two dims of
    ... x size² x features), plus a learned bias per head for each relative offset between two
    tokens (torchvision's RelativePositionalMultiHeadAttention, as in MaxViT: one Linear makes q,
    k and v, `merge` projects back, and the scores are scaled by features ** -0.5)."""

    def __init__(self, features: int, heads: int, size: int):
        super().__init__()
        self.heads = heads
        self.scale = features**-0.5
        self.to_qkv = nn.Linear(features, 3 * features)
        self.merge = nn.Linear(features, features)
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * size - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # the table row of each pair of tokens (i, j): their offset in rows and in columns, shifted to start at 0
        row, col = torch.arange(size).repeat_interleave(size), torch.arange(size).repeat(size)
        index = (row[:, None] - row[None, :] + size - 1) * (2 * size - 1) + col[:, None] - col[None, :] + size - 1
        self.register_buffer("relative_position_index", index)

    def forward(self, x):
        *lead, s, d = x.shape
        qkv = self.to_qkv(x).reshape(*lead, s, 3, self.heads, d // self.heads)
        q, k, v = qkv.movedim(-3, 0).transpose(-2, -3).unbind(0)  # each ... x heads x s x d/heads
        scores = q @ (k * self.scale).transpose(-1, -2)
        bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)
        attention = (scores + bias).softmax(dim=-1)
        out = (attention @ v).transpose(-2, -3).reshape(*lead, s, d)
        return self.merge(out)
'''


def _relpos_infer(a, ins) -> TensorType:
    inp = ins[0]
    need_layout("relpos_mha", inp, Layout.WINDOWS, Layout.TOKENS)
    heads = a["heads"]
    if inp.c % heads:
        raise ShapeError(f"relpos_mha {heads}: {heads} heads must divide the token width {inp.c}")
    a["size"] = _window_side("relpos_mha", inp)
    a["features"] = inp.c
    return inp


def _windows(out: TensorType) -> int:
    return out.numel // (out.s * out.c)


def _relpos_parts(a, ins, out) -> list[tuple[str, int]]:
    n, s, d = _windows(out), out.s, out.c
    return [("q, k, v projections", 3 * n * s * d * d), ("q·kᵀ", n * s * s * d), ("attention·v", n * s * s * d),
            ("output projection", n * s * d * d)]


def _relpos_saved(a, ins, out) -> tuple[Saved, ...]:
    """The input, q and v reshaped for the batched matmuls (with one head: the qkv output, which
    they are views of), k scaled, the S x S weights of each window and head, and the input of `merge`."""
    own = (5 if a["heads"] == 1 else 4) * out.numel + a["heads"] * out.s * out.s * _windows(out)
    return Saved("input", copy_if_strided=True), Saved("own", elements=own)


register(OpSpec(
    name="relpos_mha", family="attn", infer=_relpos_infer, main=True, positional=("heads",),
    args={"heads": Arg(positive_int, required=True)},
    params=lambda a, i, o: 4 * o.c * o.c + 4 * o.c + (2 * a["size"] - 1) ** 2 * a["heads"],
    buffers=lambda a, i, o: o.s * o.s,  # the relative position index of each pair of tokens
    macs=lambda a, i, o: sum(m for _, m in _relpos_parts(a, i, o)),
    breakdown=_relpos_parts,
    # the projections' bias adds, k's scaling, and the bias add and softmax over each head's S x S scores
    other_ops=lambda a, i, o: 5 * o.numel + 2 * a["heads"] * o.s * o.s * _windows(o),
    saved=_relpos_saved,
    label=lambda a: f"relpos_mha {a['heads']}",
    emit=Emit(module=lambda a, i, o: f"RelativePositionAttention({a['features']}, {a['heads']}, {a['size']})",
              helper=RELPOS_ATTENTION_CLASS, imports=("torch",),
              torch_types=("torchvision.models.maxvit.RelativePositionalMultiHeadAttention",),
              read=lambda site: {"heads": site.module.n_heads}),
    draw=Draw(fill=CONV),
    doc="multi-head self-attention within each window of PxP tokens (or one sequence of P² tokens), with a "
        "learned bias per head and relative position (torchvision's RelativePositionalMultiHeadAttention, MaxViT's: "
        "scores scaled by 1/√D)",
    examples=(Example("window_partition 3 > relpos_mha 2", "8x6x9"), Example("relpos_mha 4", "16x8"),
              Example("grid_partition 2 > relpos_mha 1 > grid_departition", "4x4x6")),
))
