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
from archlang.compiler.passes.naming import attribute_name, camel, helper_classes
from archlang.compiler.staging import NO_DEFAULT, DefBody, Stager
from archlang.compiler.symbolic import Sym, Unstageable, is_symbolic, names_in
from archlang.errors import ArchError


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
    args: str = "x"  # what forward takes after self


@dataclass
class _Emitter:
    ir: NetworkIR
    classes: dict[tuple, _Class] = field(default_factory=dict)  # by code, in order of definition
    taken: set[str] = field(default_factory=set)
    helpers: dict[str, None] = field(default_factory=dict)  # helper class sources, in order of first use
    imports: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.taken = helper_classes() | {self.ir.class_name, "nn", "torch"} | set(self.ir.parameter_names.values())
        self.flags: dict[int, str] = {}  # staged: node id → the attribute saying whether its optional inputs join
        self.last = {}  # id(scope) → (input ids, output id) of each block with nodes
        for scope in self.ir.root.walk_scopes():
            _, last = scope.boundary()
            if last is not None:
                self.last[id(scope)] = (scope.inputs(), last)
        # the values a forward names after their label: those read by `@label`, and the outputs
        self.labelled = {**self.ir.ref_names, **{o.node: o.name for o in self.ir.outputs}}

    def variable(self, node_id: int, taken: set[str]) -> str:
        """A readable local name for a value read by reference (`enc4`), distinct from `taken`."""
        name = self.labelled.get(node_id, "y")
        if name.startswith("__"):  # Python mangles `__w` inside a class
            name = "_" + name.lstrip("_") if name.strip("_") else "y"
        if not name.isidentifier() or keyword.iskeyword(name) or name in _FORWARD_NAMES \
                or re.fullmatch(r"h[0-9]+", name):
            name += "_"
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    def params(self, scope: Scope) -> list[tuple[int, str]]:
        """What a block's forward takes: its input `x`, then each value it reads by reference."""
        if scope is self.ir.root:
            return [(self.ir.input.id, "x")]
        inputs = self.last.get(id(scope), ([], None))[0]
        taken: set[str] = set()
        return [(i, "x" if k == 0 else self.variable(i, taken)) for k, i in enumerate(inputs)] or [(-1, "x")]

    def forward_args(self, scope: Scope) -> str:
        return ", ".join(name for _, name in self.params(scope))

    # ---- blocks ----

    def constructor(self, scope: Scope) -> str:
        """The expression that builds the module of a block: `Basic()`, `nn.Sequential(...)`."""
        if scope.container is Container.LIST:
            items = list(scope.items)
            while items and _placeholder(items[-1]):
                items.pop()
            # an empty item before others keeps its index (`layer.1` stays `layer.1`) as an identity
            made = ["nn.Identity()" if _placeholder(child) else
                    self.constructor(child) if isinstance(child, Scope) else self.layer(child) for child in items]
            if len(set(made)) == 1 and len(made) > 1:
                return f"nn.Sequential(*({made[0]} for _ in range({len(made)})))"
            return f"nn.Sequential({', '.join(made)})"
        init, forward = self.body(scope, scope.items)
        args = self.forward_args(scope)
        key = (tuple(init), tuple(forward), args)
        cls = self.classes.get(key)
        if cls is None:
            cls = _Class(self._class_name(scope), self._doc(scope), init, forward, args)
            self.classes[key] = cls
        return f"{cls.name}()"

    @staticmethod
    def _stem(scope: Scope) -> str:
        if scope.kind is ScopeKind.SHORTCUT:
            return "Shortcut"
        if scope.kind is ScopeKind.BRANCH:
            return "Branch"
        return camel(scope.def_name or scope.label or scope.name) or "Block"

    def layer(self, node: Node) -> str:
        """The constructor of a layer (a node whose op is a module)."""
        emit = emission(node)
        self.imports.update(emit.imports)
        if emit.module is None:  # pragma: no cover - only blocks of layers are lists of nodes
            raise InternalError(f"op '{node.op}' is no module, so it cannot be an item of a list")
        if emit.helper and (emit.needs_helper is None or emit.needs_helper(node.attrs)):
            self.helpers[emit.helper] = None
        return emit.module(node.attrs, node.in_shapes, node.shape)

    def _class_name(self, scope: Scope) -> str:
        return _unique_class(self._stem(scope), self.taken)

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
            if _placeholder(item):
                continue
            if isinstance(item, Scope):
                init.append(f"self.{item.name} = {self.constructor(item)}")
                continue
            emit = emission(item)
            self.imports.update(emit.imports)  # a call's too (torch.cat)
            if emit.module is not None:
                init.append(f"self.{item.name} = {self.layer(item)}")
        return init, self.forward(scope, items)

    def forward(self, scope: Scope, items: list) -> list[str]:
        ir = self.ir
        root = scope is ir.root
        params = self.params(scope)
        entry = params[0][0]
        result = ir.output.id if root else self.last.get(id(scope), (None, None))[1]
        steps = []  # (output id, input ids, expression maker, shape)
        for item in items:
            if isinstance(item, Scope):
                if id(item) not in self.last:  # an empty block: the identity, still called for its hooks
                    continue
                srcs, out = self.last[id(item)]
                if item.condition is not None:  # a staged shortcut: None where the shapes agree
                    def make(a, n=item.name):
                        return f"{a[0]} if self.{n} is None else self.{n}({a[0]})"
                else:
                    def make(a, n=item.name):
                        return f"self.{n}({', '.join(a)})"
                steps.append((out, list(srcs), make, _block_shape(item, ir.nodes[out].shape)))
            else:
                emit = emission(item)
                if emit.call is not None and _conditional(item):
                    # staged: some inputs join only where their shapes fit (a flag the constructor sets)
                    def make(a, e=emit, n=item):
                        kept = [v for i, v in enumerate(a) if i not in n.attrs["optional"]]
                        alone = kept[0] if len(kept) == 1 else e.call(kept, n.attrs)
                        return f"{e.call(a, n.attrs)} if self.{self.flags[n.id]} else {alone}"
                    steps.append((item.id, list(item.inputs), make, item.shape))
                elif emit.call is not None:
                    steps.append((item.id, list(item.inputs), lambda a, e=emit, n=item: e.call(a, n.attrs), item.shape))
                elif emit.apply is not None:  # a parameter of this block (a layer scale)
                    steps.append((item.id, list(item.inputs), lambda a, e=emit, n=item: e.apply(a[0], f"self.{n.name}"),
                                  item.shape))
                elif emit.forward is not None:  # a module called with more than its input (attention)
                    steps.append((item.id, list(item.inputs),
                                  lambda a, e=emit, n=item: e.forward(a[0], f"self.{n.name}"), item.shape))
                else:
                    steps.append((item.id, list(item.inputs), lambda a, n=item: f"self.{n.name}({a[0]})", item.shape))
        # what the network returns: its outputs (several where it has heads), else the result
        returned = [o.node for o in ir.heads] if root and ir.outputs else [result]
        training = ir.training_only if root else set()
        uses: dict[int, list[int]] = {}
        for k, (_, inputs, _, _) in enumerate(steps):
            for i in inputs:
                uses.setdefault(i, []).append(k)
        if root and ir.outputs:
            for i in returned:
                uses.setdefault(i, []).append(len(steps))
        names: dict[int, str] = {}
        taken = {name for _, name in params} | {"identity"}
        lines = []
        for i, name in params[1:]:
            names[i] = name
        if entry is not None and steps:
            names[entry] = "x"
            if uses.get(entry, []) != [0]:  # read again later: keep it out of `x`, which the steps reuse
                names[entry] = "identity"
                lines.append("identity = x")
        fresh = 0
        guarded = False
        # the next step of the eval path after each step (training-only heads run in between)
        following, after = [0] * len(steps), len(steps)
        for k in range(len(steps) - 1, -1, -1):
            following[k] = after
            if steps[k][0] not in training:
                after = k
        for k, (out, inputs, make, shape) in enumerate(steps):
            args = ["x" if k == 0 and i == entry else names[i] for i in inputs]
            train_only = out in training
            if not train_only and (uses.get(out, []) == [following[k]] or (out == result and not uses.get(out))):
                var = "x"
            elif out in self.labelled and (train_only or len(uses.get(out, [])) > 1 or uses.get(out) != [k + 1]):
                var = self.variable(out, taken)
            else:
                fresh += 1
                var = f"h{fresh}"
            if train_only and not guarded:
                lines.append("if self.training:  # auxiliary heads")
            guarded = train_only
            lines.append(f"{'    ' if train_only else ''}{var} = {make(args)}  # {_fmt(shape)}")
            names[out] = var
        if root and ir.outputs:
            def name_of(i):
                return names.get(i, "x" if i == entry else f"x{i}")
            heads = [name_of(o.node) for o in ir.heads]
            main = [name_of(o.node) for o in ir.heads if not o.training_only]
            if len(main) < len(heads):
                lines += ["if self.training:", f"    return {', '.join(heads)}"]
            lines.append(f"return {', '.join(main)}")
            return lines
        if result is not None and steps and names.get(result, "x") != "x":
            lines.append(f"x = {names[result]}")
        lines.append("return x")
        return lines


