"""Ops of the Swin Transformers (Liu et al. 2021, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows"; Liu et al. 2022, "Swin Transformer V2") on channels-last
images (HxWxC): shifted-window self-attention and patch merging, in their V1 and V2 forms, as
torchvision.models.swin_transformer has them.

Each op is a helper class written into the generated file.  The classes register their
parameters, buffers and children in torchvision's order (ShiftedWindowAttention,
ShiftedWindowAttentionV2, PatchMerging, PatchMergingV2), so that torchvision's state_dict loads
by order (archlang.load_weights); their forwards compute what torchvision's do, step for step.

Counts follow FlopCounterMode on torchvision's model: attention's MACs are those of the q, k, v
projection, q·kᵀ, attention·v and the output projection on the input zero-padded to a multiple
of the window, and in V2 the position-bias MLP's (run once per forward, whatever the batch)."""

from __future__ import annotations

from archlang.compiler.ir import Layout, TensorType
from archlang.compiler.ops import (
    Arg,
    Draw,
    Emit,
    Example,
    NoForm,
    OpSpec,
    Saved,
    ShapeError,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    register,
)
from archlang.compiler.ops.layers import CONV, DENSE
from archlang.compiler.symbolic import is_symbolic

CPB_HIDDEN = 512  # the width of Swin V2's position-bias MLP (torchvision's cpb_mlp)

# ---- shifted-window attention ----

# The methods both attention classes share: the relative position index, the windowing of
# forward (pad, cyclic shift, partition, attention, the way back) and the shift's mask.
_WINDOW_METHODS = '''
    @staticmethod
    def relative_index(window: int):
        """For each pair of positions (i, j) of a window, row-major, the row of the bias table
        that holds their offset: (dy + window - 1) * (2 * window - 1) + (dx + window - 1)."""
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + window - 1
        dx = xs[:, None] - xs[None, :] + window - 1
        return (dy * (2 * window - 1) + dx).flatten()

    def bias_of_offsets(self, table):
        """heads x N x N: the entry of `table` ((2 window - 1)^2 x heads) for each pair of positions."""
        n = self.window * self.window
        return table[self.relative_position_index].view(n, n, -1).permute(2, 0, 1)

    def shift_mask(self, hp: int, wp: int, sh: int, sw: int, like):
        """windows x N x N: -100 between positions that the cyclic shift brought together from
        different regions of the padded map, 0 within one."""
        def regions(n: int, s: int):  # 0, 1, 2 along an axis: [0, n-window), [n-window, n-s), [n-s, n)
            r = torch.zeros(n, dtype=torch.long, device=like.device)
            if s:
                r[n - self.window:] = 1
                r[n - s:] = 2
            return r

        ws = self.window
        region = regions(hp, sh)[:, None] * 3 + regions(wp, sw)[None, :]
        region = region.view(hp // ws, ws, wp // ws, ws).transpose(1, 2).reshape(-1, ws * ws)
        apart = region[:, None, :] != region[:, :, None]
        return like.new_zeros(apart.shape).masked_fill(apart, -100.0)

    def forward(self, x):
        b, h, w, c = x.shape
        ws, heads = self.window, self.heads
        x = nn.functional.pad(x, (0, 0, 0, -w % ws, 0, -h % ws))  # bottom and right to a multiple of ws
        hp, wp = x.shape[1], x.shape[2]
        sh = self.shift if ws < hp else 0  # no shift along an axis one window covers
        sw = self.shift if ws < wp else 0
        if sh or sw:
            x = torch.roll(x, (-sh, -sw), dims=(1, 2))
        # windows: (b * hp/ws * wp/ws) x N x c, N = ws * ws positions in row-major order
        x = x.view(b, hp // ws, ws, wp // ws, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        qkv = nn.functional.linear(x, self.qkv.weight, self.qkv_bias())
        q, k, v = qkv.view(x.shape[0], ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = self.scores(q, k)  # windows x heads x N x N
        if sh or sw:
            mask = self.shift_mask(hp, wp, sh, sw, attn)
            attn = (attn.view(b, -1, heads, ws * ws, ws * ws) + mask[:, None]).view(attn.shape)
        attn = nn.functional.dropout(attn.softmax(dim=-1), self.dropout, self.training)
        x = (attn @ v).transpose(1, 2).reshape(-1, ws * ws, c)
        x = nn.functional.dropout(self.proj(x), self.proj_dropout, self.training)
        x = x.view(b, hp // ws, wp // ws, ws, ws, c).transpose(2, 3).reshape(b, hp, wp, c)
        if sh or sw:
            x = torch.roll(x, (sh, sw), dims=(1, 2))
        return x[:, :h, :w].contiguous()
'''

