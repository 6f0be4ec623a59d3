"""The passes that finish an elaborated NetworkIR, run in this order by `run_passes`:

1. bias      resolve `bias=auto` (no bias where a layer after it normalises it away, through sums)
2. hoist     flatten the nesting a person would not write (a lone def call takes its block's place)
3. naming    give every block and node its one qualified name, and the network its class name
4. lint      check the graph's invariants
"""

from __future__ import annotations

from archlang.compiler.ir import NetworkIR
from archlang.compiler.passes.bias import resolve_bias
from archlang.compiler.passes.hoist import hoist
from archlang.compiler.passes.lint import lint
from archlang.compiler.passes.naming import name_blocks

PASSES = (resolve_bias, hoist, name_blocks, lint)


def run_passes(ir: NetworkIR) -> NetworkIR:
    for p in PASSES:
        p(ir)
    return ir
