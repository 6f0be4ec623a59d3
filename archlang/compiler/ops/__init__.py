"""The op registry: each built-in op keeps its arguments, shape rule, parameter, buffer and
MAC counts (and, in the PyTorch backend's table, its emission) in one OpSpec."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archlang.compiler.ir import Node, TensorType


class ShapeError(Exception):
    """An op cannot take its input; the elaborator adds the source span."""


class ArgError(Exception):
    """An argument value is invalid; the elaborator adds the span of the argument."""


Attrs = dict[str, Any]


def _zero(attrs: Attrs, inp: TensorType, out: TensorType) -> int:
    return 0


@dataclass(frozen=True)
class Arg:
    """One argument an op accepts: its check/convert function and default (None: required)."""

    check: Callable[[Any], Any]
    default: Any = None
    required: bool = False


@dataclass(frozen=True)
class OpSpec:
    name: str
    family: str  # leaf name stem in generated modules: conv, bn, relu, fc, ...
    infer: Callable[[Attrs, TensorType], TensorType]
    args: dict[str, Arg] = field(default_factory=dict)
    positional: tuple[str, ...] = ()
    flags: dict[str, tuple[str, Any]] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    kernel: bool = False  # takes a KxK suffix (conv3x3)
    params: Callable[[Attrs, TensorType, TensorType], int] = _zero
    buffers: Callable[[Attrs, TensorType, TensorType], int] = _zero
    macs: Callable[[Attrs, TensorType, TensorType], int] = _zero
    # elementwise work outside the headline (BN, activations, pools, adds): the "other ops" column
    other_ops: Callable[[Attrs, TensorType, TensorType], int] = _zero
    # how reports and diagrams show one node: `conv3x3 128 /2`; None: the op's name
    label: Callable[[Attrs], str] | None = None
    doc: str = ""


REGISTRY: dict[str, OpSpec] = {}
_BY_NAME: dict[str, OpSpec] = {}
BIAS_FLAGGED: set[str] = set()  # ops whose flags set `bias` (so the `bias` setting applies to them)
_LOOKUPS: dict[str, tuple[OpSpec, tuple[int, int] | None] | None] = {}
KERNEL_RE = re.compile(r"^([a-z_]+?)([0-9]+)x([0-9]+)$")


def register(spec: OpSpec) -> OpSpec:
    REGISTRY[spec.name] = spec
    if any(target == "bias" for target, _ in spec.flags.values()):
        BIAS_FLAGGED.add(spec.name)
    for name in (spec.name, *spec.aliases):
        assert name not in _BY_NAME, name
        _BY_NAME[name] = spec
    return spec


@dataclass(frozen=True)
class Cost:
    """What one node costs at batch 1, by the op's rules."""

    params: int
    buffers: int
    macs: int
    other_ops: int


def node_cost(node: Node) -> Cost:
    spec, a, out = REGISTRY[node.op], node.attrs, node.shape
    inp = node.in_shapes[0] if node.in_shapes else out
    return Cost(spec.params(a, inp, out), spec.buffers(a, inp, out), spec.macs(a, inp, out),
                spec.other_ops(a, inp, out))


def describe(op: str, attrs: Attrs) -> str:
    """The short text reports and diagrams show for a node: `conv3x3 128 /2`, `dense 1000`."""
    spec = REGISTRY[op]
    return spec.label(attrs) if spec.label else spec.name.lstrip("_")


def lookup(word: str) -> tuple[OpSpec, tuple[int, int] | None] | None:
    """`conv3x3` → (conv spec, (3, 3)); `relu` → (relu spec, None); unknown → None."""
    if word in _LOOKUPS:
        return _LOOKUPS[word]
    if len(_LOOKUPS) < 4096:  # a small cache: programs use a handful of words many times
        _LOOKUPS[word] = _lookup(word)
        return _LOOKUPS[word]
    return _lookup(word)


def _lookup(word: str) -> tuple[OpSpec, tuple[int, int] | None] | None:
    spec = _BY_NAME.get(word)
    if spec is not None and not spec.kernel:
        return spec, None
    m = KERNEL_RE.match(word)
    if m:
        spec = _BY_NAME.get(m.group(1))
        if spec is not None and spec.kernel:
            return spec, (int(m.group(2)), int(m.group(3)))
    return None


def user_words() -> list[str]:
    """Names a user can write, for 'did you mean' hints (kernel ops shown as conv3x3)."""
    words = []
    for name, spec in _BY_NAME.items():
        if spec.kernel:
            words += [f"{name}{k}x{k}" for k in (1, 3, 5, 7)]
        elif not name.startswith("_"):
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


def padding_value(value):
    if value in ("same", "valid"):
        return value
    return nonneg_int(value)


def need_image(op: str, inp: TensorType) -> None:
    if inp.is_vector:
        raise ShapeError(f"{op} needs a CxHxW input, but gets the feature vector {inp}")


def out_size(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    """floor((in + 2p - d(k-1) - 1) / s) + 1, PyTorch's rule for convs and pools."""
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def resolve_padding(padding, kernel: tuple[int, int], dilation: int = 1) -> tuple[int, int]:
    if padding == "same":
        return (dilation * (kernel[0] - 1) // 2, dilation * (kernel[1] - 1) // 2)
    if padding == "valid":
        return (0, 0)
    return (padding, padding)


def spatial(op: str, inp: TensorType, kernel, stride, padding, dilation: int = 1) -> tuple[int, int]:
    sh, sw = stride if isinstance(stride, tuple) else (stride, stride)
    h = out_size(inp.h, kernel[0], sh, padding[0], dilation)
    w = out_size(inp.w, kernel[1], sw, padding[1], dilation)
    if h < 1 or w < 1:
        raise ShapeError(
            f"{op} on {inp} leaves a spatial size of {h}x{w}: the input is smaller than the "
            f"kernel{' plus dilation' if dilation > 1 else ''}"
        )
    return h, w


def subsample_stride(inp: TensorType, target) -> int:
    """The stride s with ceil(in / s) = out on both axes, as a 1x1 conv or a slice ::s takes."""
    h, w = target[1], target[2]
    s = -(-inp.h // h)
    if h > inp.h or w > inp.w or -(-inp.h // s) != h or -(-inp.w // s) != w:
        raise ShapeError(f"no stride takes the skip from {inp.h}x{inp.w} to {h}x{w}")
    return s


# Importing the op modules registers them.
from archlang.compiler.ops import layers as _layers  # noqa: E402,F401
