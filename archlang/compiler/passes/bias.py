"""`bias=auto`: a conv or dense keeps its bias unless its only consumer normalises it away
(an op whose spec says `absorbs_bias`, such as bn)."""

from __future__ import annotations

from dataclasses import replace

from archlang.compiler.ir import NetworkIR
from archlang.compiler.ops import REGISTRY


def resolve_bias(ir: NetworkIR) -> None:
    changed = []
    for node in ir.nodes:
        if node.attrs.get("bias") == "auto":
            consumers = ir.consumers(node.id)
            bias = not (len(consumers) == 1 and REGISTRY[consumers[0].op].absorbs_bias)
            changed.append(replace(node, attrs={**node.attrs, "bias": bias}))
    ir.replace(changed)
