"""The elaborator copies a def call that repeats an earlier one instead of expanding its body
again.  The copy must be indistinguishable from a fresh expansion: every node, name, scope
and note equal, whatever the file."""

from __future__ import annotations

import pytest

import archlang
import archlang.compiler as compiler
from archlang.compiler.elaborate import Elaborator
from archlang.compiler.ir import Scope
from tests.conftest import ROOT, SPECS


class _NoReuse(Elaborator):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw, reuse=False)


def _dump(network: archlang.Network) -> tuple:
    ir = network.ir
    scope_of = ir.scopes_of_nodes()
    nodes = [(n.id, n.op, sorted(n.attrs.items()), n.inputs, n.in_shapes, n.shape, n.span, n.role, n.note,
              n.name, n.path, scope_of[n.id].path) for n in ir.nodes]

    def tree(scope: Scope) -> tuple:
        return (scope.kind, scope.def_name, scope.label, scope.span, scope.path, scope.repeat, scope.container,
                tuple(tree(i) if isinstance(i, Scope) else i.id for i in scope.items))

    return nodes, tree(ir.root), ir.notes, ir.output_id, ir.fingerprint()


def _both(compile_fn, monkeypatch):
    reused = compile_fn()
    with monkeypatch.context() as m:
        m.setattr(compiler, "Elaborator", _NoReuse)
        fresh = compile_fn()
    return reused, fresh


SOURCES = sorted(SPECS.rglob("*.arch")) + [ROOT / "bench" / "cifar_resnet.arch"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_reused_calls_equal_fresh_expansion(path, monkeypatch):
    reused, fresh = _both(lambda: archlang.compile_file(path), monkeypatch)
    assert list(reused.networks) == list(fresh.networks)
    for name in reused.networks:
        assert _dump(reused[name]) == _dump(fresh[name]), name


TRICKY = """
set padding = same

def same_or_not(c) = conv3x3 c > bn | skip optional
def grow(c=in.c*2, stride=1) = conv3x3 c /stride > relu
def ident = skip
def labelled(c):
    a = conv1x1 c
    b = conv3x3 c > relu | skip
def outer(c) = labelled c > labelled c x2

network tricky(c=8):
    input 8x16x16
    same_or_not 8 x3
    (same_or_not 16 > conv1x1 8) x2
    grow > grow > grow /2
    ident x3
    stage = outer c > outer c > outer 2*c
    set bias = off
    tail = outer c > outer c
    gap > dense 10 bias > dense 10
"""


@pytest.mark.parametrize("plain", [False, True])
def test_reuse_with_notes_defaults_settings_and_labels(plain, monkeypatch):
    reused, fresh = _both(lambda: archlang.compile(TRICKY, "t.arch", plain=plain), monkeypatch)
    r, f = reused["tricky"], fresh["tricky"]
    assert _dump(r) == _dump(f)
    # one note per dropped `skip optional`, the copied call's included
    assert len(r.ir.notes) == (0 if plain else 2)
    assert r.params == f.params and r.macs == f.macs


def test_reuse_respects_the_node_budget(monkeypatch):
    import archlang.compiler.elaborate as elaborate
    from archlang.errors import render

    monkeypatch.setattr(elaborate, "NODE_BUDGET", 60)
    src = "def b = conv3x3 4 same > relu\nnetwork n:\n    input 4x8x8\n    " + " > ".join(["b"] * 40) + "\n"
    errors = []
    for cls in (Elaborator, _NoReuse):
        monkeypatch.setattr(compiler, "Elaborator", cls)
        with pytest.raises(archlang.ArchError, match="expands to more than 60 nodes") as err:
            archlang.compile(src, "t.arch")
        errors.append(render(err.value))
    assert errors[0] == errors[1]
    assert "called at t.arch:4:121" in errors[0]  # the 30th call, the first that does not fit
