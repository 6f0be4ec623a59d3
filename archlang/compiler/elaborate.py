"""AST → IR: the interpreter that expands lines, sequences, repeats, sums, concats and def
calls into a NetworkIR, inferring every shape as it goes.

Expansion and shape inference run together, because widths may follow the incoming tensor
(`conv1x1 in.c//2`).  What is not the interpreter lives beside it: values (expressions),
binding (arguments), replay (copying repeated calls), and archlang.compiler.lowering (skip
shortcuts, bracket sugar), each a rule the interpreter dispatches to.  Every user mistake
found here is an ArchError at the offending span."""

from __future__ import annotations

from typing import Any, NamedTuple

from archlang.compiler import ops
from archlang.compiler.binding import bind_def, bind_op
from archlang.compiler.ir import CallInfo, NetworkIR, Node, Output, Role, Scope, ScopeKind, TensorType
from archlang.compiler.loader import Unit, check_setting
from archlang.compiler.lowering.shortcuts import lower_skip
from archlang.compiler.lowering.sugar import SUGAR, expand
from archlang.compiler.ops import OpSpec, ShapeError
from archlang.compiler.ops.sampling import synonym_hint
from archlang.compiler.replay import CallMemo
from archlang.compiler.symbolic import Sym, Unstageable, is_symbolic
from archlang.compiler.values import Env, count, evaluate
from archlang.errors import ArchError, Note, Span, did_you_mean
from archlang.frontend import ast

NODE_BUDGET = 200_000  # `archc check` of a network at the limit takes about 5 s and 250 MB
MAX_CALL_DEPTH = 64
MAX_NOTES = 8
BIAS_SETTING = {"on": True, "off": False, "auto": "auto"}  # the `bias` setting as a value of `bias`


class Val(NamedTuple):
    """A tensor flowing through elaboration: the node that produces it and its shape (and the
    label it was read by, `@enc4`, until a node reads it: diagrams draw that edge as a skip)."""

    node: int
    shape: TensorType
    ref: str | None = None


def is_skip(e: ast.Expr) -> bool:
    return isinstance(e, ast.Call) and e.name == "skip"


FITS = ("crop", "pad")


def ref_fit(r: ast.Ref) -> str | None:
    """`@enc4 crop` → 'crop', `@enc4 pad` → 'pad', `@enc4` → None."""
    fit = None
    for arg in r.args:
        word = arg.value.name if isinstance(arg, ast.Positional) and isinstance(arg.value, ast.Name) else None
        if word not in FITS:
            raise ArchError("a reference takes one flag: crop or pad", arg.span,
                            hint=did_you_mean(word, FITS) if word else "`@enc4 crop` centre-crops, `@enc4 pad` "
                                                                       "zero-pads, to the other branches' size")
        if fit is not None:
            raise ArchError("a reference takes only one of crop, pad", arg.span)
        fit = word
    return fit


def leading_ref(e: ast.Expr) -> ast.Ref | None:
    """The reference an expression starts with (`@a > conv1x1 8`), if it does."""
    while isinstance(e, ast.Seq | ast.Repeat):
        e = e.items[0] if isinstance(e, ast.Seq) else e.body
    return e if isinstance(e, ast.Ref) else None


def ref_error(r: ast.Ref, known: list[str], written: dict[str, Span], own: str | None) -> ArchError:
    """What is wrong with `@name` where the labels above are `known`, the body's are `written`
    and the line's own is `own`."""
    name = r.name
    if name == "input":
        return ArchError(f"@input is ambiguous: it names the body's input and the line labelled input "
                         f"(at {written['input']})", r.name_span,
                         hint="rename that line: labels and @input share one namespace")
    if name == own:
        return ArchError(f"@{name} refers to its own line", r.name_span,
                         hint="a reference reads an earlier line's output; the line's own input is `skip`")
    if name in written:
        return ArchError(f"@{name} refers to a later line (labelled at {written[name]})", r.name_span,
                         hint="a line can refer only to the lines above it")
    hint = did_you_mean(name, [*known, "input"])
    if hint is None:
        hint = ("labels above this line: " + ", ".join(known)) if known else \
            "no line above this one has a label (write `name = ...` to give it one)"
    return ArchError(f"unknown label '{name}'", r.name_span, hint=hint)


