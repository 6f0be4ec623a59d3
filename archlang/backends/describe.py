"""How reports and diagrams name what a block holds: `basic 64 ×3`, `fire 16 64`,
`conv1x1 96 > conv3x3 128`."""

from __future__ import annotations

from archlang.compiler.ir import Node, Role, Scope, ScopeKind
from archlang.compiler.ops import REGISTRY, describe
from archlang.frontend import ast

MAIN_SHOWN = 4  # a block of more main layers is described by its count of layers


def chain(nodes: list[Node]) -> str:
    """A block by its main layers (convs, denses, pools, attention: `conv1x1 96 > conv3x3 128`),
    never its norms, activations and dropouts, whatever its length, so that the branches of one
    join read alike; a block of none of them by all its layers (`bn > relu`)."""
    layers = [x for x in nodes if x.role is Role.LAYER]
    main = [x for x in layers if REGISTRY[x.op].main] or layers
    if not 1 <= len(main) <= MAIN_SHOWN:
        return f"{len(layers)} layers"
    return " > ".join(describe(x.op, x.attrs) for x in main)


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def call_text(scope: Scope) -> str:
    """A def call as it could be written: the def, the values given to parameters without a
    default, `/stride`, then the others given as `key=value` (`fire 16 64`, `basic 128 /2`);
    a value equal to its parameter's default number is left out (`basic 64`, not `basic 64 /1`)."""
    if scope.call is None:
        return scope.def_name or ""
    args = scope.call.args
    given = [p for p in scope.call.definition.params if p.name in scope.call.given
             and not (isinstance(p.default, ast.Num) and p.default.value == args[p.name])]
    words = [_value(args[p.name]) for p in given if p.default is None and p.name != "stride"]
    words += [f"/{_value(args[p.name])}" for p in given if p.name == "stride"]
    words += [f"{p.name}={_value(args[p.name])}" for p in given if p.default is not None and p.name != "stride"]
    return " ".join([scope.def_name, *words])


def describe_block(scope: Scope) -> str:
    """A repeated stage by its def call and count (`basic 64 ×3`; the def alone when the calls
    differ), a def call as written (`fire 16 64`), anything else by its layers."""
    nodes = list(scope.walk_nodes())
    if scope.is_shortcut:
        return shortcut_kind(nodes)
    children = [i for i in scope.items if isinstance(i, Scope)]
    if children and len(children) == len(scope.items) and all(c.kind is ScopeKind.CALL for c in children):
        defs = {c.def_name for c in children}
        if len(defs) == 1:
            calls = {call_text(c) for c in children}
            return f"{calls.pop() if len(calls) == 1 else defs.pop()} ×{len(children)}"
    if scope.def_name:
        return call_text(scope)
    return chain(nodes)


def shortcut_kind(nodes) -> str:
    """What an inserted shortcut is, by its nodes' roles."""
    return "zero-pad shortcut" if any(n.role is Role.PAD for n in nodes) else "Ws projection"
