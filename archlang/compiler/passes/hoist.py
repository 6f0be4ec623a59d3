"""Flattens the nesting a reader would not write by hand, before naming.

- A def call that is the only thing in its block takes the block's place, so
  `layer1 = stage 64 3` holds blocks layer1.0, layer1.1, ... as in torchvision.
- A labelled line that holds a single layer (with the flatten the compiler may put before
  it) becomes that layer: `fc = dense 10` is self.fc, whose weight is `fc.weight`."""

from __future__ import annotations

from dataclasses import replace

from archlang.compiler.ir import NetworkIR, Node, Role, Scope, ScopeKind

_HOSTS = (ScopeKind.LABEL, ScopeKind.CALL, ScopeKind.NETWORK)


def hoist(ir: NetworkIR) -> None:
    _hoist(ir, ir.root)


def _hoist(ir: NetworkIR, scope: Scope) -> None:
    for item in scope.items:
        if isinstance(item, Scope):
            _hoist(ir, item)
    while (len(scope.items) == 1 and isinstance(scope.items[0], Scope) and scope.items[0].kind is ScopeKind.CALL
           and scope.kind in _HOSTS):
        child = scope.items[0]
        scope.items = child.items
        scope.repeat = scope.repeat or child.repeat
        scope.def_name = scope.def_name or child.def_name  # what the block is, for reports and diagrams
        for item in scope.items:
            if isinstance(item, Scope):
                item.parent = scope
    items: list[Node | Scope] = []
    for item in scope.items:
        layer = _single_layer(item)
        if layer is None:
            items.append(item)
            continue
        for node in item.items:
            node = replace(node, name=item.label) if node is layer else node
            ir.nodes[node.id] = node
            items.append(node)
    scope.items = items


def _single_layer(item) -> Node | None:
    """The one layer of a labelled block that holds nothing else but implicit nodes."""
    if not (isinstance(item, Scope) and item.kind is ScopeKind.LABEL):
        return None
    if not all(isinstance(i, Node) for i in item.items):
        return None
    layers = [i for i in item.items if i.role is Role.LAYER]
    if len(layers) != 1 or any(i.role not in (Role.LAYER, Role.IMPLICIT) for i in item.items):
        return None
    return layers[0]