def _placeholder(item) -> bool:
    """The empty item a repeat of calls counted to 0 leaves in its list (it builds nothing)."""
    return isinstance(item, Scope) and item.kind is ScopeKind.REPEAT and not item.items


def _block_shape(scope: Scope, last: TensorType) -> TensorType:
    """The shape a block gives, `last` (its last node's) unless it ends in a staged repeat whose
    calls change the shape step by step (that node has the shape of the i-th call)."""
    while scope.items and isinstance(scope.items[-1], Scope):
        scope = scope.items[-1]
        if scope.kind is ScopeKind.REPEAT and scope.repeat is not None and scope.repeat[1] is not None:
            return scope.repeat[2]
    return last


def _conditional(node: Node) -> bool:
    """A join with inputs that take part only where their shapes fit (a staged `skip optional`)."""
    return any(node.attrs.get("optional", {}).values())


def _docstring_safe(text: str) -> str:
    """A file name as docstring text: quotes, backslashes, control and other unusual characters
    become `_`, so no file name can end the docstring or reach the code."""
    return re.sub(r"[^A-Za-z0-9 ._+\-()\[\],]", "_", text)


def _fmt(t: TensorType) -> str:
    if not is_symbolic(t.dims):
        return "x".join(str(d) for d in t.dims)
    return " x ".join(str(d) if not isinstance(d, Sym) or d.prec == 3 else f"({d})" for d in t.dims)


