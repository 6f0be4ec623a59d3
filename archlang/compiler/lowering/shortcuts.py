"""Skip lowering: a `skip` branch of a sum is the identity when its shape fits the sum, and
otherwise, by the shortcut policy, dropped (`optional`), zero-padded (`pad`, He et al. option
A) or projected (`project`, option B; `always`, option C) by the rule for its layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from archlang.compiler import ops
from archlang.compiler.ir import Layout, Role, Scope, ScopeKind, TensorType
from archlang.compiler.ops import ShapeError
from archlang.compiler.symbolic import is_symbolic
from archlang.errors import ArchError, Span, did_you_mean
from archlang.frontend import ast

if TYPE_CHECKING:
    from archlang.compiler.elaborate import Elaborator, Val
    from archlang.compiler.values import Env

SKIP_POLICIES = ("pad", "project", "optional")


def skip_policy(sk: ast.Call, env: Env) -> str:
    policy = env.setting("shortcut")
    chosen: ast.Arg | None = None
    for arg in sk.args:
        word = arg.value.name if isinstance(arg, ast.Positional) and isinstance(arg.value, ast.Name) else None
        if word not in SKIP_POLICIES:
            raise ArchError("skip takes one flag: pad, project or optional", arg.span,
                            hint=did_you_mean(word, SKIP_POLICIES) if word else None)
        if chosen is not None:
            raise ArchError("skip takes only one of pad, project, optional", arg.span)
        chosen, policy = arg, word
    return policy


def lower_skip(el: Elaborator, sk: ast.Call, x: Val, target: TensorType, scope: Scope, env: Env) -> Val | None:
    """The tensor a skip branch adds to a sum of shape `target`; None when it adds nothing."""
    policy = skip_policy(sk, env)
    if el.plain:
        return None
    scope.skips += 1
    ordinal = scope.skips
    if x.shape == target and policy != "always":
        if policy == "optional":  # the sum records which input was optional (naming ignores the join)
            el.optional_fit = []
        return x
    condition = None
    if el.staged and policy != "always" and x.shape.layout == target.layout:
        # staged: the shapes differ as expressions; where they may be equal for some values
        # of the parameters, the shortcut exists only where they differ
        pairs = [(a, b) for a, b in zip(x.shape.dims, target.dims, strict=True) if a != b]
        if any(is_symbolic(a) or is_symbolic(b) for a, b in pairs):
            if policy == "optional":  # added where the shapes agree: the sum records when
                el.optional_fit = [(a, b) for a, b in pairs]
                return x
            condition = pairs
    if policy == "optional":
        el.ir.notes.append(f"{sk.span}: `skip optional` dropped: its input {x.shape} differs from the sum's {target}")
        return None
    if policy == "pad":
        pad = ops.REGISTRY["_pad"]
        attrs = {"target": target.dims}
        try:
            out = pad.infer(attrs, [x.shape])
        except ShapeError as err:
            raise ArchError(str(err), sk.span, hint=_shrunk_hint(x.shape, target, env)) from None
        ws = el.open_scope(ScopeKind.SHORTCUT, sk.span, scope)
        ws.condition, ws.ordinal = condition, ordinal
        ws.label = _named(env)
        return el.node(pad.name, attrs, [x], out, sk.span, ws, role=Role.PAD,
                       note="shortcut option A: subsample, zero-pad channels")
    if x.shape.layout != target.layout or target.layout not in PROJECTIONS:
        raise ArchError(f"cannot project a skip from {x.shape} to {target}", sk.span,
                        hint="a skip joins tensors of the same kind: both CxHxW, or both vectors")
    ws = el.open_scope(ScopeKind.SHORTCUT, sk.span, scope)
    ws.condition, ws.ordinal = condition, ordinal
    ws.label = _named(env)
    return PROJECTIONS[target.layout](el, x, target, sk.span, ws, env)


def _named(env: Env) -> str | None:
    """`set shortcut_name = downsample`: the block is `downsample`, its layers numbered
    (`downsample.0`, `downsample.1`), as torchvision names a ResNet's projection."""
    return "downsample" if env.setting("shortcut_name") == "downsample" else None


def _shrunk_hint(x: TensorType, target: TensorType, env: Env) -> str | None:
    """The commonest slip in a residual block: unpadded convs shrink the other branch, so no
    stride takes the skip to its size (56x56 to 52x52)."""
    if x.layout is not Layout.IMAGE or is_symbolic((x.dims, target.dims)):
        return None
    if target.h > x.h or target.w > x.w or (target.h, target.w) == (x.h, x.w):
        return None
    lost = f"the other branch shrinks {x.h}x{x.w} to {target.h}x{target.w}"
    if env.setting("padding") == "same":
        return f"{lost}: a conv or pool there is unpadded (`valid` or padding=0); pad it with `same`"
    return (f"{lost}: its convs are unpadded (padding = valid is the default); pad them with `same` "
            f"(conv3x3 {target.c} same), or write `set padding = same` at the top of the file")


def _project_image(el: Elaborator, x: Val, target: TensorType, span: Span, ws: Scope, env: Env) -> Val:
    """Ws on images: a 1x1 conv with the stride that fits the sum, no bias, then BN."""
    try:
        stride = ops.subsample_stride(x.shape, target.dims)
    except ShapeError as err:
        raise ArchError(f"cannot project the skip: {err}", span, hint=_shrunk_hint(x.shape, target, env)) from None
    given = {"out": target.c, "stride": stride, "padding": 0, "bias": False}
    y = el.apply(ops.REGISTRY["conv"], (1, 1), given, x, span, ws, env, role=Role.PROJECTION)
    return el.apply(ops.REGISTRY["bn"], None, {}, y, span, ws, env, role=Role.PROJECTION)


def _project_features(el: Elaborator, x: Val, target: TensorType, span: Span, ws: Scope, env: Env) -> Val:
    """Ws on vectors, tokens and channels-last images: a Linear without bias (of each token or
    position: the lengths or sizes must agree already)."""
    if x.shape.with_c(0) != target.with_c(0):
        raise ArchError(f"cannot project the skip from {x.shape} to {target}: a projection changes only the "
                        "features", span)
    return el.apply(ops.REGISTRY["dense"], None, {"out": target.c, "bias": False}, x, span, ws, env,
                    role=Role.PROJECTION)


# the projection rule of each layout
PROJECTIONS: dict[Layout, Callable[..., Val]] = {Layout.IMAGE: _project_image, Layout.VECTOR: _project_features,
                                                 Layout.TOKENS: _project_features, Layout.GRID: _project_features}
