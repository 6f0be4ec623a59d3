"""Random *valid* .arch programs, for differential testing of the backends (tests/test_differential.py,
tests/fuzz.py --differential).

`generate(seed, features)` returns the text of a program that compiles; the same seed and
features always give the same text.  The generator tracks the tensor shape while it writes (a
small model of the language's shape rules, below), so nearly every draw is valid; the compiler
is the final judge, and a draw it rejects is replaced by the next one (`Generated.attempts`).

Coverage: every built-in op with every flag and keyword argument (conv KxK square and not,
stride, groups, dilation, padding values and same/valid, bias/nobias; dense/fc/linear; bn
eps/momentum on images and vectors; lrn; every activation; max/avg pools with stride and
padding; gap; flatten; dropout p), every setting at file and network level, sums with `skip`
and its pad/project/optional flags, concats with a `skip` item, `inception[...]` with its item
forms and the `bn` flag, repeats in every spelling with literal, parameter and arithmetic
counts, defs (one-line and block bodies, parameters with defaults that use earlier parameters
and `in`, `/S` binding `stride`, keyword arguments, nested calls), `in.c`/`in.h`/`in.w`,
labelled and unlabelled lines, network parameters with defaults, and hostile names; references
to earlier labelled lines (starting a line, as a concat or sum branch, fitted by crop or pad),
auxiliary heads and `output` lines.

Each feature that today's emitter is known to trip on can be switched off (`Features`), so a
failure can be put in its class by turning features off one at a time."""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

# ---- features ----


@dataclass(frozen=True)
class Features:
    unlabelled: bool = True          # top-level lines without a label (bare ops, def calls, inception)
    keywords: bool = True            # Python keywords and builtins as names (class, import, len, ...)
    module_attrs: bool = True        # public nn.Module attributes as names (forward, training, to, ...)
    module_internals: bool = True    # nn.Module internals (_modules, __dict__, __class__, __init__, ...)
    dunder: bool = True              # names starting with two underscores (name-mangled by Python)
    class_names: bool = True         # Block, ZeroPadShortcut, the network's own class name
    generated_names: bool = True     # labels equal to generated layer names (conv, conv1, bn, ws, branch1)
    codegen_names: bool = True       # torch, nn, x, self, F
    references: bool = True          # lines that read earlier lines (`@label`, fitted by crop/pad), aux heads

    @classmethod
    def none(cls) -> Features:
        return cls(**{f.name: False for f in dataclasses.fields(cls)})

    def without(self, *names: str) -> Features:
        return dataclasses.replace(self, **{n: False for n in names})


ALL = Features()
SAFE = Features.none()

KEYWORDS = ["class", "import", "lambda", "return", "None", "True", "False", "from", "for", "if", "while",
            "pass", "yield", "async", "await", "global", "not", "and", "or", "is", "with", "as", "del",
            "try", "except", "finally", "raise", "assert", "continue", "break", "elif", "else", "nonlocal",
            "len", "sum", "print", "list", "type", "object", "super", "id", "map", "range", "min", "max",
            "int", "str", "dict", "getattr", "iter", "next", "super"]
MODULE_ATTRS = ["forward", "training", "state_dict", "to", "cuda", "cpu", "parameters", "children", "modules",
                "eval", "train", "apply", "half", "float", "buffers", "named_modules", "load_state_dict",
                "register_buffer", "add_module", "zero_grad", "extra_repr", "get_submodule"]
MODULE_INTERNALS = ["_modules", "_parameters", "_buffers", "__dict__", "_version", "_apply", "_get_name",
                    "__class__", "__init__", "__call__", "__getattr__", "__setattr__", "_forward_hooks",
                    "__module__", "__doc__", "__repr__"]
DUNDER = ["__w", "__x", "__stem", "__secret", "__a1", "__head"]
GENERATED_NAMES = ["conv", "conv1", "conv2", "bn", "bn1", "relu", "fc", "ws", "branch1", "branch2", "maxpool",
                   "dense", "gap", "layer1", "block1"]
CODEGEN = ["torch", "nn", "x", "self", "F", "y", "out"]
SAFE_LABELS = ["stem", "head", "body", "layer1", "layer2", "layer3", "features", "classifier", "proj", "mix",
               "down", "up", "trunk", "neck", "tail", "stage_a", "stage_b", "b1", "b2"]
SAFE_DEFS = ["unit", "blk", "basic", "stage", "widen", "cell", "tower", "mixer", "pair", "squeeze"]
SAFE_PARAMS = ["c", "w", "n", "k", "width", "depth", "mid", "out_c", "hidden", "classes", "growth", "m"]
NETWORK_NAMES = ["net", "tiny", "model_a", "toy", "small_net", "block", "zero_pad_shortcut", "forward"]

ACTIVATIONS = ["relu", "relu6", "tanh", "sigmoid", "gelu", "silu", "softmax", "hardswish", "hardsigmoid"]
# Words a name must not be: statement words, repeat tokens, flags and op names (a bare word is
# a param if one is in scope, else a flag, so a param named `same` would change meanings).
NEVER = {"use", "set", "def", "network", "input", "in", "same", "valid", "bias", "nobias", "pad", "project",
         "optional", "skip", "inception", "pool", "reduce", "stride", "out", "padding", "groups", "dilation",
         "eps", "momentum", "p", "size", "alpha", "beta", "k", "always", "auto", "on", "off",
         "dense", "fc", "linear", "bn", "lrn", "gap", "flatten", "dropout", *ACTIVATIONS,
         "ceil", "floor", "exclude_pad", "kernel", "slope", "init", "parts", "index", "gmp", "layernorm", "chunk",
         "shuffle", "pointwise", "layerscale", "stochastic_depth", "droppath", "leakyrelu", "adaptive_avgpool",
         "adaptive_maxpool", "tokens", "class_token", "pos_embedding", "token", "mha", "heads", "channels_last",
         "channels_first",
         "upsample", "convtranspose", "upconv", "crop", "nearest", "bilinear", "align_corners",
         "output_padding", "scale", "aux", "output"}


def class_name(network: str) -> str:
    """How the generated class is named (resnet34 → Resnet34): only to aim hostile names at it."""
    return "".join(part[:1].upper() + part[1:] for part in network.split("_") if part) or "Network"


# ---- a model of the language's shape rules ----