def _class_lines(name: str, doc: str, init: list[str], forward: list[str], signature: str = "self",
                 preamble: tuple[str, ...] = (), forward_args: str = "x") -> list[str]:
    out = ["", "", f"class {name}(nn.Module):", f'    """{doc}"""', "", f"    def __init__({signature}):",
           "        super().__init__()"]
    out += [wrapped for line in (*preamble, *init) for wrapped in _wrap(line, "        ")]
    out += ["", f"    def forward(self, {forward_args}):"] + [_fit(line, "        ") for line in forward]
    return out


# names a forward uses besides its parameters and h1, h2, ...: a label read by reference steps aside
_FORWARD_NAMES = frozenset({"self", "x", "identity", "torch", "nn", "super", "input"})


LINE = 120  # the generated files' line length (ruff's, in this project)


def _split_top(text: str) -> list[str]:
    """`text` split at its commas outside brackets."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:k].strip())
            start = k + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _wrap(line: str, indent: str) -> list[str]:
    """A constructor line as a person would break it: a long condition in parentheses on its own
    line, a long argument list one argument a line."""
    if len(indent + line) <= LINE:
        return [indent + line]
    head, sep, cond = line.partition(" if ")
    if sep and cond.endswith(" else None") and "(" not in head.split("=", 1)[0]:
        return [f"{indent}{head} if (", f"{indent}    {cond[:-len(' else None')]}", f"{indent}) else None"]
    opening, depth = -1, 0
    for k in range(len(line) - 1, -1, -1):  # the bracket the last one closes
        depth += {")": 1, "]": 1, "}": 1, "(": -1, "[": -1, "{": -1}.get(line[k], 0)
        if depth == 0:
            opening = k
            break
    if opening > 0 and line.endswith(")"):
        args = _split_top(line[opening + 1:-1])
        if len(args) > 1:
            return [indent + line[:opening + 1], *(f"{indent}    {a}," for a in args), indent + ")"]
    return [indent + line]


def _fit(line: str, indent: str) -> str:
    """A forward line, without its shape comment where the two would not fit on a line."""
    if len(indent + line) > LINE and "  # " in line:
        line = line.split("  # ", 1)[0]
    return indent + line


def emit_module(ir: NetworkIR, source_name: str, version: str) -> str:
    """The full text of DIR/<network>.py for one compiled network: staged (classes whose
    constructors take parameters) where the program allows, else specialised to the compiled
    values."""
    if ir.origin is not None:
        try:
            return _StagedEmitter(ir).module(source_name, version)
        except (Unstageable, ArchError):  # a structure that depends on a value (shapes equal only by chance)
            pass
    return emit_specialised(ir, source_name, version)


def _unique_class(stem: str, taken: set[str]) -> str:
    """A class name from `stem` (`Block` when it is no identifier), numbered past `taken`, which it joins."""
    if not stem.isidentifier() or keyword.iskeyword(stem):
        stem = "Block"
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}{n}"
    taken.add(name)
    return name


def _file(ir: NetworkIR, source_name: str, version: str, imports, helpers, classes: list[list[str]]) -> str:
    """A generated file: its docstring, imports, helper classes, then the classes' lines."""
    out = [f'"""{ir.name}: generated by archc {version} from {_docstring_safe(source_name)}; do not edit.',
           "",
           f"Input {_fmt(ir.input.shape)} (batch first: N x {_fmt(ir.input.shape)}), output {_fmt(ir.output.shape)}.",
           *_outputs_doc(ir),
           "Needs only torch.", '"""', ""]
    out += [f"import {name}" for name in sorted(imports)]
    out += ["from torch import nn"]
    for helper in helpers:
        out += helper.rstrip("\n").split("\n")
    for lines in classes:
        out += lines
    return "\n".join(out) + "\n"


