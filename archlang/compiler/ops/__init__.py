"""The op registry: one OpSpec per op holds everything about it — arguments and flags, the
shape rule, parameter, buffer, MAC and other-op counts, its label, its PyTorch emission (as
text: nothing here imports torch), how diagrams draw it, how reports treat it, its doc line
and the examples the tests run.  Every other part of archc dispatches through the spec: an op
is added by registering one entry (see archlang/compiler/ops/layers.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from archlang.compiler import symbolic
from archlang.compiler.ir import Layout, Node, TensorType
from archlang.compiler.symbolic import is_symbolic


class ShapeError(Exception):
    """An op cannot take its inputs; the elaborator adds the source span (of input `index`'s
    branch when the fault is one input's)."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


class ArgError(Exception):
    """An argument value is invalid; the elaborator adds the span of the argument."""


class NoForm(Exception):
    """A PyTorch layer has an op's form, but settings the op cannot write (`archc import`)."""


class InternalError(Exception):
    """An op's spec lacks what a backend needs: a bug in archc, never a user error."""


Attrs = dict[str, Any]
Inputs = Sequence[TensorType]
Count = Callable[[Attrs, Inputs, TensorType], int]


def _zero(attrs: Attrs, ins: Inputs, out: TensorType) -> int:
    return 0


@dataclass(frozen=True)
class Arg:
    """One argument an op accepts: its check/convert function and default (None: required)."""

    check: Callable[[Any], Any]
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class Emit:
    """How the PyTorch backend writes an op, as source text.

    `module` gives the constructor of an nn.Module child (`nn.Conv2d(3, 64, 7, ...)`), called
    on the op's one input; `call` gives an expression over the inputs' variable names instead
    (`a + b`, `torch.cat([a, b], dim=1)`), for ops that are not modules.  `helper` is the
    source of a class the constructor names, written once into any file that uses the op;
    `imports` are the modules the text needs beyond `from torch import nn`.  With `apply`, the
    constructor makes an `nn.Parameter` of the enclosing block (registered, as a hand-written
    block's own parameters are, before its sub-modules' in the state_dict) and `apply` says how
    forward uses it."""

    module: Callable[[Attrs, Inputs, TensorType], str] | None = None
    call: Callable[[list[str], Attrs], str] | None = None
    helper: str | None = None
    needs_helper: Callable[[Attrs], bool] | None = None  # whether a node uses `helper` (None: always)
    imports: tuple[str, ...] = ()
    # a `module` that is an nn.Parameter of the block (a layer scale): how forward uses it, given
    # the input's variable and the attribute (`x * self.layer_scale`)
    apply: Callable[[str, str], str] | None = None
    # a `module` called other than as `attr(x)`: the forward expression, given the input's variable
    # and the attribute (`self.attn(x, x, x, need_weights=False)[0]`)
    forward: Callable[[str, str], str] | None = None
    # the inverse, for `archc import` (archlang/importer): the PyTorch forms that are this op —
    # module classes (`nn.Conv2d`, `torchvision.ops.misc.Permute`), functions (`F.relu`,
    # `torch.flatten`, `operator.add`) and tensor methods (`Tensor.relu`) — and `read`, which
    # takes one use of them (a Site: `.module`, `.arg(i, name, default)`, `.layout`, `.in_dims`,
    # `.param`) and gives the op's arguments; None when the use is another op's form, NoForm
    # (with the reason) when no op can write it
    torch_types: tuple[str, ...] = ()
    read: Callable[[Any], dict[str, Any] | None] | None = None

    def __post_init__(self) -> None:
        assert (self.module is None) != (self.call is None), "an op is emitted as a module or as a call"


@dataclass(frozen=True)
class Draw:
    """How diagrams draw one node of the op."""

    fill: str = "white"
    shape: str = "box"  # a graphviz node shape
    text: str | None = None  # a fixed label (`+`, `concat`); None: the op's label
    compact: bool = False  # a small node without a fill (merges)


@dataclass(frozen=True)
class Example:
    """A line that uses the op, and the input it runs on: the registry test compiles it,
    builds the PyTorch module and compares its shape, parameters and MACs with torch."""

    text: str
    input: str = "8x12x12"


@dataclass(frozen=True)
class Saved:
    """One tensor an op keeps for its backward pass in PyTorch (the training-memory report,
    archlang/backends/memory.py): one of its inputs, its output, or a tensor of its own (a mask,
    pool indices, normalisation statistics, attention's inner products).

    An input or the output is a value of the graph: two ops that keep the same value (a ReLU's
    output and the next conv's input) keep one tensor.  `copy_if_strided`: an input that is a
    strided view (a permute, a slice) is kept as a contiguous copy of its own instead (a Linear
    on 3+ dims reshapes it first).  `for_input`: kept only when that input needs a gradient
    (a product keeps each factor for the other's gradient).  Own tensors count `elements` per
    sample (per forward pass with `per_sample=False`) of `dtype`: `float` (the training dtype),
    `float32` (statistics PyTorch keeps in full precision whatever the dtype), `int64`, or
    `mask` (a dropout mask: one byte on CUDA)."""

    source: str  # input | output | own
    index: int = 0  # which input
    elements: int = 0
    dtype: str = "float"
    per_sample: bool = True
    copy_if_strided: bool = False
    for_input: int | None = None


def _nothing_saved(attrs: Attrs, ins: Inputs, out: TensorType) -> tuple[Saved, ...]:
    return ()


SAVES_INPUT = (Saved("input"),)
SAVES_OUTPUT = (Saved("output"),)


def saves_input(attrs: Attrs, ins: Inputs, out: TensorType) -> tuple[Saved, ...]:
    return SAVES_INPUT


def saves_output(attrs: Attrs, ins: Inputs, out: TensorType) -> tuple[Saved, ...]:
    return SAVES_OUTPUT


@dataclass(frozen=True)
class OpSpec:
    name: str
    family: str  # leaf name stem in generated modules: conv, bn, relu, fc, ...
    infer: Callable[[Attrs, Inputs], TensorType]
    doc: str
    examples: tuple[Example, ...] = ()
    emit: Emit | None = None
    draw: Draw = Draw()
    args: dict[str, Arg] = field(default_factory=dict)
    positional: tuple[str, ...] = ()
    flags: dict[str, tuple[str, Any]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    kernel: bool = False  # takes a KxK suffix (conv3x3)
    # arguments whose default comes from a file setting: {argument: setting}
    settings: dict[str, str] = field(default_factory=dict)
    multi_input: bool = False  # joins several tensors (a sum, a concat)
    flatten_input: bool = False  # wants a vector: an image input is flattened first (dense)
    absorbs_bias: bool = False  # normalises away a bias right before it (`bias=auto` drops that bias)
    passes_bias: bool = False  # hands a constant per channel on unchanged (a sum): `bias=auto` looks past it
    batch_statistics: bool = False  # normalises by batch statistics in training: needs 2+ samples a batch
    view: bool = False  # its output shares its input's memory (reports count no activations)
    main: bool = False  # names a block in short descriptions (`conv1x1 64 > conv3x3 64`)
    params: Count = _zero
    buffers: Count = _zero
    macs: Count = _zero
    # elementwise work outside the headline (BN, activations, pools, adds): the "other ops" column
    other_ops: Count = _zero
    # how reports and diagrams show one node: `conv3x3 128 /2`; None: the op's name
    label: Callable[[Attrs], str] | None = None
    # the MACs split into named parts, shown as sub-rows of the report (attention: the q, k, v
    # projections, q·kᵀ, attention·v and the output projection); they sum to `macs`
    breakdown: Callable[[Attrs, Inputs, TensorType], list[tuple[str, int]]] | None = None
    # what PyTorch keeps for the backward pass when it trains (see Saved; tests/test_memory.py
    # checks every example against torch.autograd.graph.saved_tensors_hooks)
    saved: Callable[[Attrs, Inputs, TensorType], tuple[Saved, ...]] = _nothing_saved
    # how the output holds memory, given whether the input is contiguous: None, a tensor of its
    # own; True or False, the input's memory seen again (a view, or the identity: dropout 0), and
    # whether that view is contiguous.  None given: a `view` op keeps its input's contiguity
    memory_view: Callable[[Attrs, bool], bool | None] | None = None

    @property
    def structural(self) -> bool:
        """Made by the compiler (the input, sums, concats, shortcuts); a program cannot call it."""
        return self.name.startswith("_")


REGISTRY: dict[str, OpSpec] = {}
_BY_NAME: dict[str, OpSpec] = {}
_LOOKUPS: dict[str, tuple[OpSpec, tuple[int, int] | None] | None] = {}
KERNEL_RE = re.compile(r"^([a-z_]+?)([0-9]+)x([0-9]+)$")


def register(spec: OpSpec) -> OpSpec:
    """Adds an op; an incomplete spec fails here, at import, rather than in some backend later."""
    assert spec.name not in REGISTRY, f"op {spec.name} registered twice"
    assert spec.doc, f"op {spec.name} has no doc line"
    if spec.name != "_input":
        assert spec.emit is not None, f"op {spec.name} has no PyTorch emission"
        assert spec.examples, f"op {spec.name} has no example for the tests"
    assert spec.emit is None or spec.emit.module is None or not spec.multi_input, spec.name
    for key, setting in spec.settings.items():
        assert key in spec.args or any(target == key for target, _ in spec.flags.values()), (spec.name, setting)
    REGISTRY[spec.name] = spec
    for name in (spec.name, *spec.aliases):
        assert name not in _BY_NAME, name
        _BY_NAME[name] = spec
    return spec


def inverse(torch_type: str) -> list[OpSpec]:
    """The ops whose PyTorch form `torch_type` is (`nn.Conv2d` → [conv]), for `archc import`."""
    return [spec for spec in REGISTRY.values() if spec.emit is not None and torch_type in spec.emit.torch_types]


def spec_of(op: str) -> OpSpec:
    try:
        return REGISTRY[op]
    except KeyError:
        raise InternalError(f"no op '{op}' is registered") from None


@dataclass(frozen=True)
class Cost:
    """What one node costs at batch 1, by the op's rules."""

    params: int
    buffers: int
    macs: int
    other_ops: int


def node_cost(node: Node) -> Cost:
    spec, a, out, ins = REGISTRY[node.op], node.attrs, node.shape, node.in_shapes
    return Cost(spec.params(a, ins, out), spec.buffers(a, ins, out), spec.macs(a, ins, out),
                spec.other_ops(a, ins, out))


def describe(op: str, attrs: Attrs) -> str:
    """The short text reports and diagrams show for a node: `conv3x3 128 /2`, `dense 1000`."""
    spec = REGISTRY[op]
    return spec.label(attrs) if spec.label else spec.name.lstrip("_")


def lookup(word: str) -> tuple[OpSpec, tuple[int, int] | None] | None:
    """`conv3x3` → (conv spec, (3, 3)); `relu` → (relu spec, None); unknown or structural → None."""
    if word in _LOOKUPS:
        return _LOOKUPS[word]
    if len(_LOOKUPS) < 4096:  # a small cache: programs use a handful of words many times
        _LOOKUPS[word] = _lookup(word)
        return _LOOKUPS[word]
    return _lookup(word)


def _lookup(word: str) -> tuple[OpSpec, tuple[int, int] | None] | None:
    spec = _BY_NAME.get(word)
    if spec is not None and not spec.kernel:
        return None if spec.structural else (spec, None)
    m = KERNEL_RE.match(word)
    if m:
        spec = _BY_NAME.get(m.group(1))
        if spec is not None and spec.kernel and not spec.structural:
            return spec, (int(m.group(2)), int(m.group(3)))
    return None


def bare_kernel_op(word: str) -> OpSpec | None:
    """The kernel op a word names without its size (`conv`, `maxpool`), if it does."""
    spec = _BY_NAME.get(word)
    return spec if spec is not None and spec.kernel and not spec.structural else None


def find(word: str, args=()) -> tuple[OpSpec, tuple[int, int] | None] | None:
    """The op a call names: as `lookup`, and also a kernel op named without its size when the
    call gives the size as a value (`conv c kernel=k`): then (spec, None)."""
    found = lookup(word)
    if found is None and any(getattr(a, "key", None) == "kernel" for a in args):
        spec = bare_kernel_op(word)
        if spec is not None:
            return spec, None
    return found


def arg_keys(spec: OpSpec) -> dict[str, Arg]:
    """The keyword arguments a call of the op may give: its own, and `kernel` for a kernel op."""
    return {**spec.args, "kernel": KERNEL_ARG} if spec.kernel else spec.args


def user_words() -> list[str]:
    """Names a user can write, for 'did you mean' hints (kernel ops shown as conv3x3)."""
    words = []
    for name, spec in _BY_NAME.items():
        if spec.structural:
            continue
        if spec.kernel:
            words += [f"{name}{k}x{k}" for k in (1, 3, 5, 7)]
        else:
            words.append(name)
    return words


# ---- argument checks ----


def whole(value) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise ArgError(f"must be a whole number, not {value:g}")
        value = int(value)
    return value


def positive_int(value) -> int:
    value = whole(value)
    if value < 1:
        raise ArgError(f"must be at least 1, not {value}")
    return value


def nonneg_int(value) -> int:
    value = whole(value)
    if value < 0:
        raise ArgError(f"cannot be negative ({value})")
    return value


def probability(value) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ArgError(f"must be in [0, 1), not {value:g}")
    return value


def positive_float(value) -> float:
    value = float(value)
    if not value > 0:
        raise ArgError(f"must be positive, not {value:g}")
    return value


KERNEL_ARG = Arg(positive_int)


def switch(value) -> bool:
    """An argument set by flag words only (`ceil`, `exclude_pad`), never by a value."""
    if isinstance(value, bool):
        return value
    raise ArgError("is set by its flag word, not by a value")


def padding_value(value):
    if value in ("same", "valid"):
        return value
    return nonneg_int(value)


def need_image(op: str, inp: TensorType) -> None:
    if not inp.is_image:
        hint = ""
        if inp.layout is Layout.GRID:
            hint = "; `channels_first` turns it back into CxHxW"
        elif inp.layout is Layout.TOKENS:
            hint = "; token ops are dense, layernorm, mha and the elementwise ones"
        elif inp.layout is Layout.WINDOWS:
            hint = "; `window_departition` or `grid_departition` turns windows back into CxHxW"
        raise ShapeError(f"{op} needs a CxHxW input, but gets {inp.layout.the} {inp}{hint}")


def need_layout(op: str, inp: TensorType, *layouts: Layout) -> None:
    if inp.layout not in layouts:
        wanted = " or ".join(layout.value for layout in layouts)
        raise ShapeError(f"{op} needs a {wanted} input, but gets {inp.layout.the} {inp}")


def out_size(size: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    """floor((in + 2p - d(k-1) - 1) / s) + 1, PyTorch's rule for convs and pools; with `ceil`
    (a pool's ceil_mode) rounded up instead, but a last window must start inside the input or
    its left padding, as PyTorch has it."""
    if not ceil:
        return (size + 2 * p - d * (k - 1) - 1) // s + 1
    if is_symbolic((size, k, s, p)):
        # staged: ceil((size + 2p - k) / s) + 1 as a floor division; PyTorch's correction (a last
        # window starting in the right padding is dropped) can apply only where p + s - 1 >= k
        if is_symbolic((k, s, p)) or p + s - 1 >= d * (k - 1) + 1:
            raise symbolic.Unstageable("a ceil-mode pool's size is decided by its values")
        return symbolic.floordiv(size + 2 * p - d * (k - 1) - 1 + s - 1, s) + 1
    out = -(-(size + 2 * p - d * (k - 1) - 1) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    return out


def resolve_padding(padding, kernel: tuple[int, int], dilation: int = 1) -> tuple[int, int]:
    if padding == "same":
        return (dilation * (kernel[0] - 1) // 2, dilation * (kernel[1] - 1) // 2)
    if padding == "valid":
        return (0, 0)
    return (padding, padding)


def spatial(op: str, inp: TensorType, kernel, stride, padding, dilation: int = 1,
            ceil: bool = False) -> tuple[int, int]:
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    h = out_size(inp.h, kernel[0], sh, padding[0], dilation, ceil)
    w = out_size(inp.w, kernel[1], sw, padding[1], dilation, ceil)
    if h < 1 or w < 1:
        raise ShapeError(
            f"{op} on {inp} leaves a spatial size of {h}x{w}: the input is smaller than the "
            f"kernel{' plus dilation' if dilation > 1 else ''}"
        )
    return h, w


def subsample_stride(inp: TensorType, target) -> int:
    """The stride s with ceil(in / s) = out on both axes, as a 1x1 conv or a slice ::s takes."""
    h, w = target[1], target[2]
    if is_symbolic((inp.dims, h, w)):  # staged: the stride as an expression
        sh, sw = symbolic.subsample_stride(inp.h, h), symbolic.subsample_stride(inp.w, w)
        if sh != sw:
            raise symbolic.Unstageable(f"a skip subsampled by {sh} and {sw}")
        return sh
    s = -(-inp.h // h)
    if h > inp.h or w > inp.w or -(-inp.h // s) != h or -(-inp.w // s) != w:
        raise ShapeError(f"no stride takes the skip from {inp.h}x{inp.w} to {h}x{w}")
    return s


# Importing the op modules registers them.
from archlang.compiler.ops import layers as _layers  # noqa: E402,F401
from archlang.compiler.ops import maxvit as _maxvit  # noqa: E402,F401
from archlang.compiler.ops import sampling as _sampling  # noqa: E402,F401
from archlang.compiler.ops import swin as _swin  # noqa: E402,F401
from archlang.compiler.ops import tokens as _tokens  # noqa: E402,F401
