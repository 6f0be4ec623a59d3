"""How reports and diagrams name what a block holds: `basic ×4`, `inception`,
`conv1x1 96 > conv3x3 128`."""

from __future__ import annotations

from archlang.compiler.ir import Node, Role, Scope, ScopeKind
from archlang.compiler.ops import REGISTRY, describe


def chain(nodes: list[Node]) -> str:
    """`conv1x1 64 > bn > relu`; for longer blocks only the convs, denses and pools."""
    layers = [x for x in nodes if x.role is Role.LAYER]
    if len(layers) > 4:
        main = [x for x in layers if REGISTRY[x.op].main]
        if not 1 <= len(main) <= 3:
            return f"{len(layers)} layers"
        layers = main
    return " > ".join(describe(x.op, x.attrs) for x in layers)


def describe_block(scope: Scope) -> str:
    """A repeated stage by its def and count, a def call by its def, anything else by its layers."""
    nodes = list(scope.walk_nodes())
    if scope.is_shortcut:
        return shortcut_kind(nodes)
    children = [i for i in scope.items if isinstance(i, Scope)]
    if children and len(children) == len(scope.items) and all(c.kind is ScopeKind.CALL for c in children):
        defs = {c.def_name for c in children}
        if len(defs) == 1:
            return f"{defs.pop()} ×{len(children)}"
    if scope.def_name:
        return scope.def_name
    return chain(nodes)


def shortcut_kind(nodes) -> str:
    """What an inserted shortcut is, by its nodes' roles."""
    return "zero-pad shortcut" if any(n.role is Role.PAD for n in nodes) else "Ws projection"