def _outputs_doc(ir: NetworkIR) -> list[str]:
    """The docstring's line on a network that returns several outputs."""
    if not ir.outputs:
        return []
    shown = ", ".join(f"{o.name} {_fmt(ir.nodes[o.node].shape)}" for o in ir.heads)
    main = ", ".join(o.name for o in ir.heads if not o.training_only)
    return [f"Returns ({shown}) in training mode; in eval mode {main}."]


def emit_specialised(ir: NetworkIR, source_name: str, version: str) -> str:
    """The module with every value fixed to the compiled ones (its constructor refuses others)."""
    em = _Emitter(ir)
    init, forward = em.body(ir.root, ir.root.items)
    forward = [f"# input: {_fmt(ir.input.shape)}", *forward]
    cls = ir.class_name
    params = [ir.parameter_names[k] for k in ir.arguments]
    args = ", ".join(f"{p}={v!r}" for p, v in zip(params, ir.arguments.values(), strict=True))
    classes = [_class_lines(c.name, c.doc, c.init, c.forward, forward_args=c.args) for c in em.classes.values()]
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
    classes.append(_class_lines(cls, doc, init, forward, f"self, {args}" if args else "self", preamble))
    return _file(ir, source_name, version, em.imports, em.helpers, classes)


# ---- staged emission: classes whose constructors take parameters ----


@dataclass
class _Ctx:
    """Where a block is emitted from: a staged IR, whether the layer after that IR absorbs a
    bias, and the constructor parameters in scope, in signature order."""

    ir: NetworkIR
    tail: bool
    order: list[str]


@dataclass
class _DefClass:
    token: str
    inputs: list[str]
    params: list[tuple[str, str, object]]
    star: int | None


def _value(v) -> str:
    return v.text if isinstance(v, Sym) else repr(v)