class Invalid(Exception):
    """A candidate the language would reject; the generator tries another."""


Shape = tuple  # (c, h, w) or (f,)


def is_image(s: Shape) -> bool:
    return len(s) == 3


def is_tokens(s: Shape) -> bool:
    """A token sequence (S, D): its features are the last dim."""
    return len(s) == 2


def features(s: Shape) -> int:
    return s[-1] if is_tokens(s) else s[0]


def with_features(s: Shape, c: int) -> Shape:
    return (s[0], c) if is_tokens(s) else (c, *s[1:])


@dataclass
class Ctx:
    env: dict            # names in scope → values
    inp: Shape           # what `in` means here
    settings: dict       # padding, bias, shortcut
    defs: dict           # name → Def
    depth: int = 0       # def calls nested


# arithmetic


@dataclass
class Num:
    v: object

    def render(self) -> str:
        return repr(self.v) if isinstance(self.v, float) else str(self.v)

    def eval(self, ctx: Ctx):
        return self.v


@dataclass
class Var:
    name: str

    def render(self) -> str:
        return self.name

    def eval(self, ctx: Ctx):
        if self.name not in ctx.env:
            raise Invalid(self.name)
        return ctx.env[self.name]


@dataclass
class In:
    attr: str

    def render(self) -> str:
        return f"in.{self.attr}"

    def eval(self, ctx: Ctx):
        if self.attr == "c":
            return features(ctx.inp)
        if not is_image(ctx.inp):
            raise Invalid("in.h on a vector")
        return ctx.inp["chw".index(self.attr)]


@dataclass
class Bin:
    op: str
    a: object
    b: object

    def render(self) -> str:
        def side(t, right=False):
            text = t.render()
            if isinstance(t, Bin) and (_PREC[t.op] < _PREC[self.op] or (right and _PREC[t.op] == _PREC[self.op])):
                return f"({text})"
            return text
        return f"{side(self.a)}{self.op}{side(self.b, True)}"

    def eval(self, ctx: Ctx):
        a, b = self.a.eval(ctx), self.b.eval(ctx)
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        if self.op == "*":
            return a * b
        if b == 0:
            raise Invalid("// 0")
        return a // b


_PREC = {"+": 1, "-": 1, "*": 2, "//": 2}


