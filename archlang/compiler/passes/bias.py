"""`bias=auto`: a conv or dense keeps its bias unless a layer after it normalises the bias away.

A bias adds one constant per channel.  A layer whose spec says `absorbs_bias` (bn) subtracts
each channel's mean, so a constant added right before it is lost; a layer whose spec says
`passes_bias` (a sum, a concat on channels) hands the constant on to its output unchanged.  So
a bias is dropped when every path from its layer reaches an absorbing layer through passing
ones only: `conv > bn`, and also the last conv of a pre-activation block, whose sum feeds the
next block's bn (`bn > relu > conv3x3 c > bn > relu > conv3x3 c | skip`, then `bn` again), as
the pre-activation ResNets and Wide ResNets are written by hand (every conv without bias)."""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import replace

from archlang.compiler.ir import NetworkIR
from archlang.compiler.ops import REGISTRY


def absorbed(nodes: Sequence[tuple[int, str, Sequence[int]]], ends: dict[int, bool]) -> dict[int, bool]:
    """Whether a constant per channel added to each node's output is normalised away after it.

    `nodes` are (id, op, ids of its consumers) in topological order; `ends` the outputs of the
    graph, each with whether what follows the graph absorbs the constant (for a def's body: the
    layer after the call; for a network: nothing does)."""
    ops = {i: op for i, op, _ in nodes}
    out: dict[int, bool] = {}
    for i, _op, users in reversed(nodes):
        if i in ends:
            out[i] = ends[i]
        else:
            out[i] = bool(users) and all(REGISTRY[ops[u]].absorbs_bias or (REGISTRY[ops[u]].passes_bias and out[u])
                                         for u in users)
    return out


def ir_absorbed(ir: NetworkIR, tail: bool = False, ignoring: Set[tuple[int, int]] = frozenset()) -> dict[int, bool]:
    """`absorbed` of every node of `ir`; `tail`: whether the layer after `ir`'s output absorbs;
    `ignoring`: edges (source, consumer) to leave out (a `skip optional` that may be dropped)."""
    ends = {h.node: False for h in ir.heads} | {ir.output.id: tail}
    return absorbed([(n.id, n.op, [c.id for c in ir.consumers(n.id) if (n.id, c.id) not in ignoring])
                     for n in ir.nodes], ends)


def resolve_bias(ir: NetworkIR, tail: bool = False) -> None:
    """Every `bias=auto` decided; `tail`: whether the layer after `ir` absorbs (a def's body)."""
    auto = [n for n in ir.nodes if n.attrs.get("bias") == "auto"]
    if not auto:
        return
    gone = ir_absorbed(ir, tail)
    ir.replace([replace(n, attrs={**n.attrs, "bias": not gone[n.id]}) for n in auto])
