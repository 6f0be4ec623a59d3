"""One test over the op registry: every example of every op compiles, and the PyTorch module
emitted for it agrees with torch itself on the output shape, the parameter and buffer counts
and the MACs (FlopCounterMode / 2).  A new op is covered by adding its entry (with examples)."""

from __future__ import annotations

import pytest

import archlang
from archlang.compiler.ops import REGISTRY

torch = pytest.importorskip("torch")
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

CASES = [(spec.name, i, ex) for spec in REGISTRY.values() for i, ex in enumerate(spec.examples)]


def test_every_op_has_examples_and_every_callable_op_is_reachable():
    assert {name for name, _, _ in CASES} == set(REGISTRY) - {"_input"}
    assert len(CASES) >= 2 * len(REGISTRY) - 10


@pytest.mark.parametrize(("op", "index", "example"), CASES, ids=[f"{op}-{i}" for op, i, _ in CASES])
def test_example_agrees_with_torch(op, index, example):
    source = f"network example:\n    input {example.input}\n    {example.text}\n"
    net = archlang.compile(source, f"{op}.arch")["example"]
    assert op in {n.op for n in net.nodes}, f"the example {example.text!r} does not use {op}"
    module = net.to_torch().eval()
    torch.manual_seed(index)
    x = torch.randn(2, *net.input_shape)
    # attention counted on the plain path: the fused ones hide their matmuls from the counter
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            y = module(x)
            # MACs are counted at batch 1 (some, as Swin V2's position-bias MLP, run once a batch)
            with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
                module(x[:1])
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    assert tuple(y.shape) == (2, *net.output_shape)
    assert sum(p.numel() for p in module.parameters()) == net.params
    assert sum(b.numel() for b in module.buffers()) == net.buffers
    assert counter.get_total_flops() == 2 * net.macs  # FLOPs = 2 x MACs
    assert torch.isfinite(y).all()
    spec = REGISTRY[op]
    if spec.breakdown is not None:  # the named parts of the MACs add up to them
        for node in net.ir.nodes:
            if node.op == op:
                parts = spec.breakdown(node.attrs, node.in_shapes, node.shape)
                assert sum(m for _, m in parts) == spec.macs(node.attrs, node.in_shapes, node.shape)
