"""Flattens the nesting a reader would not write by hand, before naming.

- A def call that is the only thing in its block takes the block's place, so
  `layer1 = stage 64 3` holds blocks layer1.0, layer1.1, ... as in torchvision (not one a
  repeat made: `layer = basic 64 x1` is a list of one, as `x2` is a list of two).
- A labelled line that holds a single layer (with the flatten the compiler may put before
  it, or the sum with a `skip optional` after it) becomes that layer: `fc = dense 10` is
  self.fc, whose weight is `fc.weight`."""

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
    while scope.kind in _HOSTS:
        # the joins of `skip optional`s do not count: whether they exist depends on values
        core = [i for i in scope.items if not (isinstance(i, Node) and _optional_join(i))]
        if not (len(core) == 1 and isinstance(core[0], Scope) and core[0].kind is ScopeKind.CALL
                and not core[0].from_repeat):
            break
        child = core[0]
        at = scope.items.index(child)
        if len(scope.items) == 1:
            scope.call = scope.call or child.call
        scope.items = scope.items[:at] + child.items + scope.items[at + 1:]
        scope.skips = child.skips
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


def _optional_join(node: Node) -> bool:
    """The sum of a layer and a `skip optional`: whether it exists depends on values, so it
    does not keep a label from naming the layer."""
    return node.role is Role.MERGE and "optional" in node.attrs


def _single_layer(item) -> Node | None:
    """The one layer of a labelled block that holds nothing else but implicit nodes."""
    if not (isinstance(item, Scope) and item.kind is ScopeKind.LABEL):
        return None
    if not all(isinstance(i, Node) for i in item.items):
        return None
    layers = [i for i in item.items if i.role is Role.LAYER]
    if len(layers) != 1 or any(i.role not in (Role.LAYER, Role.IMPLICIT) and not _optional_join(i) for i in item.items):
        return None
    return layers[0]