class Body:
    """The labels of one body (a network's or a def's lines), for `@label`: the values of the lines
    elaborated so far, where each label of the body is written (to tell a later line from an
    unknown name), and which lines are auxiliary heads."""

    def __init__(self, lines, inp: Val):
        self.values: dict[str, Val] = {}
        self.input = inp
        self.written: dict[str, Span] = {}
        for line in lines:
            if isinstance(line, ast.Line) and line.label is not None:
                self.written.setdefault(line.label, line.label_span)
        self.aux: set[str] = set()
        self.current: ast.Line | None = None  # the line being elaborated


class Elaborator:
    def __init__(self, net: ast.Network | None, unit: Unit, arguments: dict[str, Any], plain: bool = False,
                 reuse: bool = True, staged: bool = False):
        self.net = net
        self.unit = unit
        self.plain = plain
        # staged: values may be Syms (archlang.compiler.symbolic); a repeat counted by one is
        # elaborated once, as a REPEAT block, and a skip whose fit depends on one gets a
        # conditional shortcut
        self.staged = staged
        if net is not None:
            self.ir = NetworkIR(net.name, arguments, net.span, dict(unit.settings))
        # product of the counts of the repeats being expanded, and the outermost one's span:
        # every node made inside them will be made at least that many times
        self.repeat_product = 1
        self.repeat_span: Span | None = None
        # copy repeated def calls (None: elaborate every call; the tests compare the two)
        self.memo = CallMemo() if reuse and not staged else None
        self.optional_fit: list | None = None  # set by a staged `skip optional` whose fit depends on a value

    def run_def(self, d: ast.Def, home: Unit, values: dict[str, Any], inp: TensorType,
                settings: dict[str, str]) -> NetworkIR:
        """Staged elaboration of one def's body on its own, as the body of a class: the root
        holds the body's items, the input is a node of shape `inp`."""
        self.ir = NetworkIR(d.name, {}, d.span, dict(home.settings))
        x = self.node("_input", {}, [], inp, d.span, None, role=Role.INPUT)
        env = Env(home, values, inp, settings, ((d.name, d.span),), body=Body(d.body, x))
        labels: dict[str, Span] = {}
        for line in d.body:
            if isinstance(line, ast.Setting):
                raise ArchError("`set` goes at file level or in a network, not in a def", line.span)
            x = self.line(line, x, env, self.ir.root, labels)
        self.ir.output_id = x.node
        return self.ir

    # ---- entry ----

    def run(self) -> NetworkIR:
        inp = TensorType(self.net.input_shape)
        root = self.ir.root
        x = self.node("_input", {}, [], inp, self.net.input_span, None, role=Role.INPUT)
        net_settings: dict[str, str] = {}
        labels: dict[str, Span] = {}
        body = Body(self.net.body, x)
        heads: list[tuple[ast.Line, Val]] = []
        main: str | None = None
        for line in self.net.body:
            if isinstance(line, ast.Setting):
                check_setting(line)
                net_settings = {**net_settings, line.key: line.value}
                continue
            if isinstance(line, ast.Outputs):
                continue  # the last line (the parser checks): below
            env = Env(self.unit, dict(self.ir.arguments), x.shape, net_settings, body=body)
            if line.aux:  # computed from the chain (or a reference) in training only; the chain goes on past it
                first = len(self.ir.nodes)
                y = self.line(line, x, env, root, labels)
                self.ir.training_only.update(range(first, len(self.ir.nodes)))
                body.aux.add(line.label)
                heads.append((line, y))
                continue
            x = self.line(line, x, env, root, labels)
            main = line.label
        self.ir.output_id = x.node
        last = self.net.body[-1] if self.net.body else None
        if isinstance(last, ast.Outputs):
            self.outputs(last, body, heads)
        elif heads:
            self.ir.outputs = [Output(main or "output", x.node)] + [Output(line.label, y.node, True)
                                                                    for line, y in heads]
        return self.ir

    def outputs(self, out: ast.Outputs, body: Body, heads: list) -> None:
        """`output @a, @b, ...`: the outputs in order; auxiliary heads are returned in training only."""
        seen: dict[str, Span] = {}
        for ref in out.refs:
            if ref.name in seen:
                raise ArchError(f"@{ref.name} is an output twice (first at {seen[ref.name]})", ref.span)
            seen[ref.name] = ref.span
            v = self.ref_value(ref, body, outputs=True)
            self.ir.outputs.append(Output(ref.name, v.node, ref.name in body.aux))
        for line, _ in heads:
            if line.label not in seen:
                raise ArchError(f"the auxiliary head '{line.label}' is not an output of the network", line.label_span,
                                hint=f"add @{line.label} to the `output` line (at {out.span.line}:{out.span.column})")
        main = [o for o in self.ir.outputs if not o.training_only]
        if not main:
            raise ArchError("the network returns only auxiliary heads, which exist in training mode only", out.span,
                            hint="name at least one output that is not an `aux` line")
        self.ir.output_id = main[0].node

    def line(self, line: ast.Line, x: Val, env: Env, scope: Scope, labels: dict[str, Span]) -> Val:
        body = env.body
        if body is not None:
            body.current = line
        if line.label is None:
            return self.expr(line.expr, x, env, scope)
        if line.label in labels:
            raise ArchError(f"duplicate label '{line.label}' (first used at {labels[line.label]})", line.label_span)
        labels[line.label] = line.label_span
        y = self.expr(line.expr, x, env, self.open_scope(ScopeKind.LABEL, line.span, scope, label=line.label,
                                                         entry=x.node))
        if body is not None:
            body.values[line.label] = Val(y.node, y.shape)
        return y

    # ---- references ----

    def ref_value(self, r: ast.Ref, body: Body | None, outputs: bool = False) -> Val:
        """The value `@name` stands for: the output of the earlier line labelled `name` in this body."""
        name = r.name
        if body is None:  # pragma: no cover - every body is elaborated with its labels
            raise ArchError("references can be used only in the lines of a network or def", r.span)
        if name == "input":
            if "input" in body.written:
                raise ref_error(r, list(body.values), body.written, None)
            self.ir.ref_names.setdefault(body.input.node, name)
            return Val(body.input.node, body.input.shape, name)
        found = body.values.get(name)
        if found is None:
            own = body.current.label if body.current is not None and not outputs else None
            raise ref_error(r, list(body.values), body.written, own)
        if name in body.aux and not outputs and not (body.current is not None and body.current.aux):
            raise ArchError(f"@{name} refers to an auxiliary head, which exists in training mode only", r.name_span,
                            hint="only other `aux` lines and the `output` line can read an auxiliary head")
        self.ir.ref_names.setdefault(found.node, name)
        return Val(found.node, found.shape, name)

    def ref(self, r: ast.Ref, env: Env) -> Val:
        if r.args:
            ref_fit(r)  # a wrong flag reads as such
            raise ArchError(f"@{r.name} {r.args[0].value.name if isinstance(r.args[0].value, ast.Name) else '...'}: "
                            "a fitted reference is a whole branch of a concat or a sum", r.span,
                            hint=f"for example: [@{r.name} crop, skip] (the others' size is what it is fitted to)")
        return self.ref_value(r, env.body)

    def fit(self, vals: list[Val], branches: list, fits: dict[int, str], span: Span, scope: Scope,
            what: str) -> list[Val]:
        """Fits the references flagged `crop` or `pad` (at `fits`) and the other branches of a join
        to one height and width: the smallest (crop: the larger are centre-cropped) or the largest
        (pad: the smaller are zero-padded).  The other branches must agree among themselves."""
        modes = set(fits.values())
        if len(modes) > 1:
            second = [i for i in fits if fits[i] != fits[min(fits)]][0]
            raise ArchError(f"the references of one {what} are fitted all by crop or all by pad", branches[second].span)
        mode = modes.pop()
        for i, v in enumerate(vals):
            if not v.shape.is_image:  # a fit crops or pads heights and widths, dims[1:] of CxHxW
                raise ArchError(f"only CxHxW tensors can be {'cropped' if mode == 'crop' else 'padded'}, not "
                                f"{v.shape.layout.the} {v.shape}", branches[i].span,
                                hint=None if v.shape.is_vector else "fit the images before turning them into "
                                "tokens, channels-last images or windows")
        rest = [i for i in range(len(vals)) if i not in fits]
        for i in rest[1:]:
            a, b = vals[rest[0]].shape, vals[i].shape
            if a.dims[1:] != b.dims[1:]:
                raise ArchError(f"the branches of this {what} have different heights and widths: {a} and {b}",
                                branches[i].span,
                                notes=[Note(f"the first branch ({a}) is here", branches[rest[0]].span)],
                                hint="only a reference flagged crop or pad is fitted to the others")
        hws = [v.shape.dims[1:] for v in vals]
        if any(is_symbolic(hw) for hw in hws):
            raise Unstageable("a reference fitted to a size that depends on a value")
        pick = min if mode == "crop" else max
        target = (pick(hw[0] for hw in hws), pick(hw[1] for hw in hws))
        spec = ops.REGISTRY["_crop" if mode == "crop" else "_zeropad"]
        out = []
        for i, v in enumerate(vals):
            if v.shape.dims[1:] == target:
                out.append(v)
                continue
            attrs = {"target": target}
            try:
                shape = spec.infer(attrs, [v.shape])
            except ShapeError as err:  # pragma: no cover - the target is the smallest/largest
                raise ArchError(str(err), branches[i].span) from None
            note = f"{v.shape} {'centre-cropped' if mode == 'crop' else 'zero-padded'} to {target[0]}x{target[1]}"
            out.append(self.node(spec.name, attrs, [v], shape, branches[i].span, scope, note=note))
        return out

    # ---- graph building ----

    @staticmethod
    def open_scope(kind: ScopeKind, span: Span, parent: Scope, def_name: str | None = None,
                   label: str | None = None, entry: int | None = None) -> Scope:
        sub = Scope(kind, span, parent, def_name=def_name, label=label)
        sub.entry = entry
        parent.items.append(sub)
        return sub

    def node(self, op: str, attrs: dict, inputs: list[Val], out: TensorType, span: Span, scope: Scope | None,
             role: Role = Role.LAYER, note: str | None = None) -> Val:
        """Adds a node to the graph and to `scope` (None: to no scope, as the input)."""
        if len(self.ir.nodes) + self.repeat_product > NODE_BUDGET:
            if self.repeat_product > 1:
                raise ArchError(f"these repeats would expand to at least {self.repeat_product:,} nodes, over the "
                                f"limit of {NODE_BUDGET:,}", self.repeat_span, hint="check the repeat counts")
            raise ArchError(f"the network expands to more than {NODE_BUDGET:,} nodes", span,
                            hint="check the repeat counts")
        node = Node(len(self.ir.nodes), op, attrs, tuple(v.node for v in inputs), tuple(v.shape for v in inputs),
                    out, span, role, note)
        self.ir.add(node)
        for v in inputs:
            if v.ref is not None:  # read by reference: a long edge in diagrams
                self.ir.ref_edges.setdefault((v.node, node.id), v.ref)
        if scope is not None:
            scope.items.append(node)
        return Val(node.id, out)

    def apply(self, spec: OpSpec, kernel, given: dict, x: Val, span: Span, scope: Scope, env: Env,
              role: Role = Role.LAYER) -> Val:
        """Completes a one-input op's attributes with defaults and settings, infers its shape, adds it."""
        attrs = dict(given)
        if "kernel" in attrs:  # `conv c kernel=k`
            if kernel is not None:
                raise ArchError(f"{spec.name}{kernel[0]}x{kernel[1]} already has a kernel size; "
                                "drop kernel= or the size", span)
            k = attrs.pop("kernel")
            kernel = (k, k)
        for key, arg in spec.args.items():
            if key not in attrs:
                default = env.op_default(spec.name, key)
                if default is not None:
                    attrs[key] = arg.check(default)
                    continue
                if arg.required:
                    raise ArchError(f"{spec.name} needs a value for '{key}'", span,
                                    hint=f"for example: {spec.examples[0].text}" if key in spec.positional else None)
                attrs[key] = arg.default
        if kernel is not None:
            if kernel[0] < 1 or kernel[1] < 1:
                raise ArchError(f"a kernel size must be at least 1, not {kernel[0]}x{kernel[1]}", span)
            attrs["kernel"] = kernel
        for key, setting in spec.settings.items():
            if attrs.get(key) is None:
                value = env.setting(setting)
                attrs[key] = BIAS_SETTING[value] if setting == "bias" else value
        if spec.flatten_input and x.shape.is_image:
            flatten = ops.REGISTRY["flatten"]
            x = self.node(flatten.name, {}, [x], flatten.infer({}, [x.shape]), span, scope,
                          role=Role.IMPLICIT, note=f"implicit flatten before {spec.name}")
        try:
            out = spec.infer(attrs, [x.shape])
        except ShapeError as err:
            raise ArchError(str(err), span) from None
        return self.node(spec.name, attrs, [x], out, span, scope, role=role)

    def join(self, op: str, vals: list[Val], branches: list, span: Span, scope: Scope, hint: str | None = None,
             check_only: bool = False, attrs: dict[str, Any] | None = None) -> Val | None:
        """Adds a multi-input op (a sum, a concat) over `vals`, made by `branches`; a shape that
        does not fit is an error at its branch, with a note at the first."""
        spec = ops.REGISTRY[op]
        attrs = dict(attrs or {})
        try:
            out = spec.infer(attrs, [v.shape for v in vals])
        except ShapeError as err:
            i = err.index or 0
            where = branches[i].span if i < len(branches) else span
            notes = [Note(f"the first branch ({vals[0].shape}) is here", branches[0].span)] if i else []
            raise ArchError(str(err), where, notes=notes, hint=hint) from None
        if check_only:
            return None
        return self.node(op, attrs, vals, out, span, scope, role=Role.MERGE)

    # ---- expressions ----

    def expr(self, e: ast.Expr, x: Val, env: Env, scope: Scope) -> Val:
        if isinstance(e, ast.Seq):
            for i, item in enumerate(e.items):
                ref = leading_ref(item) if i else None
                if ref is not None:
                    raise ArchError(f"@{ref.name} in the middle of a sequence would drop what comes before it",
                                    ref.span, hint="a reference starts a sequence (`@a > conv1x1 8`) or is a branch "
                                                   "of a concat, sum or product (`[@a, skip]`)")
                x = self.expr(item, x, env, scope)
            return x
        if isinstance(e, ast.Ref):
            return self.ref(e, env)
        if isinstance(e, ast.Call):
            return self.call(e, x, env, scope)
        if isinstance(e, ast.Sum):
            return self.sum(e, x, env, scope)
        if isinstance(e, ast.Concat):
            return self.concat(e, x, env, scope)
        if isinstance(e, ast.Product):
            return self.product(e, x, env, scope)
        if isinstance(e, ast.Repeat):
            return self.repeat(e, x, env, scope)
        assert isinstance(e, ast.BracketCall), e
        return expand(self, e, x, env, scope)

    def repeat(self, r: ast.Repeat, x: Val, env: Env, scope: Scope) -> Val:
        n = count(r.count, env, "a repeat count")
        if isinstance(n, Sym):
            return self.staged_repeat(r, n, x, env, scope)
        if n == 0 and not isinstance(r.count, ast.Num) and isinstance(r.body, ast.Call) \
                and r.body.name in env.unit.defs:
            # a computed count of calls that came to 0 (`basic c x(n-1)` with n=1) leaves an
            # empty list item, so that names do not depend on the count
            self.open_scope(ScopeKind.REPEAT, r.span, scope, def_name=r.body.name)
            return x
        first = len(scope.items)
        try:
            return self._repeat(r, n, x, env, scope)
        finally:
            for item in scope.items[first:]:
                if isinstance(item, Scope) and item.kind is ScopeKind.CALL:
                    item.from_repeat = True

    def staged_repeat(self, r: ast.Repeat, n: Sym, x: Val, env: Env, scope: Scope) -> Val:
        """A repeat counted by a parameter: its body once, in a REPEAT block, to be built by a
        loop; so the body must be one def call.  Where the call changes its input's shape by a
        fixed step (a DenseNet layer adds `growth` channels), the loop's index `i` gives each
        call its own: `Layer(in_c + i * growth, growth) for i in range(n)`."""
        first, notes = len(self.ir.nodes), len(self.ir.notes)
        sub = self.open_scope(ScopeKind.REPEAT, r.span, scope)
        y = self.expr(r.body, x, env, sub)
        if len(sub.items) != 1 or not isinstance(sub.items[0], Scope) or sub.items[0].kind is not ScopeKind.CALL:
            raise Unstageable("a repeat counted by a parameter whose body is not one def call")
        if self.ir.nodes[y.node].attrs.get("bias") == "auto":
            # each call's last layer keeps or drops its bias by what follows it: the next call
            # or, for the last one, the next line
            raise Unstageable("a repeat counted by a parameter whose calls end in a layer with bias=auto")
        index = None
        if y.shape != x.shape:
            if y.shape.layout != x.shape.layout:
                raise Unstageable("a repeat counted by a parameter that changes the layout")
            step = [b - a for a, b in zip(x.shape.dims, y.shape.dims, strict=True)]
            if any(isinstance(s, Sym) and "i" in s.names for s in step):
                raise Unstageable("a repeat's step already uses the name `i`")
            self.ir.truncate(first)  # again, with the index in the input's shape
            del self.ir.notes[notes:]
            scope.items.remove(sub)
            index = Sym.leaf("i", 0)
            start = TensorType(tuple(a + index * s for a, s in zip(x.shape.dims, step, strict=True)),
                               x.shape.layout)
            sub = self.open_scope(ScopeKind.REPEAT, r.span, scope)
            y = self.expr(r.body, Val(x.node, start), env, sub)
            if y.shape.dims != tuple(a + s for a, s in zip(start.dims, step, strict=True)):
                raise Unstageable("a repeat counted by a parameter whose step is not fixed")
            y = Val(y.node, TensorType(tuple(a + n * s for a, s in zip(x.shape.dims, step, strict=True)),
                                       x.shape.layout))
        sub.repeat = (n, index, y.shape)
        sub.items[0].from_repeat = True
        sub.def_name = sub.items[0].def_name
        return y

    def _repeat(self, r: ast.Repeat, n: int, x: Val, env: Env, scope: Scope) -> Val:
        if n > NODE_BUDGET:
            raise ArchError(f"a repeat of {n:,} is over the limit of {NODE_BUDGET:,} nodes", r.count_span)
        if n == 0:
            return x
        before = len(self.ir.nodes)
        outer = (self.repeat_product, self.repeat_span)
        self.repeat_product *= n
        self.repeat_span = self.repeat_span or r.count_span
        try:
            x = self.expr(r.body, x, env, scope)
        finally:
            self.repeat_product, self.repeat_span = outer
        per = len(self.ir.nodes) - before
        if len(self.ir.nodes) + per * (n - 1) > NODE_BUDGET:
            raise ArchError(
                f"this repeat would expand to {per * n:,} nodes, over the limit of {NODE_BUDGET:,}",
                r.count_span, hint="check the repeat count")
        for _ in range(n - 1):
            x = self.expr(r.body, x, env, scope)
        return x

    def call(self, c: ast.Call, x: Val, env: Env, scope: Scope) -> Val:
        if c.name == "skip":
            if c.args:
                raise ArchError("a `skip` with options only has a meaning as a branch of a sum (`a | skip pad`)",
                                c.span)
            return x
        if c.name in env.unit.defs:
            d, home = env.unit.defs[c.name]
            return self.def_call(c, d, home, x, env, scope)
        if c.name in SUGAR:
            raise ArchError(f"{c.name} needs its branches in brackets", c.span, hint=SUGAR[c.name].example)
        found = ops.find(c.name, c.args)
        if found is None:
            if ops.lookup(c.name + "3x3"):
                hint = f"{c.name} needs a kernel size: {c.name}3x3, or as a value, {c.name} ... kernel=3"
            else:
                hint = synonym_hint(c.name) or did_you_mean(c.name, [*env.unit.defs, *ops.user_words(), "skip", *SUGAR])
            raise ArchError(f"unknown op or def '{c.name}'", c.name_span, hint=hint)
        spec, kernel = found
        return self.apply(spec, kernel, bind_op(spec, c, env), x, c.span, scope, env)

    def def_call(self, c: ast.Call, d: ast.Def, home: Unit, x: Val, env: Env, scope: Scope) -> Val:
        for name, _span in env.calls:
            if name == d.name:
                hint = None
                if ops.lookup(d.name) or ops.bare_kernel_op(d.name):
                    hint = (f"a def cannot take the name of the op it calls; to change the op's defaults in this "
                            f"file, write `set {d.name}.ARG = VALUE` (for example `set bn.eps = 0.001`)")
                raise ArchError(f"def {d.name} calls itself (recursion is not allowed)", c.span, hint=hint)
        if len(env.calls) >= MAX_CALL_DEPTH:
            raise ArchError(f"defs are nested more than {MAX_CALL_DEPTH} calls deep", c.span)
        values = bind_def(d, c, env)
        given = frozenset(values)
        for p in d.params:
            if p.name in values:
                continue
            if p.default is None:
                raise ArchError(f"missing argument '{p.name}' of {d.name}({', '.join(q.name for q in d.params)})",
                                c.span)
            values[p.name] = evaluate(p.default, Env(home, dict(values), x.shape, env.net_settings))
        values = {p.name: values[p.name] for p in d.params}
        key = None
        if self.memo is not None:
            key = self.memo.key(d, home, values, x.shape, env)
            done = self.memo.get(key)
            if done is not None and len(self.ir.nodes) + done.size + self.repeat_product <= NODE_BUDGET:
                return self.memo.replay(self.ir, done, x, c.span, scope)
        call_env = Env(home, values, x.shape, env.net_settings, env.calls + ((d.name, c.span),), body=Body(d.body, x))
        sub = self.open_scope(ScopeKind.CALL, c.span, scope, def_name=d.name, entry=x.node)
        sub.call = CallInfo(values, given, x.shape, tuple(sorted(env.net_settings.items())), d, home)
        first, notes, start = len(self.ir.nodes), len(self.ir.notes), x
        try:
            labels: dict[str, Span] = {}
            for line in d.body:
                if isinstance(line, ast.Setting):
                    raise ArchError("`set` goes at file level or in a network, not in a def", line.span)
                x = self.line(line, x, call_env, sub, labels)
        except ArchError as err:
            if len(err.notes) < MAX_NOTES:
                err.notes.append(Note(f"in def {d.name} called at {c.span}"))
            raise
        if key is not None:
            self.memo.record(key, self.ir, sub, first, start, x, notes)
        return x

    def sum(self, s: ast.Sum, x: Val, env: Env, scope: Scope) -> Val:
        mains = [b for b in s.branches if not is_skip(b)]
        skips = [b for b in s.branches if is_skip(b)]
        built = [b for b in mains if not isinstance(b, ast.Ref)]
        outs: list[Val] = []
        start = len(scope.items)
        for branch in mains:
            if isinstance(branch, ast.Ref):
                outs.append(self.ref_value(branch, env.body))
                continue
            target_scope = scope
            if len(built) > 1:
                target_scope = self.open_scope(ScopeKind.BRANCH, branch.span, scope, entry=x.node)
            outs.append(self.expr(branch, x, env, target_scope))
        fits = {i: ref_fit(b) for i, b in enumerate(mains) if isinstance(b, ast.Ref) and ref_fit(b)}
        if fits:
            outs = self.fit(outs, mains, fits, s.span, scope, "sum")
        hint = "only a `skip` branch is projected to fit; other branches must agree"
        if len(outs) > 1:
            self.join("_add", outs, mains, s.span, scope, hint=hint, check_only=True)
        target = outs[0].shape if outs else x.shape
        vals = list(outs)
        optional: dict[int, list] = {}  # staged: the inputs added only where their shapes fit
        fitted = len(scope.items)
        for sk in skips:
            self.optional_fit = None
            out = lower_skip(self, sk, x, target, scope, env)
            if out is not None:
                if self.optional_fit is not None:  # where it is added, it has the sum's shape
                    optional[len(vals)] = self.optional_fit
                    out = Val(out.node, target)
                vals.append(out)
        if skips and mains and is_skip(s.branches[0]):
            # `skip | main`: the shortcut is built (registered) before the main path, as RegNet
            # registers its `proj` before `f`; it is still computed from the block's input
            scope.items[start:] = scope.items[fitted:] + scope.items[start:fitted]
        if not vals:
            return x
        if len(vals) == 1:
            return vals[0]
        return self.join("_add", vals, [*mains, *skips], s.span, scope, hint=hint,
                         attrs={"optional": optional} if optional else None)

    def product(self, p: ast.Product, x: Val, env: Env, scope: Scope) -> Val:
        """`a & b`: the branches' outputs multiplied elementwise, broadcasting dimensions of 1 (a
        squeeze-and-excitation gate: `skip & gap > conv1x1 16 > relu > conv1x1 64 > sigmoid`)."""
        mains = [b for b in p.branches if not is_skip(b) and not isinstance(b, ast.Ref)]
        vals: list[Val] = []
        for branch in p.branches:
            if is_skip(branch):
                if branch.args:
                    raise ArchError("in a product, skip is the plain identity and takes no flags", branch.span,
                                    hint="only a skip in a sum (`a | skip pad`) is fitted to a shape")
                vals.append(x)
                continue
            if isinstance(branch, ast.Ref):
                if branch.args:
                    ref_fit(branch)
                    raise ArchError("in a product, a reference takes no flags", branch.span,
                                    hint="a product broadcasts dimensions of 1; crop and pad fit concats and sums")
                vals.append(self.ref_value(branch, env.body))
                continue
            target = scope if len(mains) == 1 else self.open_scope(ScopeKind.BRANCH, branch.span, scope, entry=x.node)
            vals.append(self.expr(branch, x, env, target))
        return self.join("_mul", vals, list(p.branches), p.span, scope,
                         hint="a product multiplies equal shapes, or broadcasts a dimension of 1 (Cx1x1 gates CxHxW)")

    def concat(self, c: ast.Concat, x: Val, env: Env, scope: Scope) -> Val:
        vals: list[Val] = []
        fits: dict[int, str] = {}
        for i, branch in enumerate(c.branches):
            if is_skip(branch):
                if branch.args:
                    raise ArchError("inside a concat, skip is the plain identity and takes no flags",
                                    branch.span)
                vals.append(x)
                continue
            if isinstance(branch, ast.Ref):
                fit = ref_fit(branch)
                if fit:
                    fits[i] = fit
                vals.append(self.ref_value(branch, env.body))
                continue
            vals.append(self.expr(branch, x, env, self.open_scope(ScopeKind.BRANCH, branch.span, scope,
                                                                  entry=x.node)))
        if fits:
            vals = self.fit(vals, list(c.branches), fits, c.span, scope, "concat")
        refs = [b for b in c.branches if isinstance(b, ast.Ref) and not b.args]
        hint = None
        if refs:
            hint = (f"a reference can be fitted to the others' height and width: @{refs[0].name} crop "
                    f"(centre crop) or @{refs[0].name} pad (zero pad)")
        return self.concat_of(vals, list(c.branches), c.span, scope, hint)

    def concat_of(self, vals: list[Val], branches: list, span: Span, scope: Scope, hint: str | None = None) -> Val:
        if len(vals) == 1:
            return vals[0]
        return self.join("_concat", vals, branches, span, scope, hint=hint)
