"""Staged elaboration: a network, and each def it calls, elaborated once more with symbolic
values (archlang.compiler.symbolic) in place of their parameters, so that the PyTorch backend
can write one class per def whose constructor takes the def's parameters, and a network class
whose constructor honours the network's.

- The network's parameters become leaves named as the generated constructor names them;
  a parameter whose default is an expression of earlier ones (and that was not set) is
  computed from them in the constructor, as recompiling would.
- A def's body is elaborated on its own, its parameters and the width (`in_c`) and size
  (`in_h`, `in_w`; `in_f` for a vector) of its input as leaves.  Its class differs by what
  its context decides: the input's layout, the network's settings, and whether the layer
  after the call absorbs a bias (`bias=auto` on the convs that reach the def's output).

Anything whose structure would depend on a value raises Unstageable; the backend then
writes the module specialised to the compiled values, as before."""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Any

from archlang.compiler.elaborate import Elaborator
from archlang.compiler.ir import Layout, NetworkIR, Scope, TensorType
from archlang.compiler.ops import REGISTRY
from archlang.compiler.passes.bias import ir_absorbed, resolve_bias
from archlang.compiler.passes.hoist import hoist
from archlang.compiler.passes.lint import lint
from archlang.compiler.passes.naming import CODE_NAMES, helper_classes, name_blocks
from archlang.compiler.symbolic import Sym, Unstageable, concrete
from archlang.compiler.values import Env, evaluate
from archlang.frontend import ast

IMAGE_INPUT = ("in_c", "in_h", "in_w")
VECTOR_INPUT = ("in_f",)
# the constructor parameters a def's class may take for its input's dims, in the dims' order
INPUT_NAMES = {Layout.IMAGE: IMAGE_INPUT, Layout.VECTOR: VECTOR_INPUT, Layout.TOKENS: ("in_s", "in_c"),
               Layout.GRID: ("in_h", "in_w", "in_c"), Layout.WINDOWS: ("in_gh", "in_gw", None, "in_c")}
# (a window's token count stays the compiled one: a window's side, its square root, sizes the
# relative-position tables, and a square root is no expression of the constructor's parameters)
NO_DEFAULT = object()
# names the constructors of a generated file read, which no parameter may shadow
_INIT_NAMES = CODE_NAMES | {"range", "min", "max", "float"} | {n for names in INPUT_NAMES.values() for n in names if n}


@dataclass(frozen=True)
class Origin:
    """What a NetworkIR was compiled from: enough to elaborate it again, staged."""

    net: ast.Network
    unit: Any
    overridden: frozenset[str]
    plain: bool


@dataclass
class Param:
    """A constructor parameter: its Python name, and its default (a value), or None with the
    expression that computes it from earlier parameters."""

    name: str
    default: Any = NO_DEFAULT
    computed: Any = None


@dataclass
class DefBody:
    """A def's body, staged: its IR, its constructor parameters, the names of its input's
    dimensions, and the settings it was elaborated under."""

    name: str
    ir: NetworkIR
    params: list[tuple[str, str, Any]]  # (Python name, def parameter, default or NO_DEFAULT)
    inputs: tuple[str, ...]
    key: tuple = field(default=())


def python_names(names: list[str], reserved: set[str]) -> dict[str, str]:
    """Python names for a def's parameters: unchanged unless a keyword, a name the generated
    constructors read, or mangled by Python (`__x`)."""
    out: dict[str, str] = {}
    taken = set(reserved) | {n for n in names if n.isidentifier() and not n.startswith("__")}
    for n in names:
        py = n
        if py.startswith("__"):
            py = "_" + py.lstrip("_")
        if py != n or keyword.iskeyword(py) or py in reserved:
            while keyword.iskeyword(py) or py in reserved or (py in taken and py != n):
                py += "_"
        taken.add(py)
        out[n] = py
    return out