WINDOW_ATTENTION_CLASS = '''

class WindowAttention(nn.Module):
    """Swin's (shifted) window attention on an N x H x W x C tensor: multi-head self-attention
    within each window x window window, plus a learned bias per head and relative offset.  The
    input is zero-padded on the bottom and right to a multiple of the window; with `shift`, the
    map is rolled by -shift first (and back after), and a mask keeps attention inside the regions
    the roll brought together.  `dropout` acts on the attention weights, `proj_dropout` after
    the output projection."""

    def __init__(self, dim: int, heads: int, window: int, shift: int = 0, dropout: float = 0.0,
                 proj_dropout: float = 0.0):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.dropout, self.proj_dropout = dropout, proj_dropout
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", self.relative_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def qkv_bias(self):
        return self.qkv.bias

    def scores(self, q, k):
        """Scaled dot products plus the relative position bias."""
        q = q * (q.shape[-1] ** -0.5)
        return q @ k.transpose(-2, -1) + self.bias_of_offsets(self.relative_position_bias_table)
''' + _WINDOW_METHODS

WINDOW_ATTENTION_V2_CLASS = '''

class WindowAttentionV2(nn.Module):
    """Swin V2's (shifted) window attention on an N x H x W x C tensor: as Swin's, but with
    cosine similarities scaled by a learned per-head temperature (at most 100), and a position
    bias (16 sigmoid(.)) computed by a small MLP (`cpb_mlp`) from log-spaced relative offsets;
    the key's share of the qkv bias is held at zero."""

    def __init__(self, dim: int, heads: int, window: int, shift: int = 0, dropout: float = 0.0,
                 proj_dropout: float = 0.0):
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.dropout, self.proj_dropout = dropout, proj_dropout
        self.logit_scale = nn.Parameter(torch.full((heads, 1, 1), 10.0).log())
        # offsets -(window-1) .. window-1 scaled to [-8, 8], then sign(t) log2(1 + |t|) / 3
        t = torch.arange(1 - window, window, dtype=torch.float32) / (window - 1) * 8
        t = torch.sign(t) * torch.log2(t.abs() + 1.0) / 3.0
        offsets = torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1)[None]  # 1 x 2w-1 x 2w-1 x 2
        self.register_buffer("relative_coords_table", offsets)
        self.register_buffer("relative_position_index", self.relative_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, heads, bias=False))
        with torch.no_grad():
            self.qkv.bias[dim:2 * dim].zero_()

    def qkv_bias(self):
        dim = self.proj.in_features
        bias = self.qkv.bias
        return torch.cat([bias[:dim], torch.zeros_like(bias[dim:2 * dim]), bias[2 * dim:]])

    def scores(self, q, k):
        """Cosine similarities times the clamped temperature, plus the MLP's position bias."""
        cosine = nn.functional.normalize(q, dim=-1) @ nn.functional.normalize(k, dim=-1).transpose(-2, -1)
        scale = torch.clamp(self.logit_scale, max=4.605170185988092).exp()  # at most log(100)
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.heads)
        return cosine * scale + 16 * torch.sigmoid(self.bias_of_offsets(table))
''' + _WINDOW_METHODS


def _need_grid(op: str, inp: TensorType) -> None:
    if inp.layout is not Layout.GRID:
        hint = "; `channels_last` turns a CxHxW image into one" if inp.is_image else ""
        raise ShapeError(f"{op} needs a channels-last HxWxC input, but gets {inp.layout.the} {inp}{hint}")