@dataclass
class Fn:
    """`max(a, b)`, `min(a, b)`, `ceil(x)`, `floor(x)`, `make_divisible(v, d)` in a value."""

    name: str
    args: list

    def render(self) -> str:
        return f"{self.name}(" + ", ".join(a.render() for a in self.args) + ")"

    def eval(self, ctx: Ctx):
        v = [a.eval(ctx) for a in self.args]
        if self.name == "max":
            return max(v)
        if self.name == "min":
            return min(v)
        if self.name == "ceil":
            return math.ceil(v[0])
        if self.name == "floor":
            return math.floor(v[0])
        new = max(v[1], int(v[0] + v[1] / 2) // v[1] * v[1])
        return new + v[1] if new < 0.9 * v[0] else new


def atom_text(t) -> str:
    """An arith where the grammar wants an atom (`/S`, `×N`)."""
    return f"({t.render()})" if isinstance(t, Bin) else t.render()


def whole(v, lo=1, hi=10**6) -> int:
    if isinstance(v, float):
        if not v.is_integer():
            raise Invalid("not whole")
        v = int(v)
    if not lo <= v <= hi:
        raise Invalid(f"{v} out of range")
    return v


# layer terms


def out_size(n, k, s, p, d=1, ceil=False):
    if not ceil:
        return (n + 2 * p - d * (k - 1) - 1) // s + 1
    out = -(-(n + 2 * p - d * (k - 1) - 1) // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out


@dataclass
class Op:
    name: str                       # conv, dense, bn, relu, maxpool, ...
    kernel: tuple | None = None
    word: str | None = None         # the spelling used (fc, linear)
    pos: list = field(default_factory=list)
    stride: object = None           # arith for `/S`
    kw: dict = field(default_factory=dict)
    flags: list = field(default_factory=list)
    kernel_kw: bool = False         # `conv 8 kernel=3` rather than `conv3x3 8`

    def render(self) -> str:
        head = self.word or self.name
        if self.kernel and not self.kernel_kw:
            head += f"{self.kernel[0]}x{self.kernel[1]}"
        elif self.kernel:
            self.kw = {**self.kw, "kernel": Num(self.kernel[0])}
        parts = [head] + [p.render() for p in self.pos]
        if self.stride is not None:
            parts.append("/" + atom_text(self.stride))
        parts += [f"{k}={v.render()}" for k, v in self.kw.items()]
        parts += self.flags
        return " ".join(parts)

    def apply(self, s: Shape, ctx: Ctx) -> Shape:
        v = {k: a.eval(ctx) for k, a in self.kw.items()}
        pos = [a.eval(ctx) for a in self.pos]
        n = self.name
        if n == "conv":
            if not is_image(s):
                raise Invalid("conv on vector")
            out = whole(pos[0] if pos else v.get("out", s[0]), 1, 64)
            stride = whole(self.stride.eval(ctx) if self.stride is not None else v.get("stride", 1), 1, 8)
            g = whole(v.get("groups", 1), 1, 64)
            d = whole(v.get("dilation", 1), 1, 4)
            if s[0] % g or out % g:
                raise Invalid("groups")
            pad = "padding" in v and whole(v["padding"], 0, 8)
            mode = next((f for f in self.flags if f in ("same", "valid")), None)
            if "padding" not in v:
                mode = mode or ctx.settings["padding"]
                ph, pw = ((d * (self.kernel[0] - 1) // 2, d * (self.kernel[1] - 1) // 2) if mode == "same"
                          else (0, 0))
            else:
                ph = pw = pad
            h = out_size(s[1], self.kernel[0], stride, ph, d)
            w = out_size(s[2], self.kernel[1], stride, pw, d)
            if h < 1 or w < 1:
                raise Invalid("too small")
            return (out, h, w)
        if n == "dense":
            out = whole(pos[0] if pos else v["out"], 1, 64)
            return (s[0], out) if is_tokens(s) else (out,)
        if n == "tokens":
            if not is_image(s):
                raise Invalid("tokens of a vector")
            return (s[1] * s[2], s[0])
        if n == "class_token":
            if not is_tokens(s):
                raise Invalid("class token")
            return (s[0] + 1, s[1])
        if n == "pos_embedding":
            if not is_tokens(s):
                raise Invalid("pos embedding")
            return s
        if n == "token":
            if not is_tokens(s) or (pos and whole(pos[0], 0, 64) >= s[0]):
                raise Invalid("token")
            return (s[1],)
        if n == "mha":
            heads = whole(pos[0] if pos else v["heads"], 1, 16)
            if not is_tokens(s) or s[1] % heads:
                raise Invalid("mha")
            return s
        if n in ("layerscale", "stochastic_depth", "leakyrelu", "layernorm"):
            return s
        if n in ("gmp",):
            if not is_image(s):
                raise Invalid("gmp on vector")
            return (s[0], 1, 1)
        if n == "adaptive_avgpool":
            if not is_image(s):
                raise Invalid("adaptive pool on vector")
            size = whole(pos[0], 1, 8)
            return (s[0], size, size)
        if n == "shuffle":
            if not is_image(s) or s[0] % whole(pos[0], 1, 8):
                raise Invalid("shuffle")
            return s
        if n == "chunk":
            parts, index = whole(pos[0], 1, 8), whole(pos[1], 0, 8)
            if features(s) % parts or index >= parts:
                raise Invalid("chunk")
            return with_features(s, features(s) // parts)
        if n == "pointwise":
            if not is_image(s):
                raise Invalid("pointwise on vector")
            return (whole(pos[0], 1, 64), *s[1:])
        if n in ("bn", "dropout", *ACTIVATIONS):
            if n == "bn" and is_tokens(s):
                raise Invalid("bn on tokens")
            if n == "bn":
                if "eps" in v and not v["eps"] > 0:
                    raise Invalid("eps")
            if n == "dropout" and pos and not 0 <= pos[0] < 1:
                raise Invalid("p")
            return s
        if n == "lrn":
            if not is_image(s):
                raise Invalid("lrn on vector")
            return s
        if n in ("maxpool", "avgpool"):
            if not is_image(s):
                raise Invalid("pool on vector")
            kh, kw = self.kernel
            if self.stride is not None:
                sh = sw = whole(self.stride.eval(ctx), 1, 8)
            else:
                sh, sw = kh, kw
            mode = next((f for f in self.flags if f in ("same", "valid")), None)
            if "padding" in v:
                ph = pw = whole(v["padding"], 0, 8)
            else:
                mode = mode or ctx.settings["padding"]
                ph, pw = ((kh - 1) // 2, (kw - 1) // 2) if mode == "same" else (0, 0)
            if ph > kh // 2 or pw > kw // 2:
                raise Invalid("pool padding")
            ceil = "ceil" in self.flags
            h, w = out_size(s[1], kh, sh, ph, ceil=ceil), out_size(s[2], kw, sw, pw, ceil=ceil)
            if h < 1 or w < 1:
                raise Invalid("too small")
            return (s[0], h, w)
        if n == "gap":
            if not is_image(s):
                raise Invalid("gap on vector")
            return (s[0], 1, 1)
        if n == "flatten":
            return (math.prod(s),)
        raise AssertionError(n)


@dataclass
class Skip:
    flag: str | None = None

    def render(self) -> str:
        return "skip" + (f" {self.flag}" if self.flag else "")

    def apply(self, s, ctx):
        return s


@dataclass
class Seq:
    items: list

    def render(self) -> str:
        return " > ".join(_wrap(t, 2) for t in self.items)

    def apply(self, s, ctx):
        for t in self.items:
            s = t.apply(s, ctx)
        return s


@dataclass
class Sum:
    branches: list

    def render(self) -> str:
        return " | ".join(_wrap(t, 1) for t in self.branches)

    def apply(self, s, ctx):
        outs = [b.apply(s, ctx) for b in self.branches if not isinstance(b, Skip)]
        if not outs or any(o != outs[0] for o in outs):
            raise Invalid("sum branches differ")
        t = outs[0]
        for b in self.branches:
            if isinstance(b, Skip):
                _fit_skip(s, t, b.flag or ctx.settings["shortcut"])
        return t


def _fit_skip(s, t, policy):
    if policy == "optional":
        return
    if s == t:
        return
    if len(s) != len(t):
        raise Invalid("skip between image and vector")
    if is_tokens(s) and (s[0] != t[0] or policy == "pad"):
        raise Invalid("skip between sequences of different lengths, or padded")
    if is_image(s):
        h, w = t[1], t[2]
        st = -(-s[1] // h)
        if h > s[1] or w > s[2] or -(-s[1] // st) != h or -(-s[2] // st) != w:
            raise Invalid("no subsample stride")
    if policy == "pad" and t[0] < s[0]:
        raise Invalid("pad cannot narrow")


@dataclass
class Rep:
    term: object
    count: object       # arith
    style: str          # "x" (x2 / x(n)), "times" (×2, × n, ×(n))

    def render(self) -> str:
        body = _wrap(self.term, 3)
        c = self.count
        if self.style == "x":
            return f"{body} x{c.v}" if isinstance(c, Num) else f"{body} x({c.render()})"
        if self.style == "times_space":
            return f"{body} × {atom_text(c)}"
        return f"{body} ×{atom_text(c)}"

    def apply(self, s, ctx):
        n = whole(self.count.eval(ctx), 0, 6)
        for _ in range(n):
            s = self.term.apply(s, ctx)
        return s


@dataclass
class Group:
    expr: object

    def render(self) -> str:
        return f"({self.expr.render()})"

    def apply(self, s, ctx):
        return self.expr.apply(s, ctx)


@dataclass
class Prod:
    branches: list

    def render(self) -> str:
        return "(" + " & ".join(_wrap(t, 2) for t in self.branches) + ")"

    def apply(self, s, ctx):
        outs = [s if isinstance(b, Skip) else b.apply(s, ctx) for b in self.branches]
        dims = list(outs[0])
        for o in outs[1:]:
            if len(o) != len(dims):
                raise Invalid("product layouts")
            for k, (a, b) in enumerate(zip(dims, o, strict=True)):
                if a == b or b == 1:
                    continue
                if a == 1:
                    dims[k] = b
                    continue
                raise Invalid("product shapes")
        return tuple(dims)


@dataclass
class Concat:
    items: list

    def render(self) -> str:
        return "[" + ", ".join(t.render() for t in self.items) + "]"

    def apply(self, s, ctx):
        outs = [t.apply(s, ctx) for t in self.items]
        if all(is_tokens(o) for o in outs) and len({o[0] for o in outs}) == 1:
            return (outs[0][0], sum(o[1] for o in outs))
        if not all(is_image(o) for o in outs) or len({o[1:] for o in outs}) != 1:
            raise Invalid("concat sizes")
        return (sum(o[0] for o in outs), *outs[0][1:])


@dataclass
class Inception:
    items: list          # (kind, width arith or None, reduce arith or None); kind: "1x1", "3x3", "5x5", "pool"
    bn: bool = False

    def render(self) -> str:
        parts = []
        for kind, width, red in self.items:
            text = kind + (f" {width.render()}" if width is not None else "")
            if red is not None:
                text += f" reduce={red.render()}"
            parts.append(text)
        return "inception[" + ", ".join(parts) + "]" + (" bn" if self.bn else "")

    def apply(self, s, ctx):
        if not is_image(s):
            raise Invalid("inception on vector")
        c = 0
        for _, width, red in self.items:
            if red is not None:
                whole(red.eval(ctx), 1, 64)
            c += whole(width.eval(ctx), 1, 64) if width is not None else s[0]
        return (c, s[1], s[2])


@dataclass
class Def:
    name: str
    params: list          # (name, default arith or None)
    lines: list           # (label or None, expr); one unlabelled line and `oneline` → `def f(...) = expr`
    oneline: bool

    def render(self) -> str:
        ps = ", ".join(p if d is None else f"{p}={d.render()}" for p, d in self.params)
        head = f"def {self.name}({ps})" if self.params else f"def {self.name}"
        if self.oneline:
            return f"{head} = {self.lines[0][1].render()}\n"
        body = "".join(f"    {lab} = {e.render()}\n" if lab else f"    {e.render()}\n" for lab, e in self.lines)
        return f"{head}:\n{body}"


@dataclass
class Call:
    name: str
    pos: list = field(default_factory=list)
    stride: object = None
    kw: dict = field(default_factory=dict)

    def render(self) -> str:
        parts = [self.name] + [p.render() for p in self.pos]
        if self.stride is not None:
            parts.append("/" + atom_text(self.stride))
        parts += [f"{k}={v.render()}" for k, v in self.kw.items()]
        return " ".join(parts)

    def apply(self, s, ctx):
        d = ctx.defs[self.name]
        if ctx.depth > 6:
            raise Invalid("too deep")
        inner = Ctx({}, s, ctx.settings, ctx.defs, ctx.depth + 1)
        given = dict(zip([p for p, _ in d.params if p != "stride" or self.stride is None], self.pos, strict=False))
        if self.stride is not None:
            given["stride"] = self.stride
        given.update(self.kw)
        for p, default in d.params:
            if p in given:
                inner.env[p] = given[p].eval(ctx)
            elif default is not None:
                inner.env[p] = default.eval(inner)
            else:
                raise Invalid("missing argument")
        for _, e in d.lines:
            s = e.apply(s, inner)
        return s


def _wrap(t, level: int) -> str:
    """Parenthesise a term inside an operator of `level` (1 sum, 2 seq, 3 repeat)."""
    own = 1 if isinstance(t, Sum) else 2 if isinstance(t, Seq) else 3 if isinstance(t, Rep) else 4
    text = t.render()
    return f"({text})" if own < level or (own == 3 and level == 3) else text


# ---- the generator ----


@dataclass
class Generated:
    text: str
    seed: int
    attempts: int          # draws the compiler rejected before this one, plus one


class Gen:
    def __init__(self, seed: int, features: Features):
        self.r = random.Random(seed)
        self.f = features
        self.defs: dict[str, Def] = {}
        self.def_order: list[str] = []
        self.taken: set[str] = set()          # def and network names, file-wide
        self.settings = {"padding": "valid", "bias": "auto", "shortcut": "project"}
        self.file_settings: list[str] = []
        self.net_class = ""
        self.counts: set = set()              # (def, param) pairs used as repeat counts

    # names

    def _pool(self, safe: list[str], *, label: bool) -> list[str]:
        f, pool = self.f, list(safe)
        if f.keywords:
            pool += KEYWORDS
        if f.module_attrs:
            pool += MODULE_ATTRS
        if f.module_internals:
            pool += MODULE_INTERNALS
        if f.dunder:
            pool += DUNDER
        if f.class_names:
            pool += ["Block", "ZeroPadShortcut"] + ([self.net_class] if self.net_class else [])
        if f.generated_names and label:
            pool += GENERATED_NAMES
        if f.codegen_names:
            pool += CODEGEN
        return [n for n in pool if n not in NEVER]

    def _hostile_share(self, safe: list[str], *, label: bool) -> str:
        pool = self._pool(safe, label=label)
        hostile = [n for n in pool if n not in safe]
        if hostile and self.r.random() < 0.5:
            return self.r.choice(hostile)
        return self.r.choice(safe)

    def fresh(self, safe: list[str], used: set[str], *, label: bool = False) -> str:
        for _ in range(50):
            name = self._hostile_share(safe, label=label)
            if name not in used and name not in self.taken and name not in self.defs:
                used.add(name)
                return name
        i = 0
        while f"{safe[0]}{i}" in used or f"{safe[0]}{i}" in self.taken:
            i += 1
        used.add(f"{safe[0]}{i}")
        return f"{safe[0]}{i}"

    # arithmetic

    def width(self, ctx: Ctx, lo=1, hi=32, multiple_of=1):
        w = self._width(ctx, lo, hi, multiple_of)
        r = self.r
        if r.random() < 0.04:
            roll = r.random()
            if roll < 0.6:
                w = Fn(r.choice(["max", "min"]), [w, Num(r.choice([1, 2, 8]))])
            elif roll < 0.7:
                w = Fn(r.choice(["ceil", "floor"]), [Bin("*", w, Num(r.choice([1.0, 1.5])))])
            else:
                w = Fn("make_divisible", [w, Num(r.choice([1, 2, 8]))])
        return w

    def _width(self, ctx: Ctx, lo=1, hi=32, multiple_of=1):
        """An arith for a width in [lo, hi] (a multiple of `multiple_of`), using names in scope and `in`."""
        r = self.r
        ints = [k for k, v in ctx.env.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 1]
        for _ in range(20):
            roll = r.random()
            if roll < 0.3 and ints:
                t = Var(r.choice(ints))
            elif roll < 0.45 and ints:
                t = Bin(r.choice(["*", "+", "//"]), Var(r.choice(ints)), Num(r.choice([1, 2, 3])))
            elif roll < 0.55 and ints:
                t = Bin("*", Bin("+", Var(r.choice(ints)), Num(r.choice([1, 2]))), Num(2))
            elif roll < 0.62:
                t = Bin(r.choice(["*", "//", "+"]), In("c"), Num(r.choice([1, 2, 4])))
            elif roll < 0.65:
                t = Bin(r.choice(["+", "//"]), In(r.choice("hw")), Num(r.choice([1, 2])))
            elif roll < 0.7 and len(ints) >= 2:
                t = Bin("-", Var(ints[0]), Bin("//", Var(ints[1]), Num(4)))
            else:
                t = Num(r.choice([1, 2, 3, 4, 6, 8, 8, 12, 16, 16, 24, 32]))
            try:
                v = t.eval(ctx)
            except Invalid:
                continue
            if isinstance(v, int) and lo <= v <= hi and v % multiple_of == 0:
                return t
        return Num(multiple_of * max(1, lo // multiple_of + (lo % multiple_of > 0)))

    def count(self, ctx: Ctx):
        r = self.r
        ints = [k for k, v in ctx.env.items() if isinstance(v, int) and 0 <= v <= 3]
        roll = r.random()
        if roll < 0.35 and ints:
            return Var(r.choice(ints))
        if roll < 0.45 and ints:
            name = r.choice(ints)
            if ctx.env[name] >= 1:
                return Bin("-", Var(name), Num(1))
        if roll < 0.5:
            return Bin("+", Num(1), Num(1))
        return Num(r.choice([0, 1, 1, 2, 2, 3]))

    # ops

    def op(self, s: Shape, ctx: Ctx):
        r = self.r
        if is_image(s):
            kind = r.choices(["conv", "bn", "act", "pool", "lrn", "dropout", "gap", "flatten", "dense", "newer",
                              "tokens"], [10, 4, 5, 3, 1, 1, 0.4, 0.3, 0.5, 2, 0.6])[0]
        elif is_tokens(s):
            kind = r.choices(["dense", "act", "dropout", "flatten", "newer", "token_op"], [4, 3, 1, 0.2, 2, 4])[0]
        else:
            kind = r.choices(["dense", "bn", "act", "dropout", "flatten", "newer"], [6, 3, 4, 1, 0.3, 1])[0]
        if kind == "newer":
            return self.newer_op(s, ctx)
        if kind == "tokens":
            return Op("tokens")
        if kind == "token_op":
            return self.token_op(s, ctx)
        if kind == "conv":
            return self.conv(s, ctx)
        if kind == "bn":
            kw = {}
            if r.random() < 0.3:
                kw["eps"] = Num(r.choice([1e-3, 0.001, 1e-05, 0.01]))
            if r.random() < 0.3:
                kw["momentum"] = Num(r.choice([0.01, 0.2, 0.5]))
            return Op("bn", kw=kw)
        if kind == "act":
            return Op(r.choice(ACTIVATIONS))
        if kind == "pool":
            k = r.choice([(2, 2), (3, 3), (3, 3), (1, 3), (3, 1), (2, 1)])
            o = Op(r.choice(["maxpool", "avgpool"]), kernel=k)
            if r.random() < 0.6:
                o.stride = Num(r.choice([1, 1, 2]))
            roll = r.random()
            if roll < 0.3:
                o.flags.append("same")
            elif roll < 0.4:
                o.flags.append("valid")
            elif roll < 0.55:
                o.kw["padding"] = Num(r.randint(0, min(k) // 2))
            if r.random() < 0.15:
                o.flags.append("ceil")
            if o.name == "avgpool" and r.random() < 0.15:
                o.flags.append("exclude_pad")
            return o
        if kind == "lrn":
            roll = r.random()
            if roll < 0.3:
                return Op("lrn", pos=[Num(r.choice([3, 5]))])
            if roll < 0.6:
                return Op("lrn", kw={"size": Num(3), "alpha": Num(0.0002), "beta": Num(0.5), "k": Num(2)})
            return Op("lrn")
        if kind == "dropout":
            floats = [k for k, v in ctx.env.items() if isinstance(v, float) and 0 <= v < 1]
            roll = r.random()
            if roll < 0.25 and floats:
                return Op("dropout", pos=[Var(r.choice(floats))])
            if roll < 0.5:
                return Op("dropout", pos=[Num(r.choice([0.1, 0.2, 0.5, 0]))])
            if roll < 0.7:
                return Op("dropout", kw={"p": Num(0.25)})
            return Op("dropout")
        if kind in ("gap", "flatten"):
            return Op(kind)
        o = Op("dense", word=r.choice(["dense", "dense", "fc", "linear"]))
        w = self.width(ctx)
        if r.random() < 0.2:
            o.kw["out"] = w
        else:
            o.pos.append(w)
        if r.random() < 0.25:
            o.flags.append(r.choice(["bias", "nobias"]))
        return o

    def token_op(self, s: Shape, ctx: Ctx):
        """The ops of token sequences (issue 17): attention, the class token, embeddings, selection."""
        r = self.r
        kind = r.choice(["mha", "mha", "mha", "class_token", "pos_embedding", "token"])
        if kind == "mha":
            heads = r.choice([h for h in (1, 2, 4) if s[1] % h == 0])
            o = Op("mha", pos=[Num(heads)] if r.random() < 0.8 else [], kw={} if r.random() < 0.8 else {})
            if not o.pos:
                o.kw["heads"] = Num(heads)
            if r.random() < 0.2:
                o.kw["dropout"] = Num(0.1)
            if r.random() < 0.2:
                o.flags.append(r.choice(["bias", "nobias"]))
            return o
        if kind == "token":
            return Op("token", pos=[Num(r.randrange(s[0]))] if r.random() < 0.5 else [])
        return Op(kind)

    def newer_op(self, s: Shape, ctx: Ctx):
        """The ops of issue 16: gates' activations, norms, scales, shuffles, splits, pools."""
        r = self.r
        if is_tokens(s):
            kind = r.choice(["layernorm", "layerscale", "stochastic_depth", "leakyrelu", "chunk"])
        elif not is_image(s):
            kind = r.choice(["layernorm", "layerscale", "stochastic_depth", "leakyrelu"])
        else:
            kind = r.choice(["layernorm", "layerscale", "stochastic_depth", "leakyrelu", "gmp", "adaptive_avgpool",
                             "shuffle", "chunk", "pointwise", "pointwise"])
        if kind == "layernorm":
            return Op(kind, kw={"eps": Num(1e-6)} if r.random() < 0.3 else {})
        if kind == "layerscale":
            return Op(kind, pos=[Num(r.choice([1e-6, 0.5, 1.0]))] if r.random() < 0.5 else [])
        if kind == "stochastic_depth":
            return Op(kind, word=r.choice(["stochastic_depth", "droppath"]), pos=[Num(r.choice([0.0, 0.1, 0.5]))])
        if kind == "leakyrelu":
            return Op(kind, pos=[Num(0.2)] if r.random() < 0.5 else [])
        if kind == "adaptive_avgpool":
            return Op(kind, pos=[Num(r.choice([1, 2, 3]))])
        if kind == "shuffle":
            return Op(kind, pos=[Num(r.choice([g for g in (2, 3, 4) if s[0] % g == 0] or [1]))])
        if kind == "chunk":
            parts = r.choice([p for p in (2, 4) if features(s) % p == 0] or [1])
            return Op(kind, pos=[Num(parts), Num(r.randrange(parts))])
        if kind == "pointwise":
            o = Op(kind, pos=[self.width(ctx)])
            if r.random() < 0.25:
                o.flags.append(r.choice(["bias", "nobias"]))
            return o
        return Op(kind)

    def product(self, s, ctx, budget):
        """`skip & gap > conv1x1 C > act` (a gate), or two branches of equal shape."""
        r = self.r
        if is_image(s) and r.random() < 0.6:
            squeeze = Num(r.choice([1, 2, 4]))
            width = Num(r.choice([s[0], s[0], 1]))
            gate = Seq([Op(r.choice(["gap", "gap", "gmp"])), Op("conv", kernel=(1, 1), pos=[squeeze]),
                        Op(r.choice(ACTIVATIONS)), Op("conv", kernel=(1, 1), pos=[width]),
                        Op(r.choice(["sigmoid", "hardsigmoid"]))])
            branches = [Skip(), gate] if r.random() < 0.7 else [gate, Skip()]
        else:
            main, out = self.seq(s, ctx, budget)
            branches = [main, Op(r.choice(ACTIVATIONS))] if out == s else [main, main]
        return Prod(branches)

    def conv(self, s: Shape, ctx: Ctx):
        r = self.r
        k = r.choice([(1, 1), (3, 3), (3, 3), (3, 3), (5, 5), (1, 3), (3, 1), (2, 2), (1, 7), (7, 1)])
        o = Op("conv", kernel=k, kernel_kw=k[0] == k[1] and r.random() < 0.15)
        groups = 1
        if r.random() < 0.15:
            groups = r.choice([g for g in (2, 4, s[0]) if s[0] % g == 0 and g <= 32] or [1])
            if groups > 1:
                o.kw["groups"] = Num(groups) if r.random() < 0.7 or groups != s[0] else In("c")
        roll = r.random()
        if roll < 0.1 and groups == 1:
            pass                                       # keep C
        elif roll < 0.2:
            o.kw["out"] = self.width(ctx, multiple_of=groups)
        else:
            o.pos.append(self.width(ctx, multiple_of=groups))
        roll = r.random()
        if roll < 0.15:
            o.stride = Num(2)
        elif roll < 0.2:
            ints = [k for k, v in ctx.env.items() if v == 1 or v == 2]
            o.stride = Var(r.choice(ints)) if ints else Bin("*", Num(1), Num(2))
        elif roll < 0.23:
            o.kw["stride"] = Num(2)
        roll = r.random()
        if roll < 0.45:
            o.flags.append("same")
        elif roll < 0.55:
            o.flags.append("valid")
        elif roll < 0.7:
            o.kw["padding"] = Num(r.randint(0, 2))
        if r.random() < 0.1:
            o.kw["dilation"] = Num(2)
        if r.random() < 0.25:
            o.flags.append(r.choice(["bias", "nobias"]))
        r.shuffle(o.flags)
        return o

    # expressions

    def valid(self, t, s, ctx):
        try:
            return t.apply(s, ctx)
        except Invalid:
            return None

    def seq(self, s, ctx, budget, n=None):
        """A sequence of 1..3 terms starting at shape s."""
        items = []
        n = n or self.r.choice([1, 2, 2, 3])
        for _ in range(n):
            t, s2 = self.term(s, ctx, budget)
            if t is None:
                break
            items.append(t)
            s = s2
        if not items:
            items = [Op("relu")]
        return (items[0] if len(items) == 1 else Seq(items)), s

    def term(self, s, ctx, budget):
        r = self.r
        for _ in range(12):
            roll = r.random()
            if budget > 0 and roll < 0.12:
                t = self.sum(s, ctx, budget - 1)
            elif budget > 0 and roll < 0.2 and is_image(s):
                t = self.concat(s, ctx, budget - 1)
            elif budget > 0 and roll < 0.24:
                t = self.product(s, ctx, budget - 1)
            elif roll < 0.27 and is_image(s):
                t = self.inception(s, ctx)
            elif budget > 0 and roll < 0.42 and ctx.depth < 3:
                t = self.call(s, ctx, budget - 1)
            elif budget > 0 and roll < 0.52:
                inner, _ = self.seq(s, ctx, budget - 1, n=r.choice([1, 2]))
                t = Rep(inner, self.count(ctx), r.choice(["x", "x", "times", "times_space"]))
                if r.random() < 0.2:
                    t = Group(t)
            else:
                t = self.op(s, ctx)
                if r.random() < 0.08:
                    t = Rep(t, self.count(ctx), r.choice(["x", "times"]))
            out = self.valid(t, s, ctx) if t is not None else None
            if out is not None and (not is_image(out) or min(out[1:]) >= 1):
                return t, out
        t = Op(r.choice(ACTIVATIONS))
        return t, s

    def sum(self, s, ctx, budget):
        r = self.r
        main, out = self.seq(s, ctx, budget)
        if r.random() < 0.25:
            branches = [main, Seq([*(main.items if isinstance(main, Seq) else [main]), Op(r.choice(ACTIVATIONS))])]
            if r.random() < 0.5:
                branches.append(Skip(r.choice([None, "optional"])))
        else:
            flag = r.choice([None, None, "pad", "project", "optional"])
            branches = [main, Skip(flag)]
            if r.random() < 0.2:
                branches.reverse()
        return Sum(branches)

    def concat(self, s, ctx, budget):
        r = self.r
        first, out = self.seq(s, ctx, budget)
        if not is_image(out):
            return None
        items = [first]
        for _ in range(r.choice([1, 1, 2])):
            if r.random() < 0.3 and out[1:] == s[1:]:
                items.append(Skip())
                continue
            for _ in range(8):
                t, o = self.seq(s, ctx, budget)
                if is_image(o) and o[1:] == out[1:]:
                    items.append(t)
                    break
            else:
                items.append(first)
        r.shuffle(items)
        return Concat(items)

    def inception(self, s, ctx):
        r = self.r
        items = []
        for kind in r.sample(["1x1", "3x3", "5x5", "pool"], r.randint(1, 4)):
            roll = r.random()
            if roll < 0.2:
                items.append((kind, None, None))
            elif kind in ("3x3", "5x5") and roll < 0.7:
                items.append((kind, self.width(ctx, hi=16), self.width(ctx, hi=16)))
            else:
                items.append((kind, self.width(ctx, hi=16), None))
        return Inception(items, bn=r.random() < 0.4)

    # defs

    def call(self, s, ctx, budget):
        r = self.r
        usable = [n for n in self.def_order if self.defs[n].lines]
        fresh = False
        if usable and r.random() < 0.5:
            d = self.defs[r.choice(usable)]
        else:
            d = self.new_def(s, ctx, budget)
            if d is None:
                return None
            fresh = True
        c = Call(d.name)
        positional = r.random() < 0.7
        for p, default in d.params:
            if default is not None and r.random() < 0.5:
                positional = False                      # later arguments by keyword
                continue
            if p == "stride" and r.random() < 0.7:
                c.stride = r.choice([Num(1), Num(2), Num(2)])
                positional = False
                continue
            if fresh and r.random() < 0.7:
                value = Num(d.example[p])
            elif (d.name, p) in self.counts:
                value = self.count(ctx)
            elif p == "stride":
                value = Num(r.choice([1, 2]))
            else:
                value = self.width(ctx, hi=16)
            if positional:
                c.pos.append(value)
            else:
                c.kw[p] = value
        if r.random() < 0.15:
            return Rep(c, self.count(ctx), r.choice(["x", "times"]))
        return c

    def new_def(self, s, ctx, budget):
        r = self.r
        if len(self.defs) >= 5:
            return None
        name = self.fresh(SAFE_DEFS, set(), label=False)
        self.taken.add(name)
        params, used = [], set()
        defaults = False
        for _ in range(r.choice([0, 1, 1, 2, 3])):
            p = self.fresh(SAFE_PARAMS, used)
            default = None
            if defaults or r.random() < 0.4:
                defaults = True
                roll = r.random()
                if roll < 0.4:
                    default = Bin("*", In("c"), Num(2)) if r.random() < 0.5 else In("c")
                elif roll < 0.7 and params:
                    default = Bin("+", Var(params[-1][0]), Num(1))
                else:
                    default = Num(r.choice([2, 4, 8]))
            params.append((p, default))
            if default is None and r.random() < 0.25:
                self.counts.add((name, p))
        if r.random() < 0.35:
            params.append(("stride", Num(1)))
        d = Def(name, params, [], oneline=False)
        self.defs[name] = d   # visible while its body is made (not callable: it has no lines yet)
        inner = Ctx({}, s, ctx.settings, self.defs, ctx.depth + 1)
        for p, default in params:
            if (name, p) in self.counts:
                inner.env[p] = r.choice([0, 1, 2])
            elif default is not None:
                try:
                    inner.env[p] = default.eval(inner)
                except Invalid:
                    inner.env[p] = 4
            else:
                inner.env[p] = r.choice([4, 8, 16])
        d.example = dict(inner.env)
        lines, prev, labels = [], s, set()
        n_lines = r.choice([1, 1, 2, 3])
        for _ in range(n_lines):
            if r.random() < 0.7:
                e, out = self.seq(prev, inner, budget)
            else:
                e = self.sum(prev, inner, budget)
                out = self.valid(e, prev, inner)
            if out is None:
                e, out = Op("relu"), prev
            label = self.fresh(SAFE_LABELS, labels, label=True) if n_lines > 1 and r.random() < 0.4 else None
            lines.append((label, e))
            prev = out
        d.lines = lines
        d.oneline = n_lines == 1 and r.random() < 0.6
        self.def_order.append(name)
        return d

    # programs

    def network(self, name: str) -> str:
        r = self.r
        self.net_class = class_name(name)
        params, env, used = [], {}, set()
        for _ in range(r.choice([0, 1, 2, 2, 3])):
            p = self.fresh(SAFE_PARAMS, used)
            if r.random() < 0.15:
                v = r.choice([0.1, 0.2, 0.5])
            elif r.random() < 0.25:
                v = r.choice([0, 1, 2])
            else:
                v = r.choice([2, 4, 8, 10, 16])
            params.append((p, v))
            env[p] = v
        self.net_params = env
        if r.random() < 0.7:
            inp = (r.choice([1, 3, 4, 8]), r.choice([8, 12, 16]), r.choice([8, 12, 16]))
            if r.random() < 0.7:
                inp = (inp[0], inp[1], inp[1])
        else:
            inp = (r.choice([4, 8, 16, 32]),)
        settings = dict(self.settings)
        ctx = Ctx(env, inp, settings, self.defs)
        lines, s, labels = [], inp, set()
        known: list[tuple[str, Shape]] = []  # labelled lines a later line may refer to, and their shapes
        heads: list[str] = []
        last_label = None
        all_bare = r.random() < 0.2  # a network written with no labels at all, as many people write
        for _ in range(r.randint(1, 6)):
            if r.random() < 0.15:
                key = r.choice(["padding", "bias", "shortcut"])
                value = r.choice({"padding": ["same", "valid"], "bias": ["auto", "on", "off"],
                                  "shortcut": ["project", "pad", "always"]}[key])
                settings[key] = value
                lines.append(f"set {key} = {value}")
            ctx.inp = s
            if self.f.references and lines and r.random() < 0.12:  # an auxiliary head: the chain goes on past it
                start, text_from = s, ""
                if known and r.random() < 0.5:
                    lab, start = r.choice(known)
                    text_from = f"@{lab} > "
                e, _ = self.seq(start, ctx, 1)
                name = self.fresh(SAFE_LABELS, labels, label=True)
                heads.append(name)
                lines.append(f"aux {name} = {text_from}{_wrap(e, 2)}")
                continue
            ref = self.reference(s, known, ctx) if self.f.references and known and r.random() < 0.3 else None
            unlabelled = self.f.unlabelled and (all_bare or r.random() < 0.35)
            if ref is not None:
                text, s = ref
                last_label = None if unlabelled else self.fresh(SAFE_LABELS, labels, label=True)
                lines.append(text if last_label is None else f"{last_label} = {text}")
                if last_label is not None and last_label != "input":
                    known.append((last_label, s))
                continue
            if unlabelled and r.random() < 0.5:  # the forms people write bare: def calls, inception
                e = self.call(s, ctx, 2) if r.random() < 0.6 or not is_image(s) else self.inception(s, ctx)
                out = self.valid(e, s, ctx) if e is not None else None
                if out is None:
                    e, out = self.seq(s, ctx, 2)
            else:
                e, out = self.seq(s, ctx, 2)
            s = out
            if unlabelled:
                last_label = None
                lines.append(e.render())
            else:
                last_label = self.fresh(SAFE_LABELS, labels, label=True)
                lines.append(f"{last_label} = {e.render()}")
                if last_label != "input":  # `@input` is the network's input
                    known.append((last_label, s))
        if heads and last_label is not None and r.random() < 0.5:
            order = [last_label, *heads]
            r.shuffle(order)
            lines.append("output " + ", ".join(f"@{n}" for n in order))
        ps = ", ".join(f"{p}={v!r}" for p, v in params)
        head = f"network {name}({ps}):" if params else f"network {name}:"
        shape = "x".join(map(str, inp))
        return head + "\n" + f"    input {shape}\n" + "".join(f"    {line}\n" for line in lines)

    def reference(self, s: Shape, known: list, ctx: Ctx) -> tuple[str, Shape] | None:
        """A line that reads an earlier labelled line: starting with it, or as a branch of a concat
        or a sum (fitted by crop or pad where the sizes differ); its text and output shape."""
        r = self.r
        lab, ls = r.choice(known)
        kind = r.choice(["start", "concat", "concat", "sum"])
        if kind == "start" or not (is_image(s) and is_image(ls)):
            if kind != "start" and ls == s:
                return f"skip | @{lab}", s
            e, out = self.seq(ls, ctx, 1)
            return f"@{lab} > {_wrap(e, 2)}", out
        if kind == "sum" and ls[0] != s[0]:
            return None
        flag = "" if ls[1:] == s[1:] and r.random() < 0.7 else r.choice([" crop", " pad"])
        pick = max if flag == " pad" else min
        h, w = (pick(ls[1], s[1]), pick(ls[2], s[2])) if flag else s[1:]
        if kind == "sum":
            return f"{r.choice(ACTIVATIONS)} | @{lab}{flag}", (s[0], h, w)
        items = [f"@{lab}{flag}", "skip"]
        r.shuffle(items)
        return f"[{', '.join(items)}]", (ls[0] + s[0], h, w)

    def program(self) -> str:
        r = self.r
        for key, values in (("padding", ["same", "valid"]), ("bias", ["auto", "on", "off"]),
                            ("shortcut", ["project", "pad", "always"])):
            if r.random() < 0.25:
                self.settings[key] = r.choice(values)
                self.file_settings.append(f"set {key} = {self.settings[key]}\n")
        if r.random() < 0.1:
            self.file_settings.append(r.choice(["set bn.eps = 0.001\n", "set bn.momentum = 0.01\n",
                                                "set layernorm.eps = 1e-6\n", "set dropout.p = 0.1\n"]))
        nets = []
        names = [n for n in NETWORK_NAMES if self.f.class_names or n not in ("block", "zero_pad_shortcut")]
        for _ in range(1 if r.random() < 0.8 else 2):
            name = r.choice([n for n in names if n not in self.taken])
            self.taken.add(name)
            nets.append(self.network(name))
        parts = [self.defs[n].render() for n in self.def_order] + nets
        r.shuffle(parts)  # the order of defs and networks does not matter
        return "\n".join(["".join(self.file_settings)] + parts if self.file_settings else parts)


def generate_raw(seed: int, features: Features = ALL) -> str:
    """One draw, not checked by the compiler."""
    return Gen(seed, features).program()


def generate(seed: int, features: Features = ALL, *, tries: int = 20) -> Generated:
    """A program that compiles: the first draw from `seed` (then seed·1000+1, ...) the compiler accepts."""
    import archlang

    for attempt in range(tries):
        text = generate_raw(seed if attempt == 0 else seed * 1000 + attempt, features)
        try:
            archlang.compile(text, "gen.arch")
        except archlang.ArchError:
            continue
        return Generated(text, seed, attempt + 1)
    raise RuntimeError(f"no valid program from seed {seed} in {tries} draws")


def random_overrides(net, seed: int) -> dict:
    """Other values for some of a network's parameters (as `--set` would give), not checked."""
    r = random.Random(seed)
    out = {}
    for k, v in net.arguments.items():
        if r.random() < 0.7:
            if isinstance(v, float):
                out[k] = r.choice([0.1, 0.3, 0.4])
            elif 0 <= v <= 2:
                out[k] = r.choice([0, 1, 2, 3])
            else:
                out[k] = r.choice([2, 3, 4, 6, 8, 12, 16])
    return out


if __name__ == "__main__":  # python tests/programs.py SEED: print one program
    import sys

    print(generate(int(sys.argv[1]) if len(sys.argv) > 1 else 0).text)
