"""Call replay: a def call that repeats an earlier one (same def, argument values, input shape,
settings and call chain) expands to the same nodes, so its nodes and blocks are copied from
the earlier expansion instead of interpreting the body again (ResNet-1202's stages)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from archlang.compiler.ir import NetworkIR, Node, Scope, TensorType

if TYPE_CHECKING:
    from archlang.compiler.elaborate import Val
    from archlang.compiler.values import Env
    from archlang.frontend import ast


@dataclass(frozen=True)
class Expansion:
    """What one def call added: its scope, the ids of its nodes [first, end), its input and output."""

    scope: Scope
    first: int
    end: int
    input: Val
    output: Val
    notes: list[str]

    @property
    def size(self) -> int:
        return self.end - self.first


class CallMemo:
    def __init__(self) -> None:
        self._done: dict[tuple, Expansion] = {}

    @staticmethod
    def key(d: ast.Def, home, values: dict[str, Any], inp: TensorType, env: Env) -> tuple:
        return (id(d), id(home), tuple((k, type(v), v) for k, v in values.items()), inp.dims,
                tuple(sorted(env.net_settings.items())), tuple(name for name, _ in env.calls))

    def get(self, key: tuple) -> Expansion | None:
        return self._done.get(key)

    def record(self, key: tuple, ir: NetworkIR, scope: Scope, first: int, start: Val, out: Val, notes: int) -> None:
        """Keeps a finished call for replay, if its nodes read nothing but its own input."""
        if all(i >= first or i == start.node for n in ir.nodes[first:] for i in n.inputs):
            self._done[key] = Expansion(scope, first, len(ir.nodes), start, out, ir.notes[notes:])

    @staticmethod
    def replay(ir: NetworkIR, done: Expansion, x: Val, span, scope: Scope) -> Val:
        """Adds a copy of an earlier call's nodes and scopes to `scope`, fed by `x` instead of its input."""
        offset = len(ir.nodes) - done.first
        scopes: dict[int, Scope] = {}
        for old in done.scope.walk_scopes():
            parent = scopes[id(old.parent)] if old is not done.scope else scope
            new = Scope(old.kind, span if old is done.scope else old.span, parent,
                        def_name=old.def_name, label=old.label)
            new.repeat = old.repeat
            new.call, new.condition, new.skips, new.ordinal = old.call, old.condition, old.skips, old.ordinal
            new.from_repeat = old.from_repeat and old is not done.scope  # the caller marks its own
            if old.entry is not None:
                new.entry = x.node if old.entry < done.first else old.entry + offset
            scopes[id(old)] = new
        copies: dict[int, Node] = {}
        for old in ir.nodes[done.first:done.end]:
            node = replace(old, id=old.id + offset, attrs=dict(old.attrs),
                           inputs=tuple(x.node if i < done.first else i + offset for i in old.inputs))
            ir.add(node)
            copies[old.id] = node
        for old_id in range(done.first, done.end):  # references inside the call (a def body's `@label`s)
            if old_id in ir.ref_names:
                ir.ref_names.setdefault(old_id + offset, ir.ref_names[old_id])
        for (src, dst), label in list(ir.ref_edges.items()):
            if done.first <= dst < done.end:
                ir.ref_edges.setdefault((x.node if src < done.first else src + offset, dst + offset), label)
                if src < done.first:  # the body reads its input by `@input`: so does the copy
                    ir.ref_names.setdefault(x.node, ir.ref_names.get(src, label))
        for old in done.scope.walk_scopes():
            scopes[id(old)].items = [scopes[id(i)] if isinstance(i, Scope) else copies[i.id] for i in old.items]
        scope.items.append(scopes[id(done.scope)])
        ir.notes.extend(done.notes)
        out = done.output
        return x if out.node == done.input.node else type(x)(out.node + offset, out.shape)