def _attention_infer(name: str, v2: bool):
    def infer(a, ins) -> TensorType:
        inp = ins[0]
        _need_grid(name, inp)
        heads, window = a["heads"], a["window"]
        if inp.c % heads:
            raise ShapeError(f"{name} {heads}: {heads} heads must divide the width {inp.c}")
        if a["shift"] >= window:
            raise ShapeError(f"{name}: the shift ({a['shift']}) must be less than the window ({window}); "
                             f"Swin shifts by half the window")
        if v2 and window < 2:
            raise ShapeError(f"{name}: the window must be at least 2 (its position bias scales offsets by "
                             "1 / (window - 1))")
        a["features"] = inp.c
        hp, wp = _padded(a, inp)
        a["one_window"] = window >= hp and window >= wp  # no shift at this size (the module decides at run time)
        return inp

    return infer


def _padded(a, t: TensorType) -> tuple[int, int]:
    """The height and width zero-padded to a multiple of the window."""
    ws = a["window"]
    return -(-t.h // ws) * ws, -(-t.w // ws) * ws


def _attention_parts(v2: bool):
    def parts(a, ins, out) -> list[tuple[str, int]]:
        hp, wp = _padded(a, out)
        tokens, n, c = hp * wp, a["window"] ** 2, out.c
        found = [("q, k, v projections", 3 * tokens * c * c), ("q·kᵀ", tokens * n * c), ("attention·v", tokens * n * c),
                 ("output projection", tokens * c * c)]
        if v2:  # (2w-1)^2 offsets through Linear(2, 512) and Linear(512, heads), once a forward
            found.append(("position-bias MLP", (2 * a["window"] - 1) ** 2 * CPB_HIDDEN * (2 + a["heads"])))
        return found

    return parts


def _attention_params(v2: bool):
    def params(a, i, o) -> int:
        c, heads, table = o.c, a["heads"], (2 * a["window"] - 1) ** 2
        if v2:  # qkv and proj with biases, the temperatures, the MLP
            return 4 * c * c + 4 * c + heads + 3 * CPB_HIDDEN + CPB_HIDDEN * heads
        return 4 * c * c + 4 * c + table * heads

    return params


def _attention_buffers(v2: bool):
    def buffers(a, i, o) -> int:
        index = a["window"] ** 4  # relative_position_index: N x N
        return index + (2 * (2 * a["window"] - 1) ** 2 if v2 else 0)  # V2's relative_coords_table

    return buffers


def _attention_other(a, i, o) -> int:
    # softmax and position-bias add over every score, and the projections' bias adds
    hp, wp = _padded(a, o)
    return 2 * a["heads"] * hp * wp * a["window"] ** 2 + 4 * hp * wp * o.c


def _attention_saved(v2: bool):
    def saved(a, i, o) -> tuple[Saved, ...]:
        """What the window attention's autograd keeps, per sample over the T positions of the
        padded map (C features, `heads` heads, n positions a window): the windowed input of the qkv
        projection, q (scaled: V1) or q and k (normalised, with their norms: V2), k and v reshaped
        for the batched matmuls (views of the qkv output with one head), the n x n weights of each
        window and head (softmax output, and V2's cosines), the input of the output projection;
        dropout masks; and once a forward V2's position-bias MLP (its hidden layer, the sigmoid)."""
        hp, wp = _padded(a, o)
        t, c, heads, n = hp * wp, o.c, a["heads"], a["window"] ** 2
        weights = heads * t * n
        if v2:
            own = 8 * t * c + 4 * t * heads + 2 * weights - (t * c if heads == 1 else 0)
        else:
            own = 5 * t * c + weights + (t * c if heads == 1 else 0)
        found = [Saved("own", elements=own)]
        if a["dropout"]:  # the dropped weights, which attention·v reads, and the mask
            found += [Saved("own", elements=weights), Saved("own", elements=weights, dtype="mask")]
        if a["proj_dropout"]:
            found.append(Saved("own", elements=t * c, dtype="mask"))
        if v2:
            table = (2 * a["window"] - 1) ** 2
            found.append(Saved("own", elements=table * CPB_HIDDEN + heads * n * n + heads, per_sample=False))
        return tuple(found)

    return saved


def _attention_module(cls: str):
    def module(a, ins, out) -> str:
        extra = f", shift={a['shift']}" if is_symbolic(a["shift"]) or a["shift"] else ""
        extra += f", dropout={a['dropout']!r}" if a["dropout"] else ""
        extra += f", proj_dropout={a['proj_dropout']!r}" if a["proj_dropout"] else ""
        return f"{cls}({a['features']}, {a['heads']}, {a['window']}{extra})"

    return module


def _attention_label(name: str):
    def label(a) -> str:
        if not a["shift"]:
            return f"{name} {a['heads']} {a['window']}"
        # a shift that does nothing at this size (one window covers the map) is marked
        return f"{name} {a['heads']} {a['window']} shift={a['shift']}" + (" (one window)" if a["one_window"] else "")

    return label


def _attention_read(site) -> dict:
    """torchvision's ShiftedWindowAttention(V2): square windows and shifts, biased projections."""
    m = site.module
    window, shift = list(m.window_size), list(m.shift_size)
    if window[0] != window[1] or shift[0] != shift[1]:
        raise NoForm(f"a window {window} or shift {shift} that differs between height and width")
    if m.qkv.bias is None or m.proj.bias is None:
        raise NoForm("projections without biases")
    return {"heads": m.num_heads, "window": window[0], "shift": shift[0], "dropout": m.attention_dropout,
            "proj_dropout": m.dropout}


def window_attention(name: str, cls: str, helper: str, v2: bool, doc: str, examples: tuple[Example, ...]) -> OpSpec:
    parts = _attention_parts(v2)
    return register(OpSpec(
        name=name, family="attn", infer=_attention_infer(name, v2), main=True, positional=("heads", "window"),
        args={"heads": Arg(positive_int, required=True), "window": Arg(positive_int, required=True),
              "shift": Arg(nonneg_int, 0), "dropout": Arg(probability, 0.0), "proj_dropout": Arg(probability, 0.0)},
        params=_attention_params(v2),
        buffers=_attention_buffers(v2),
        macs=lambda a, i, o: sum(m for _, m in parts(a, i, o)),
        breakdown=parts,
        other_ops=_attention_other,
        saved=_attention_saved(v2),
        label=_attention_label(name),
        emit=Emit(module=_attention_module(cls), helper=helper, imports=("torch",),
                  torch_types=(f"torchvision.models.swin_transformer.ShiftedWindowAttention{'V2' * v2}",),
                  read=_attention_read),
        draw=Draw(fill=CONV),
        doc=doc,
        examples=examples,
    ))


window_attention(
    "window_attention", "WindowAttention", WINDOW_ATTENTION_CLASS, False,
    "Swin's window attention on HxWxC: HEADS heads within WINDOW x WINDOW windows, a learned relative "
    "position bias, `shift=S` for shifted windows; pads to a multiple of the window",
    (Example("channels_last > window_attention 2 4", "8x12x12"),
     Example("channels_last > window_attention 2 4 shift=2", "8x12x12"),
     Example("channels_last > window_attention 4 5 shift=2 dropout=0.1 proj_dropout=0.1", "8x7x9"),
     Example("channels_last > window_attention 1 4 shift=2", "4x3x10")))
window_attention(
    "window_attention_v2", "WindowAttentionV2", WINDOW_ATTENTION_V2_CLASS, True,
    "Swin V2's window attention on HxWxC: cosine attention with a learned temperature and a position "
    "bias from an MLP over log-spaced offsets; otherwise as window_attention",
    (Example("channels_last > window_attention_v2 2 4", "8x8x8"),
     Example("channels_last > window_attention_v2 2 4 shift=2", "8x12x12"),
     Example("channels_last > window_attention_v2 4 3 shift=1", "8x7x5")))

# ---- patch merging ----

_NEIGHBOURS = '''
    @staticmethod
    def neighbourhoods(x):
        """N x H x W x C → N x H/2 x W/2 x 4C (H, W zero-padded to even sizes): the four positions
        of each 2x2 neighbourhood side by side, in the order (0, 0), (1, 0), (0, 1), (1, 1)."""
        x = nn.functional.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
        return torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
'''

PATCH_MERGING_CLASS = '''

class PatchMerging(nn.Module):
    """Swin's patch merging on an N x H x W x C tensor: each 2x2 neighbourhood's 4C features,
    layer-normalised, then reduced to 2C by a Linear without bias."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x):
        return self.reduction(self.norm(self.neighbourhoods(x)))
''' + _NEIGHBOURS

PATCH_MERGING_V2_CLASS = '''

class PatchMergingV2(nn.Module):
    """Swin V2's patch merging on an N x H x W x C tensor: each 2x2 neighbourhood's 4C features
    reduced to 2C by a Linear without bias, then layer-normalised."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim, eps=eps)

    def forward(self, x):
        return self.norm(self.reduction(self.neighbourhoods(x)))
''' + _NEIGHBOURS


def _merging_infer(name: str):
    def infer(a, ins) -> TensorType:
        inp = ins[0]
        _need_grid(name, inp)
        a["features"] = inp.c
        return TensorType((-(-inp.h // 2), -(-inp.w // 2), 2 * inp.c), Layout.GRID)

    return infer


def _merging_read(site) -> dict:
    """torchvision's PatchMerging(V2): a Linear without bias and a LayerNorm with its affine terms."""
    m = site.module
    if m.reduction.bias is not None or not m.norm.elementwise_affine:
        raise NoForm("a reduction with a bias or a LayerNorm without affine terms")
    return {"eps": m.norm.eps}


def patch_merging(name: str, cls: str, helper: str, v2: bool, doc: str, examples: tuple[Example, ...]) -> OpSpec:
    return register(OpSpec(
        name=name, family="merging", infer=_merging_infer(name), main=True,
        args={"eps": Arg(positive_float, 1e-5)},
        # the reduction 4C → 2C, and a LayerNorm of 2C (V2) or 4C (V1) features
        params=lambda a, i, o: 8 * a["features"] ** 2 + (4 if v2 else 8) * a["features"],
        macs=lambda a, i, o: o.h * o.w * 8 * a["features"] ** 2,
        other_ops=lambda a, i, o: o.h * o.w * (2 if v2 else 4) * a["features"],
        # the 4C neighbourhoods (a concatenation), the LayerNorm's (V1) or the Linear's (V2) output,
        # and the LayerNorm's statistics per position
        saved=lambda a, i, o: (Saved("own", elements=o.h * o.w * (6 if v2 else 8) * a["features"]),
                               Saved("own", elements=2 * o.h * o.w, dtype="float32")),
        label=lambda a: name,
        emit=Emit(module=lambda a, i, o: f"{cls}({a['features']}" + (f", eps={a['eps']!r})" if a["eps"] != 1e-5
                                                                      else ")"), helper=helper, imports=("torch",),
                  torch_types=(f"torchvision.models.swin_transformer.PatchMerging{'V2' * v2}",), read=_merging_read),
        draw=Draw(fill=DENSE),
        doc=doc,
        examples=examples,
    ))


patch_merging(
    "patch_merging", "PatchMerging", PATCH_MERGING_CLASS, False,
    "Swin's patch merging, HxWxC → ceil(H/2) x ceil(W/2) x 2C: 2x2 neighbourhoods concatenated (4C), "
    "LayerNorm, Linear to 2C without bias",
    (Example("channels_last > patch_merging", "8x6x6"), Example("channels_last > patch_merging eps=1e-6", "4x5x7")))
patch_merging(
    "patch_merging_v2", "PatchMergingV2", PATCH_MERGING_V2_CLASS, True,
    "Swin V2's patch merging: as patch_merging, with the LayerNorm (of 2C) after the Linear",
    (Example("channels_last > patch_merging_v2", "8x6x6"), Example("channels_last > patch_merging_v2", "4x3x5")))