class _StagedEmitter:
    """Writes a network as a person would: one class per def, taking the def's parameters (and
    its input's width and size where the body reads them), child modules for labelled lines and
    calls, lists built by loops, and a network class whose constructor honours the network's
    parameters.  Class names are chosen last, when every parameter name is known."""

    def __init__(self, ir: NetworkIR):
        self.compiled = ir
        self.stager = Stager(ir)
        self.classes: list[tuple[str, list[str]]] = []  # (token, lines)
        self.stems: dict[str, str] = {}  # token → the name it wants
        self.by_code: dict[tuple, str] = {}
        self.def_classes: dict[tuple, _DefClass] = {}
        self.helpers: dict[str, None] = {}
        self.imports: set[str] = set()
        self.leaves: set[str] = set()
        self.forwarders: dict[int, _Emitter] = {}

    # ---- the file ----

    def module(self, source_name: str, version: str) -> str:
        ir, params = self.stager.network()
        self.leaves |= {p.name for p in params}
        ctx = _Ctx(ir, False, [p.name for p in params])
        init, _ = self.module_init(ir.root, ctx)
        forward = [f"# input: {_fmt(ir.input.shape)}", *self.forward(ir, ir.root)]
        cls = self.compiled.class_name
        signature = ", ".join(["self", *(f"{p.name}={'None' if p.computed is not None else repr(p.default)}"
                                         for p in params)])
        preamble: list[str] = []
        for p in params:
            if p.computed is not None:
                preamble += [f"if {p.name} is None:", f"    {p.name} = {_value(p.computed)}"]
        shape_in, shape_out = _fmt(self.compiled.input.shape), _fmt(self.compiled.output.shape)
        doc = f"{self.compiled.name}: {shape_in} → {shape_out}."
        if params:
            doc = doc[:-1] + " with the defaults; takes the values `archc build --set` takes."
        net_lines = _class_lines(cls, doc, init, forward, signature, tuple(preamble))
        names = self._names({cls})
        for em in self.forwarders.values():
            self.helpers.update(em.helpers)
            self.imports.update(em.imports)
        text = _file(self.compiled, source_name, version, self.imports, self.helpers,
                     [*(lines for _, lines in self.classes), net_lines])
        for token, name in names.items():
            text = text.replace(token, name)
        return text

    def _names(self, taken: set[str]) -> dict[str, str]:
        taken = taken | helper_classes() | self.leaves | {"nn", "torch", "super", "range", "self", "x"}
        return {token: _unique_class(self.stems[token], taken) for token, _ in self.classes}

    def _token(self, stem: str) -> str:
        token = f"\x00{len(self.stems)}\x00"
        self.stems[token] = stem
        return token

    def _class(self, key: tuple, stem: str, make) -> str:
        """The token of the class with code `key`, made (by make(token) → lines) on first use."""
        token = self.by_code.get(key)
        if token is None:
            token = self.by_code[key] = self._token(stem)
            self.classes.append((token, make(token)))
        return token

    # ---- blocks ----

    def forwarder(self, ir: NetworkIR) -> _Emitter:
        em = self.forwarders.get(id(ir))
        if em is None:
            em = self.forwarders[id(ir)] = _Emitter(ir)
        return em

    def forward(self, ir: NetworkIR, scope: Scope) -> list[str]:
        return self.forwarder(ir).forward(scope, scope.items)

    def construct(self, scope: Scope, ctx: _Ctx) -> tuple[str, frozenset[str]]:
        """The expression that builds block `scope`, and the parameters it reads."""
        if scope.kind is ScopeKind.REPEAT:  # in a list it is spliced in (below); alone, names would depend on its count
            raise Unstageable("a repeat counted by a parameter outside a list of calls")
        if scope.call is not None and scope is not ctx.ir.root:
            return self.call(scope, ctx)
        if scope.container is Container.LIST:
            parts: list[tuple[str, frozenset[str], bool]] = []
            for child in scope.items:
                if _placeholder(child):
                    continue
                if isinstance(child, Node):
                    parts.append((self.forwarder(ctx.ir).layer(child), names_in(child.attrs), False))
                    continue
                if child.kind is ScopeKind.REPEAT:
                    count, index, _ = child.repeat
                    var = "_" if index is None else index.text
                    text, names = self.construct(child.items[0], _Ctx(ctx.ir, ctx.tail, [*ctx.order, var]))
                    parts.append((f"*({text} for {var} in range({_value(count)}))",
                                  (names - {var}) | names_in(count), True))
                else:
                    text, names = self.construct(child, ctx)
                    parts.append((text, names, False))
            texts: list[str] = []
            k = 0
            while k < len(parts):
                run = k
                while run + 1 < len(parts) and not parts[k][2] and parts[run + 1][:1] == parts[k][:1]:
                    run += 1
                n = run - k + 1
                texts.append(f"*({parts[k][0]} for _ in range({n}))" if n > 1 else parts[k][0])
                k = run + 1
            names = frozenset().union(*(p[1] for p in parts))
            return f"nn.Sequential({', '.join(texts)})", names
        init, names = self.module_init(scope, ctx)
        forward = self.forward(ctx.ir, scope)
        args = self.forwarder(ctx.ir).forward_args(scope)
        params = [n for n in ctx.order if n in names]
        stem = _Emitter._stem(scope)
        doc = _Emitter._doc(scope)

        def make(token):
            return _class_lines(token, doc, init, forward, ", ".join(["self", *params]), forward_args=args)

        token = self._class(("block", stem if scope.kind is not ScopeKind.LABEL else "", tuple(init),
                             tuple(forward), tuple(params), args), stem, make)
        return f"{token}({', '.join(params)})", frozenset(params)

    def module_init(self, scope: Scope, ctx: _Ctx) -> tuple[list[str], frozenset[str]]:
        taken = {item.name for item in scope.items}
        lines: list[str] = []
        names: frozenset[str] = frozenset()
        for item in scope.items:
            if _placeholder(item):
                continue
            if isinstance(item, Scope):
                text, used = self.construct(item, ctx)
                if item.condition is not None:
                    cond = " or ".join(f"{_value(a)} != {_value(b)}" for a, b in item.condition)
                    text = f"{text} if {cond} else None"
                    used |= names_in(item.condition)
                lines.append(f"self.{item.name} = {text}")
                names |= used
                continue
            emit = emission(item)
            self.imports.update(emit.imports)  # a call's too (torch.cat)
            if emit.module is not None:
                lines.append(f"self.{item.name} = {self.forwarder(ctx.ir).layer(item)}")
                names |= names_in(item.attrs)
            elif _conditional(item):
                pairs = [p for fit in item.attrs["optional"].values() for p in fit]
                flag = attribute_name(f"{item.name}_skip", taken)
                self.forwarder(ctx.ir).flags[item.id] = flag
                lines.append(f"self.{flag} = " + " and ".join(f"{_value(a)} == {_value(b)}" for a, b in pairs))
                names |= names_in(pairs)
        unknown = names - set(ctx.order)
        if unknown:  # pragma: no cover - every leaf is a parameter of the class being written
            raise InternalError(f"names {sorted(unknown)} are not parameters here")
        return lines, names

    def call(self, scope: Scope, ctx: _Ctx) -> tuple[str, frozenset[str]]:
        body = self.stager.body(scope, self.stager.tail_absorbed(ctx.ir, scope, ctx.tail))
        dc = self.def_class(body)
        info = scope.call
        args: list[str] = []
        names: frozenset[str] = frozenset()
        dims = dict(zip(body.inputs, info.inp.dims, strict=True))
        for n in dc.inputs:
            args.append(_value(dims[n]))
            names |= names_in(dims[n])
        for i, (py, arch, default) in enumerate(dc.params):
            v = info.args[arch]
            if default is NO_DEFAULT:
                args.append(f"{py}={_value(v)}" if dc.star is not None and i >= dc.star else _value(v))
            elif arch in info.given:
                args.append(f"{py}={_value(v)}")
            else:
                continue
            names |= names_in(v)
        return f"{dc.token}({', '.join(args)})", names

    def def_class(self, body: DefBody) -> _DefClass:
        found = self.def_classes.get(body.key)
        if found is not None:
            return found
        py_params = [py for py, _, _ in body.params]
        named = [n for n in body.inputs if n]  # a windows input keeps its token count (staging.INPUT_NAMES)
        self.leaves |= set(py_params) | set(named)
        ctx = _Ctx(body.ir, body.key[-1], [*named, *py_params])
        root = body.ir.root
        if root.container is Container.LIST:
            text, names = self.construct(root, ctx)
            init = [f"super().__init__({text[len('nn.Sequential('):-1]})"]
            forward: list[str] = []
        else:
            init, names = self.module_init(root, ctx)
            forward = self.forward(body.ir, root)
        inputs = [n for n in body.inputs if n in names]
        star = None
        first_default = next((i for i, (_, _, d) in enumerate(body.params) if d is not NO_DEFAULT), None)
        if first_default is not None and any(d is NO_DEFAULT for _, _, d in body.params[first_default:]):
            star = first_default
        sig = ["self", *inputs]
        for i, (py, _, default) in enumerate(body.params):
            if i == star:
                sig.append("*")
            sig.append(py if default is NO_DEFAULT else f"{py}={default!r}")
        signature = ", ".join(sig)
        d = body.ir
        shown = ", ".join(a if v is NO_DEFAULT else f"{a}={v!r}" for _, a, v in body.params)
        doc = f"def {body.name}({shown}) ({_docstring_safe(d.span.filename.rsplit('/', 1)[-1])}:{d.span.line})"
        is_list = root.container is Container.LIST

        def make(token):
            if is_list:
                return ["", "", f"class {token}(nn.Sequential):", f'    """{doc}"""', "",
                        f"    def __init__({signature}):", *(w for line in init for w in _wrap(line, "        "))]
            return _class_lines(token, doc, init, forward, signature)

        token = self._class(("def", body.name, is_list, tuple(init), tuple(forward), signature), camel(body.name),
                            make)
        dc = self.def_classes[body.key] = _DefClass(token, inputs, body.params, star)
        return dc
