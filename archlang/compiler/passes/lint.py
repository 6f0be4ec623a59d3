"""Internal invariants (assertions, not user errors): ids dense, inputs earlier, every node in
exactly one block, qualified names unique and valid."""

from __future__ import annotations

from archlang.compiler.ir import NetworkIR, Role


def lint(ir: NetworkIR) -> None:
    scopes = ir.scopes_of_nodes()
    assert len(scopes) == len(ir.nodes), "a node is in no block, or in two"
    paths = set()
    for i, node in enumerate(ir.nodes):
        assert node.id == i
        assert all(src < i for src in node.inputs), node
        if node.role is not Role.INPUT:  # the input is no module: its name is the report's alone
            assert node.path and node.path not in paths, node.path
            paths.add(node.path)
    for out in ir.outputs:
        assert 0 <= out.node < len(ir.nodes), out
    assert all(0 < i < len(ir.nodes) for i in ir.training_only)
    for scope in ir.root.walk_scopes():
        assert scope is ir.root or scope.path not in paths, scope.path
        paths.add(scope.path)
        if scope is not ir.root:
            _check_block_is_a_function(ir, scope)


def _check_block_is_a_function(ir: NetworkIR, scope) -> None:
    """A block computes a function of the values it reads from outside (one, its input, unless
    a line reads another by reference: `forward(self, x, enc4)`), and only its last node is read
    from outside (the PyTorch backend gives every block a forward that returns one tensor)."""
    outside, last = scope.boundary()
    if last is None:
        return
    assert len(outside) <= 1 or outside - {scope.entry} <= set(ir.ref_names), (scope.path, outside)
    ids = {n.id for n in scope.walk_nodes()}
    for i in ids - {last}:
        assert all(c.id in ids for c in ir.consumers(i)), (scope.path, i)
