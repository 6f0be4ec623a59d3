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
from archlang.compiler.ir import CallInfo, NetworkIR, Node, Role, Scope, ScopeKind, TensorType
from archlang.compiler.loader import Unit, check_setting
from archlang.compiler.lowering.shortcuts import lower_skip
from archlang.compiler.lowering.sugar import SUGAR, expand
from archlang.compiler.ops import OpSpec, ShapeError
from archlang.compiler.replay import CallMemo
from archlang.compiler.symbolic import Sym, Unstageable
from archlang.compiler.values import Env, count, evaluate
from archlang.errors import ArchError, Note, Span, did_you_mean
from archlang.frontend import ast

NODE_BUDGET = 200_000  # `archc check` of a network at the limit takes about 5 s and 250 MB
MAX_CALL_DEPTH = 64
MAX_NOTES = 8
BIAS_SETTING = {"on": True, "off": False, "auto": "auto"}  # the `bias` setting as a value of `bias`


class Val(NamedTuple):
    """A tensor flowing through elaboration: the node that produces it and its shape."""

    node: int
    shape: TensorType


def is_skip(e: ast.Expr) -> bool:
    return isinstance(e, ast.Call) and e.name == "skip"


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
        env = Env(home, values, inp, settings, ((d.name, d.span),))
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
        for line in self.net.body:
            if isinstance(line, ast.Setting):
                check_setting(line)
                net_settings = {**net_settings, line.key: line.value}
                continue
            env = Env(self.unit, dict(self.ir.arguments), x.shape, net_settings)
            x = self.line(line, x, env, root, labels)
        self.ir.output_id = x.node
        return self.ir

    def line(self, line: ast.Line, x: Val, env: Env, scope: Scope, labels: dict[str, Span]) -> Val:
        if line.label is None:
            return self.expr(line.expr, x, env, scope)
        if line.label in labels:
            raise ArchError(f"duplicate label '{line.label}' (first used at {labels[line.label]})", line.label_span)
        labels[line.label] = line.label_span
        return self.expr(line.expr, x, env, self.open_scope(ScopeKind.LABEL, line.span, scope, label=line.label))

    # ---- graph building ----

    @staticmethod
    def open_scope(kind: ScopeKind, span: Span, parent: Scope, def_name: str | None = None,
                   label: str | None = None) -> Scope:
        sub = Scope(kind, span, parent, def_name=def_name, label=label)
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
            for item in e.items:
                x = self.expr(item, x, env, scope)
            return x
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
                hint = did_you_mean(c.name, [*env.unit.defs, *ops.user_words(), "skip", *SUGAR])
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
        call_env = Env(home, values, x.shape, env.net_settings, env.calls + ((d.name, c.span),))
        sub = self.open_scope(ScopeKind.CALL, c.span, scope, def_name=d.name)
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
        outs: list[Val] = []
        start = len(scope.items)
        for branch in mains:
            target_scope = scope
            if len(mains) > 1:
                target_scope = self.open_scope(ScopeKind.BRANCH, branch.span, scope)
            outs.append(self.expr(branch, x, env, target_scope))
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
        mains = [b for b in p.branches if not is_skip(b)]
        vals: list[Val] = []
        for branch in p.branches:
            if is_skip(branch):
                if branch.args:
                    raise ArchError("in a product, skip is the plain identity and takes no flags", branch.span,
                                    hint="only a skip in a sum (`a | skip pad`) is fitted to a shape")
                vals.append(x)
                continue
            target = scope if len(mains) == 1 else self.open_scope(ScopeKind.BRANCH, branch.span, scope)
            vals.append(self.expr(branch, x, env, target))
        return self.join("_mul", vals, list(p.branches), p.span, scope,
                         hint="a product multiplies equal shapes, or broadcasts a dimension of 1 (Cx1x1 gates CxHxW)")

    def concat(self, c: ast.Concat, x: Val, env: Env, scope: Scope) -> Val:
        vals: list[Val] = []
        for branch in c.branches:
            if is_skip(branch):
                if branch.args:
                    raise ArchError("inside a concat, skip is the plain identity and takes no flags",
                                    branch.span)
                vals.append(x)
                continue
            vals.append(self.expr(branch, x, env, self.open_scope(ScopeKind.BRANCH, branch.span, scope)))
        return self.concat_of(vals, list(c.branches), c.span, scope)

    def concat_of(self, vals: list[Val], branches: list, span: Span, scope: Scope) -> Val:
        if len(vals) == 1:
            return vals[0]
        return self.join("_concat", vals, branches, span, scope)
