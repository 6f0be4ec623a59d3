"""IR → PyTorch source: one standalone file per network that imports only torch.

Every block (a labelled line, a def call, a branch, an inserted shortcut) is an nn.Module
with its own `forward`, so hooks on any block fire, a block runs alone on a tensor of its
input shape, and a stage of repeated calls is an nn.Sequential (`layer1[0]`) as in
torchvision.  Classes are named after their def or label, and blocks whose code is the same
share one class.  Submodules are registered in scope order (a residual's main path before
its Ws), so parameter order and state_dict keys match the usual hand-written module;
`forward` is straight-line code with the shape of every step in a comment.  Each node is
written as its op's spec says (OpSpec.emit); every attribute name comes from the compiler's
naming pass."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from archlang.compiler.ir import Container, NetworkIR, Node, Scope, ScopeKind, TensorType
from archlang.compiler.ops import Emit, InternalError, spec_of
from archlang.compiler.passes.naming import camel, helper_classes


def emission(node: Node) -> Emit:
    """How the op of `node` is written; a registered op without one is a bug in archc."""
    spec = spec_of(node.op)
    if spec.emit is None:
        raise InternalError(f"op '{node.op}' has no PyTorch emission (node {node.path or node.id})")
    return spec.emit


@dataclass
class _Class:
    name: str
    doc: str
    init: list[str]
    forward: list[str]


@dataclass
class _Emitter:
    ir: NetworkIR
    classes: dict[tuple, _Class] = field(default_factory=dict)  # by code, in order of definition
    taken: set[str] = field(default_factory=set)
    helpers: dict[str, None] = field(default_factory=dict)  # helper class sources, in order of first use
    imports: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.taken = helper_classes() | {self.ir.class_name, "nn", "torch"}
        self.last = {}  # id(scope) → (input id, output id) of each block with nodes
        for scope in self.ir.root.walk_scopes():
            outside, last = scope.boundary()
            if last is not None:
                self.last[id(scope)] = (next(iter(outside), None), last)

    # ---- blocks ----

    def constructor(self, scope: Scope) -> str:
        """The expression that builds the module of a block: `Basic()`, `nn.Sequential(...)`."""
        if scope.container is Container.LIST:
            made = [self.constructor(child) for child in scope.items]
            if len(set(made)) == 1 and len(made) > 1:
                return f"nn.Sequential(*({made[0]} for _ in range({len(made)})))"
            return f"nn.Sequential({', '.join(made)})"
        init, forward = self.body(scope, scope.items)
        key = (tuple(init), tuple(forward))
        cls = self.classes.get(key)
        if cls is None:
            cls = _Class(self._class_name(scope), self._doc(scope), init, forward)
            self.classes[key] = cls
        return f"{cls.name}()"

    def _class_name(self, scope: Scope) -> str:
        if scope.kind is ScopeKind.SHORTCUT:
            stem = "Shortcut"
        elif scope.kind is ScopeKind.BRANCH:
            stem = "Branch"
        else:
            stem = camel(scope.def_name or scope.label or scope.name) or "Block"
        if not stem.isidentifier() or keyword.iskeyword(stem):
            stem = "Block"
        name, n = stem, 1
        while name in self.taken:
            n += 1
            name = f"{stem}{n}"
        self.taken.add(name)
        return name

    @staticmethod
    def _doc(scope: Scope) -> str:
        what = {ScopeKind.SHORTCUT: "an inserted shortcut", ScopeKind.BRANCH: "a branch"}.get(scope.kind)
        if what is None:
            what = f"def {scope.def_name}" if scope.def_name else f"the line `{scope.label}`"
        return f"{what} ({_docstring_safe(scope.span.filename.rsplit('/', 1)[-1])}:{scope.span.line})"

    def body(self, scope: Scope, items: list) -> tuple[list[str], list[str]]:
        """The __init__ and forward lines of a block (or the network) holding `items`."""
        init: list[str] = []
        for item in items:
            if isinstance(item, Scope):
                init.append(f"self.{item.name} = {self.constructor(item)}")
                continue
            emit = emission(item)
            self.imports.update(emit.imports)
            if emit.module is not None:
                if emit.helper:
                    self.helpers[emit.helper] = None
                init.append(f"self.{item.name} = {emit.module(item.attrs, item.in_shapes, item.shape)}")
        return init, self.forward(scope, items)

    def forward(self, scope: Scope, items: list) -> list[str]:
        ir = self.ir
        entry, result = (ir.input.id, ir.output.id) if scope is ir.root else self.last.get(id(scope), (None, None))
        steps = []  # (output id, input ids, expression maker, shape)
        for item in items:
            if isinstance(item, Scope):
                if id(item) not in self.last:  # an empty block: the identity, still called for its hooks
                    continue
                src, out = self.last[id(item)]
                steps.append((out, [src], lambda a, item=item: f"self.{item.name}({a[0]})", ir.nodes[out].shape))
            else:
                emit = emission(item)
                if emit.call is not None:
                    steps.append((item.id, list(item.inputs), lambda a, e=emit, n=item: e.call(a, n.attrs), item.shape))
                else:
                    steps.append((item.id, list(item.inputs), lambda a, n=item: f"self.{n.name}({a[0]})", item.shape))
        uses: dict[int, list[int]] = {}
        for k, (_, inputs, _, _) in enumerate(steps):
            for i in inputs:
                uses.setdefault(i, []).append(k)
        names: dict[int, str] = {}
        lines = []
        if entry is not None and steps:
            names[entry] = "x"
            if uses.get(entry, []) != [0]:  # read again later: keep it out of `x`, which the steps reuse
                names[entry] = "identity"
                lines.append("identity = x")
        fresh = 0
        for k, (out, inputs, make, shape) in enumerate(steps):
            args = ["x" if k == 0 and i == entry else names[i] for i in inputs]
            if uses.get(out, []) == [k + 1] or (out == result and not uses.get(out)):
                var = "x"
            else:
                fresh += 1
                var = f"h{fresh}"
            lines.append(f"{var} = {make(args)}  # {_fmt(shape)}")
            names[out] = var
        if result is not None and steps and names.get(result, "x") != "x":
            lines.append(f"x = {names[result]}")
        lines.append("return x")
        return lines


def _docstring_safe(text: str) -> str:
    """A file name as docstring text: quotes, backslashes, control and other unusual characters
    become `_`, so no file name can end the docstring or reach the code."""
    return re.sub(r"[^A-Za-z0-9 ._+\-()\[\],]", "_", text)


def _fmt(t: TensorType) -> str:
    return "x".join(str(d) for d in t.dims)


def _class_lines(name: str, doc: str, init: list[str], forward: list[str], signature: str = "self",
                 preamble: tuple[str, ...] = ()) -> list[str]:
    out = ["", "", f"class {name}(nn.Module):", f'    """{doc}"""', "", f"    def __init__({signature}):",
           "        super().__init__()"]
    out += ["        " + line for line in (*preamble, *init)]
    out += ["", "    def forward(self, x):"] + ["        " + line for line in forward]
    return out


def emit_module(ir: NetworkIR, source_name: str, version: str) -> str:
    """The full text of DIR/<network>.py for one compiled network."""
    em = _Emitter(ir)
    init, forward = em.body(ir.root, ir.root.items)
    forward = [f"# input: {_fmt(ir.input.shape)}", *forward]
    cls = ir.class_name
    params = [ir.parameter_names[k] for k in ir.arguments]
    args = ", ".join(f"{p}={v!r}" for p, v in zip(params, ir.arguments.values(), strict=True))
    out = [f'"""{ir.name}: generated by archc {version} from {_docstring_safe(source_name)}; do not edit.',
           "",
           f"Input {_fmt(ir.input.shape)} (batch first: N x {_fmt(ir.input.shape)}), output {_fmt(ir.output.shape)}.",
           "Needs only torch.", '"""', ""]
    out += [f"import {name}" for name in sorted(em.imports)]
    out += ["from torch import nn"]
    for helper in em.helpers:
        out += helper.rstrip("\n").split("\n")
    for c in em.classes.values():
        out += _class_lines(c.name, c.doc, c.init, c.forward)
    doc = f"{ir.name}: {_fmt(ir.input.shape)} → {_fmt(ir.output.shape)}."
    preamble: tuple[str, ...] = ()
    if ir.arguments:
        compiled = ", ".join(f"{k}={v!r}" for k, v in ir.arguments.items())
        doc = f"{doc[:-1]}, compiled with {compiled}; rebuild with `archc build --set` for other values."
        given = ", ".join(params)
        expect = tuple(ir.arguments.values())
        preamble = (f"if ({given},) != {expect!r}:",
                    f"    raise ValueError(\"{cls} was compiled for {compiled}; \"",
                    "                     \"rebuild it with archc build --set KEY=VALUE\")")
    out += _class_lines(cls, doc, init, forward, f"self, {args}" if args else "self", preamble)
    return "\n".join(out) + "\n"
