"""Passes over an elaborated NetworkIR: resolve `bias=auto`, name every block and layer,
and check the graph's invariants."""

from __future__ import annotations

from collections import Counter

from archlang.compiler.ir import NetworkIR, Node, Scope
from archlang.compiler.ops import REGISTRY

NOT_MODULES = ("_input", "_add", "_concat")


def resolve_bias(ir: NetworkIR) -> None:
    """`bias=auto`: no bias on a conv/dense whose only consumer is a BN."""
    for node in ir.nodes:
        if node.attrs.get("bias") == "auto":
            consumers = ir.consumers(node.id)
            node.attrs["bias"] = not (len(consumers) == 1 and consumers[0].op == "bn")


def _hoist(scope: Scope) -> None:
    """Flattens the nesting a reader would not write by hand.

    A def call that is the only thing in its block takes the block's place (so
    `layer1 = stage 64 3` holds blocks layer1.0, layer1.1, ... as in torchvision), and a
    labelled line holding a single layer becomes that layer (`fc = dense 10` → self.fc).
    """
    for item in scope.items:
        if isinstance(item, Scope):
            _hoist(item)
    while len(scope.items) == 1 and isinstance(scope.items[0], Scope) and scope.items[0].kind == "call" \
            and scope.kind in ("label", "call", "network"):
        child = scope.items[0]
        scope.items = child.items
        scope.repeat = scope.repeat or child.repeat
        scope.def_name = scope.def_name or child.def_name  # what the block is, for reports and diagrams
        for item in scope.items:
            if isinstance(item, Scope):
                item.parent = scope
            else:
                item.scope = scope
    for i, item in enumerate(scope.items):
        if isinstance(item, Scope) and item.kind == "label" and len(item.items) == 1 \
                and isinstance(item.items[0], Node) and item.items[0].role == "layer":
            leaf = item.items[0]
            leaf.scope, leaf.name = scope, item.label
            scope.items[i] = leaf


def _family(node: Node) -> str:
    return REGISTRY[node.op].family


def _assign(scope: Scope, prefix: str) -> None:
    taken = {item.label for item in scope.items if isinstance(item, Scope) and item.kind == "label"}
    taken |= {item.name for item in scope.items if isinstance(item, Node) and item.name}
    only_calls = bool(scope.items) and all(isinstance(i, Scope) and i.kind == "call" for i in scope.items)

    def stem(item) -> str:
        if isinstance(item, Node):
            return _family(item)
        return {"ws": "ws", "branch": "branch"}.get(item.kind) or item.def_name or "block"

    totals = Counter(stem(i) for i in scope.items if not (isinstance(i, Scope) and i.kind == "label")
                     and not (isinstance(i, Node) and i.name))
    seen: Counter = Counter()
    for index, item in enumerate(scope.items):
        if isinstance(item, Scope) and item.kind == "label":
            name = item.label
        elif isinstance(item, Node) and item.name:
            name = item.name
        elif only_calls:
            name = str(index)
        else:
            s = stem(item)
            seen[s] += 1
            numbered = totals[s] > 1 or s == "branch"
            name = f"{s}{seen[s]}" if numbered else s
            while name in taken:
                name += "_"
            taken.add(name)
        item.name = name
        item.path = f"{prefix}{name}"
        if isinstance(item, Scope):
            _assign(item, item.path + ".")


def name_blocks(ir: NetworkIR) -> None:
    _hoist(ir.root)
    ir.root.path = ""
    _assign(ir.root, "")
    # merge nodes and the input are not in any scope's items: name them after their scope
    for node in ir.nodes:
        if node.op == "_input":
            node.name = node.path = "input"


def lint(ir: NetworkIR) -> None:
    """Internal invariants (assertions, not user errors): ids dense, inputs earlier, names unique."""
    paths = set()
    for i, node in enumerate(ir.nodes):
        assert node.id == i
        assert all(src < i for src in node.inputs), node
        if node.op not in NOT_MODULES:
            assert node.path and node.path not in paths, node.path
            paths.add(node.path)