def _run_passes(ir: NetworkIR, root_may_list: bool, tail: bool = False) -> NetworkIR:
    for node in ir.nodes:
        if any(node.attrs.get("optional", {}).values()):
            after = ir.consumers(node.id)
            absorbed = node.id == ir.output.id or (len(after) == 1 and REGISTRY[after[0].op].absorbs_bias)
            skipped = [node.inputs[k] for k in node.attrs["optional"]]
            if (absorbed and any(ir.nodes[i].attrs.get("bias") == "auto" for i in node.inputs)) or \
                    any(ir.nodes[i].attrs.get("bias") == "auto" for i in skipped):
                # the layer after the sum absorbs the bias only where the skip is dropped
                raise Unstageable("`bias=auto` before a `skip optional` whose fit depends on a value")
    # further up, a bias may reach a bn through the optional sum and through another path: it is
    # absorbed (or not) alike whether the skip is there or dropped, or the classes cannot follow
    optional = {(n.inputs[k], n.id) for n in ir.nodes for k, fit in n.attrs.get("optional", {}).items() if fit}
    auto = [n.id for n in ir.nodes if n.attrs.get("bias") == "auto"]
    if optional and auto:
        there, dropped = ir_absorbed(ir, tail), ir_absorbed(ir, tail, ignoring=optional)
        if any(there[i] != dropped[i] for i in auto):
            raise Unstageable("`bias=auto` before a `skip optional` whose fit depends on a value")
    resolve_bias(ir, tail)
    hoist(ir)
    name_blocks(ir, root_may_list)
    lint(ir)
    return ir


class Stager:
    """Staged elaborations of one compiled network and the defs it calls (each made once)."""

    def __init__(self, ir: NetworkIR):
        if ir.origin is None:
            raise ValueError("this IR records no origin to stage")
        self.compiled = ir
        self.origin: Origin = ir.origin
        self.bodies: dict[tuple, DefBody] = {}
        self.reserved = _INIT_NAMES | helper_classes()
        self._absorbed: dict[tuple[int, bool], tuple[NetworkIR, dict[int, bool]]] = {}

    def network(self) -> tuple[NetworkIR, list[Param]]:
        net, unit = self.origin.net, self.origin.unit
        names = self.compiled.parameter_names
        values: dict[str, Any] = {}
        params: list[Param] = []
        for p in net.params:
            py, value = names[p.name], self.compiled.arguments[p.name]
            if p.name in self.origin.overridden or p.default is None or isinstance(p.default, ast.Num):
                params.append(Param(py, value))
            else:
                computed = evaluate(p.default, Env(unit, dict(values), None, {}))
                params.append(Param(py, None, computed) if isinstance(computed, Sym) else Param(py, value))
            values[p.name] = Sym.leaf(py, value)
        ir = Elaborator(net, unit, values, plain=self.origin.plain, staged=True).run()
        return _run_passes(ir, False), params

    def body(self, call: Scope, tail_absorbed: bool) -> DefBody:
        """The staged body of the def `call` calls, in its context."""
        info = call.call
        d, home = info.definition, info.home
        inp: TensorType = info.inp
        inputs = INPUT_NAMES.get(inp.layout)
        if inputs is None:
            raise Unstageable(f"a def called on {inp.layout.noun}")
        fixed = tuple(v for n, v in zip(inputs, concrete(inp.dims), strict=True) if n is None)
        key = (id(d), inp.layout, fixed, info.settings, tail_absorbed)
        found = self.bodies.get(key)
        if found is not None:
            return found
        py = python_names([p.name for p in d.params], self.reserved)
        leaves = {p.name: Sym.leaf(py[p.name], concrete(info.args[p.name])) for p in d.params}
        shape = TensorType(tuple(v if n is None else Sym.leaf(n, v)
                                 for n, v in zip(inputs, concrete(inp.dims), strict=True)), inp.layout)
        el = Elaborator(None, home, {}, plain=self.origin.plain, staged=True)
        ir = el.run_def(d, home, leaves, shape, dict(info.settings))
        _run_passes(ir, True, tail_absorbed)
        params = [(py[p.name], p.name, p.default.value if isinstance(p.default, ast.Num) else NO_DEFAULT)
                  for p in d.params]
        body = DefBody(d.name, ir, params, inputs, key)
        self.bodies[key] = body
        return body

    def tail_absorbed(self, ir: NetworkIR, scope: Scope, outer: bool) -> bool:
        """Whether the layer after block `scope` of `ir` absorbs a bias (`outer`: whether the
        one after `ir` itself does, for a block that ends it)."""
        _, last = scope.boundary()
        if last is None:
            return False
        key = (id(ir), outer)
        if key not in self._absorbed:  # one walk of each IR serves all of its calls
            self._absorbed[key] = (ir, ir_absorbed(ir, outer))
        return self._absorbed[key][1][last]
