"""AST → IR: expands defs, repeats, sums, concats and inception sugar into a NetworkIR.

Expansion and shape inference run together, because widths may follow the incoming tensor
(`conv1x1 in.c//2`).  Every user mistake found here is an ArchError at the offending span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from archlang.compiler import ops
from archlang.compiler.ir import NetworkIR, Node, Scope, TensorType
from archlang.compiler.loader import DEFAULT_SETTINGS, Unit, check_setting
from archlang.compiler.ops import ArgError, OpSpec, ShapeError
from archlang.errors import ArchError, Note, Span, did_you_mean
from archlang.frontend import ast

NODE_BUDGET = 1_000_000
MAX_CALL_DEPTH = 64
MAX_VALUE = 10**12
MAX_NOTES = 8
SKIP_POLICIES = ("pad", "project", "optional")
BIAS_SETTING = {"on": True, "off": False, "auto": "auto"}


class Val(NamedTuple):
    """A tensor flowing through elaboration: the node that produces it and its shape."""

    node: int
    shape: TensorType


@dataclass(frozen=True)
class Env:
    unit: Unit  # whose defs are visible, and whose file-level settings apply
    values: dict[str, int | float]  # params in scope
    inp: TensorType | None  # what `in` means here
    net_settings: dict[str, str]  # `set` lines of the network in force
    calls: tuple[tuple[str, Span], ...] = ()

    def setting(self, key: str) -> str:
        return self.net_settings.get(key) or self.unit.settings.get(key) or DEFAULT_SETTINGS[key]


def _is_skip(e: ast.Expr) -> bool:
    return isinstance(e, ast.Call) and e.name == "skip"


def evaluate(v: ast.Value, env: Env) -> int | float:
    """The number a value expression stands for in `env` (params, `in`)."""
    if isinstance(v, ast.Num):
        result = v.value
    elif isinstance(v, ast.Name):
        if v.name not in env.values:
            raise ArchError(f"unknown name '{v.name}'", v.span,
                            hint=did_you_mean(v.name, env.values) or _params_hint(env))
        result = env.values[v.name]
    elif isinstance(v, ast.InAttr):
        result = _in_attr(v, env)
    else:
        left, right = evaluate(v.left, env), evaluate(v.right, env)
        if v.op == "+":
            result = left + right
        elif v.op == "-":
            result = left - right
        elif v.op == "*":
            result = left * right
        else:
            if right == 0:
                raise ArchError("division by zero", v.span)
            result = left // right
    if isinstance(result, float) and result != result:  # NaN
        raise ArchError("this value is not a number", v.span)
    if abs(result) > MAX_VALUE:
        raise ArchError(f"this value is too large ({result:.3g})", v.span)
    return result

def _params_hint(env: Env) -> str:
    if env.values:
        return "names in scope here: " + ", ".join(sorted(env.values))
    return "no parameters are in scope here"

def _in_attr(v: ast.InAttr, env: Env) -> int:
    if v.attr not in ("c", "h", "w"):
        raise ArchError(f"'in' has c, h and w, not '{v.attr}'", v.span)
    inp = env.inp
    if inp is None:
        raise ArchError("'in' is not defined here", v.span, hint="in.c means the width entering a call or line")
    if inp.is_vector:
        if v.attr != "c":
            raise ArchError(f"in.{v.attr} is undefined: the input here is the feature vector {inp}", v.span)
        return inp.c
    return {"c": inp.c, "h": inp.h, "w": inp.w}[v.attr]


@dataclass(frozen=True)
class _Expansion:
    """What one def call added: its scope, the ids of its nodes [first, end), its input and output."""

    scope: Scope
    first: int
    end: int
    input: Val
    output: Val
    notes: list[str]

    @property
    def size(self) -> int:
        return self.end - self.first


class Elaborator:
    def __init__(self, net: ast.Network, unit: Unit, arguments: dict[str, Any], plain: bool = False,
                 reuse: bool = True):
        self.net = net
        self.unit = unit
        self.plain = plain
        self.ir = NetworkIR(net.name, arguments, net.span, dict(unit.settings))
        # product of the counts of the repeats being expanded, and the outermost one's span:
        # every node made inside them will be made at least that many times
        self.repeat_product = 1
        self.repeat_span: Span | None = None
        self.reuse = reuse  # copy repeated def calls (False: elaborate every call; tests compare the two)
        self._expansions: dict[tuple, _Expansion] = {}

    # ---- entry ----

    def run(self) -> NetworkIR:
        inp = TensorType(dims=self.net.input_shape)
        root = self.ir.root
        x = self._node("_input", {}, [], inp, self.net.input_span, root, role="input", register=False)
        net_settings: dict[str, str] = {}
        labels: dict[str, Span] = {}
        for line in self.net.body:
            if isinstance(line, ast.Setting):
                check_setting(line)
                net_settings = {**net_settings, line.key: line.value}
                continue
            env = Env(self.unit, dict(self.ir.arguments), x.shape, net_settings)
            x = self._line(line, x, env, root, labels)
        self.ir.output_id = x.node
        return self.ir

    def _line(self, line: ast.Line, x: Val, env: Env, scope: Scope, labels: dict[str, Span]) -> Val:
        if line.label is None:
            return self._expr(line.expr, x, env, scope)
        if line.label in labels:
            raise ArchError(f"duplicate label '{line.label}' (first used at {labels[line.label]})", line.label_span)
        labels[line.label] = line.label_span
        sub = Scope("label", line.span, scope, label=line.label)
        scope.items.append(sub)
        return self._expr(line.expr, x, env, sub)

    # ---- graph building ----

    def _node(self, op: str, attrs: dict, inputs: list[Val], out: TensorType, span: Span, scope: Scope,
              role: str = "layer", register: bool = True, note: str | None = None) -> Val:
        if len(self.ir.nodes) + self.repeat_product > NODE_BUDGET:
            if self.repeat_product > 1:
                raise ArchError(f"these repeats would expand to at least {self.repeat_product:,} nodes, over the "
                                f"limit of {NODE_BUDGET:,}", self.repeat_span, hint="check the repeat counts")
            raise ArchError(f"the network expands to more than {NODE_BUDGET:,} nodes", span,
                            hint="check the repeat counts")
        node = Node(id=len(self.ir.nodes), op=op, attrs=attrs, inputs=[v.node for v in inputs],
                    in_shapes=[v.shape for v in inputs], shape=out, span=span, scope=scope, role=role,
                    note=note)
        self.ir.add(node)
        if register:
            scope.items.append(node)
        return Val(node.id, out)

    def _apply(self, spec: OpSpec, kernel, given: dict, x: Val, span: Span, scope: Scope, env: Env,
               role: str = "layer") -> Val:
        """Completes an op's attributes with defaults and settings, infers its shape, adds it."""
        attrs = dict(given)
        for key, arg in spec.args.items():
            if key not in attrs:
                if arg.required:
                    raise ArchError(f"{spec.name} needs a value for '{key}'", span,
                                    hint=f"for example: {spec.name} 64" if key in spec.positional else None)
                attrs[key] = arg.default
        if kernel is not None:
            if kernel[0] < 1 or kernel[1] < 1:
                raise ArchError(f"a kernel size must be at least 1, not {kernel[0]}x{kernel[1]}", span)
            attrs["kernel"] = kernel
        if attrs.get("padding", 0) is None:
            attrs["padding"] = env.setting("padding")
        if spec.name in ops.BIAS_FLAGGED and attrs.get("bias") is None:
            attrs["bias"] = BIAS_SETTING[env.setting("bias")]
        if spec.name == "dense" and not x.shape.is_vector:
            x = self._node("flatten", {}, [x], TensorType(dims=(x.shape.numel,)), span, scope,
                           role="implicit", note="implicit flatten before dense")
        try:
            out = spec.infer(attrs, x.shape)
        except ShapeError as err:
            raise ArchError(str(err), span) from None
        return self._node(spec.name, attrs, [x], out, span, scope, role=role)

    # ---- values ----

    def _count(self, v: ast.Value, env: Env, what: str) -> int:
        n = evaluate(v, env)
        if isinstance(n, float):
            if not n.is_integer():
                raise ArchError(f"{what} must be a whole number, not {n:g}", v.span)
            n = int(n)
        if n < 0:
            raise ArchError(f"{what} cannot be negative ({n})", v.span)
        return n

    # ---- expressions ----

    def _expr(self, e: ast.Expr, x: Val, env: Env, scope: Scope) -> Val:
        if isinstance(e, ast.Seq):
            for item in e.items:
                x = self._expr(item, x, env, scope)
            return x
        if isinstance(e, ast.Call):
            return self._call(e, x, env, scope)
        if isinstance(e, ast.Sum):
            return self._sum(e, x, env, scope)
        if isinstance(e, ast.Concat):
            return self._concat(e, x, env, scope)
        if isinstance(e, ast.Repeat):
            return self._repeat(e, x, env, scope)
        assert isinstance(e, ast.BracketCall), e
        return self._inception(e, x, env, scope)

    def _repeat(self, r: ast.Repeat, x: Val, env: Env, scope: Scope) -> Val:
        n = self._count(r.count, env, "a repeat count")
        if n > NODE_BUDGET:
            raise ArchError(f"a repeat of {n:,} is over the limit of {NODE_BUDGET:,} nodes", r.count_span)
        if n == 0:
            return x
        before = len(self.ir.nodes)
        outer = (self.repeat_product, self.repeat_span)
        self.repeat_product *= n
        self.repeat_span = self.repeat_span or r.count_span
        try:
            x = self._expr(r.body, x, env, scope)
        finally:
            self.repeat_product, self.repeat_span = outer
        per = len(self.ir.nodes) - before
        if len(self.ir.nodes) + per * (n - 1) > NODE_BUDGET:
            raise ArchError(
                f"this repeat would expand to {per * n:,} nodes, over the limit of {NODE_BUDGET:,}",
                r.count_span, hint="check the repeat count")
        for _ in range(n - 1):
            x = self._expr(r.body, x, env, scope)
        return x

    def _call(self, c: ast.Call, x: Val, env: Env, scope: Scope) -> Val:
        if c.name == "skip":
            if c.args:
                raise ArchError("a `skip` with options only has a meaning as a branch of a sum (`a | skip pad`)",
                                c.span)
            return x
        if c.name in env.unit.defs:
            d, home = env.unit.defs[c.name]
            return self._def_call(c, d, home, x, env, scope)
        if c.name == "inception":
            raise ArchError("inception needs its branches in brackets", c.span,
                            hint="for example: inception[1x1 64, 3x3 128 reduce=96, 5x5 32 reduce=16, pool 32]")
        found = ops.lookup(c.name) if not c.name.startswith("_") else None
        if found is None:
            if ops.lookup(c.name + "3x3"):
                hint = f"{c.name} needs a kernel size, e.g. {c.name}3x3"
            else:
                hint = did_you_mean(c.name, [*env.unit.defs, *ops.user_words(), "skip", "inception"])
            raise ArchError(f"unknown op or def '{c.name}'", c.name_span, hint=hint)
        spec, kernel = found
        given = self._bind_op(spec, c, env)
        return self._apply(spec, kernel, given, x, c.span, scope, env)

    def _bind_op(self, spec: OpSpec, c: ast.Call, env: Env) -> dict:
        given: dict[str, Any] = {}
        spans: dict[str, Span] = {}
        positional = list(spec.positional)
        for arg in c.args:
            check = True
            if isinstance(arg, ast.Positional):
                if isinstance(arg.value, ast.Name) and arg.value.name not in env.values:
                    word = arg.value.name
                    if word not in spec.flags:
                        hint = did_you_mean(word, [*spec.flags, *env.values])
                        flags = ", ".join(spec.flags) if spec.flags else "none"
                        raise ArchError(f"'{word}' is neither a parameter in scope nor a flag of {c.name}",
                                        arg.span, hint=hint or f"flags of {c.name}: {flags}")
                    key, value = spec.flags[word]
                    check = False
                elif not positional:
                    n = len(spec.positional)
                    raise ArchError(f"{c.name} takes {n or 'no'} positional argument{'s' if n != 1 else ''}",
                                    arg.span)
                else:
                    key, value = positional.pop(0), evaluate(arg.value, env)
            elif isinstance(arg, ast.Stride):
                if "stride" not in spec.args:
                    raise ArchError(f"{c.name} has no stride", arg.span)
                key, value = "stride", evaluate(arg.value, env)
            else:
                key = arg.key
                if key not in spec.args:
                    hint = did_you_mean(key, spec.args)
                    known = ", ".join(spec.args) or "none"
                    raise ArchError(f"{c.name} has no argument '{key}'", arg.span,
                                    hint=hint or f"arguments of {c.name}: {known}")
                if key in positional:
                    positional.remove(key)
                value = evaluate(arg.value, env)
            if key in given:
                raise ArchError(f"'{key}' is given twice to {c.name} (first at {spans[key]})", arg.span)
            if check:
                try:
                    value = spec.args[key].check(value)
                except ArgError as err:
                    raise ArchError(f"{c.name}: {key} {err}", arg.span) from None
            given[key] = value
            spans[key] = arg.span
        return given

    def _def_call(self, c: ast.Call, d: ast.Def, home: Unit, x: Val, env: Env, scope: Scope) -> Val:
        for name, _span in env.calls:
            if name == d.name:
                raise ArchError(f"def {d.name} calls itself (recursion is not allowed)", c.span)
        if len(env.calls) >= MAX_CALL_DEPTH:
            raise ArchError(f"defs are nested more than {MAX_CALL_DEPTH} calls deep", c.span)
        names = [p.name for p in d.params]
        values: dict[str, Any] = {}
        pending = list(names)
        signature = f"{d.name}({', '.join(names)})"
        for arg in c.args:
            if isinstance(arg, ast.Positional):
                if isinstance(arg.value, ast.Name) and arg.value.name not in env.values:
                    raise ArchError(f"unknown name '{arg.value.name}'", arg.span,
                                    hint=did_you_mean(arg.value.name, env.values)
                                    or f"a def takes values, not flags: {signature}")
                if not pending:
                    raise ArchError(f"too many arguments for {signature}", arg.span)
                key = pending.pop(0)
            elif isinstance(arg, ast.Stride):
                key = "stride"
                if key not in names:
                    raise ArchError(f"{signature} has no stride parameter, so `/` cannot be used", arg.span)
            else:
                key = arg.key
                if key not in names:
                    raise ArchError(f"{signature} has no parameter '{key}'", arg.span,
                                    hint=did_you_mean(key, names))
            if key in values:
                raise ArchError(f"'{key}' is given twice to {d.name}", arg.span)
            if key in pending:
                pending.remove(key)
            values[key] = evaluate(arg.value, env)
        for p in d.params:
            if p.name in values:
                continue
            if p.default is None:
                raise ArchError(f"missing argument '{p.name}' of {signature}", c.span)
            values[p.name] = evaluate(p.default, Env(home, dict(values), x.shape, env.net_settings))
        # a call that repeats an earlier one (same def, values, input shape, settings and call
        # chain) expands to the same nodes: copy them rather than elaborate the body again
        key = (id(d), id(home), tuple((k, type(v), v) for k, v in values.items()), x.shape.dims,
               tuple(sorted(env.net_settings.items())), tuple(name for name, _ in env.calls))
        done = self._expansions.get(key) if self.reuse else None
        if done is not None and len(self.ir.nodes) + done.size + self.repeat_product <= NODE_BUDGET:
            return self._replay(done, x, c.span, scope)
        call_env = Env(home, {n: values[n] for n in names}, x.shape, env.net_settings,
                       env.calls + ((d.name, c.span),))
        sub = Scope("call", c.span, scope, def_name=d.name)
        scope.items.append(sub)
        first, notes, start = len(self.ir.nodes), len(self.ir.notes), x
        try:
            labels: dict[str, Span] = {}
            for line in d.body:
                if isinstance(line, ast.Setting):
                    raise ArchError("`set` goes at file level or in a network, not in a def", line.span)
                x = self._line(line, x, call_env, sub, labels)
        except ArchError as err:
            if len(err.notes) < MAX_NOTES:
                err.notes.append(Note(f"in def {d.name} called at {c.span}"))
            raise
        if all(i >= first or i == start.node for n in self.ir.nodes[first:] for i in n.inputs):
            self._expansions[key] = _Expansion(sub, first, len(self.ir.nodes), start, x, self.ir.notes[notes:])
        return x

    def _replay(self, done: _Expansion, x: Val, span: Span, scope: Scope) -> Val:
        """Adds a copy of an earlier call's nodes and scopes, fed by `x` instead of its input."""
        offset = len(self.ir.nodes) - done.first
        scopes: dict[int, Scope] = {}
        for old in done.scope.walk_scopes():
            parent = scopes[id(old.parent)] if old is not done.scope else scope
            new = Scope(old.kind, span if old is done.scope else old.span, parent,
                        def_name=old.def_name, label=old.label)
            new.repeat = old.repeat
            scopes[id(old)] = new
        copies: dict[int, Node] = {}
        for old in self.ir.nodes[done.first:done.end]:
            node = Node(id=old.id + offset, op=old.op, attrs=dict(old.attrs),
                        inputs=[x.node if i < done.first else i + offset for i in old.inputs],
                        in_shapes=old.in_shapes, shape=old.shape, span=old.span, scope=scopes[id(old.scope)],
                        role=old.role, note=old.note)
            self.ir.add(node)
            copies[old.id] = node
        for old in done.scope.walk_scopes():
            scopes[id(old)].items = [scopes[id(i)] if isinstance(i, Scope) else copies[i.id] for i in old.items]
        scope.items.append(scopes[id(done.scope)])
        self.ir.notes.extend(done.notes)
        out = done.output
        return x if out.node == done.input.node else Val(out.node + offset, out.shape)

    def _sum(self, s: ast.Sum, x: Val, env: Env, scope: Scope) -> Val:
        mains = [b for b in s.branches if not _is_skip(b)]
        skips = [b for b in s.branches if _is_skip(b)]
        outs: list[Val] = []
        for _i, branch in enumerate(mains):
            target_scope = scope
            if len(mains) > 1:
                target_scope = Scope("branch", branch.span, scope)
                scope.items.append(target_scope)
            outs.append(self._expr(branch, x, env, target_scope))
        for branch, out in zip(mains[1:], outs[1:], strict=True):
            if out.shape != outs[0].shape:
                raise ArchError(
                    f"the branches of this sum have different shapes: {outs[0].shape} and {out.shape}",
                    branch.span, notes=[Note(f"the first branch ({outs[0].shape}) is here", mains[0].span)],
                    hint="only a `skip` branch is projected to fit; other branches must agree")
        target = outs[0].shape if outs else x.shape
        vals = list(outs)
        for sk in skips:
            policy = self._skip_policy(sk, env)
            if self.plain:
                continue
            if x.shape == target and policy != "always":
                vals.append(x)
            elif policy == "optional":
                self.ir.notes.append(f"{sk.span}: `skip optional` dropped: its input {x.shape} "
                                     f"differs from the sum's {target}")
            elif policy == "pad":
                try:
                    attrs = {"target": target.dims}
                    out = ops.REGISTRY["_pad"].infer(attrs, x.shape)
                except ShapeError as err:
                    raise ArchError(str(err), sk.span) from None
                ws = Scope("ws", sk.span, scope)
                scope.items.append(ws)
                vals.append(self._node("_pad", attrs, [x], out, sk.span, ws, role="ws",
                                       note="shortcut option A: subsample, zero-pad channels"))
            else:
                vals.append(self._project(x, target, sk.span, scope, env))
        if not vals:
            return x
        if len(vals) == 1:
            return vals[0]
        return self._node("_add", {"arity": len(vals)}, vals, target, s.span, scope, role="merge")

    def _skip_policy(self, sk: ast.Call, env: Env) -> str:
        policy = env.setting("shortcut")
        chosen: ast.Arg | None = None
        for arg in sk.args:
            word = arg.value.name if isinstance(arg, ast.Positional) and isinstance(arg.value, ast.Name) else None
            if word not in SKIP_POLICIES:
                raise ArchError("skip takes one flag: pad, project or optional", arg.span,
                                hint=did_you_mean(word, SKIP_POLICIES) if word else None)
            if chosen is not None:
                raise ArchError("skip takes only one of pad, project, optional", arg.span)
            chosen, policy = arg, word
        return policy

    def _project(self, x: Val, target: TensorType, span: Span, scope: Scope, env: Env) -> Val:
        """Inserts Ws: a 1x1 conv (with the needed stride) + BN, or a bias-free Linear on vectors."""
        if x.shape.is_vector != target.is_vector:
            raise ArchError(f"cannot project a skip from {x.shape} to {target}", span,
                            hint="a skip joins tensors of the same kind: both CxHxW, or both vectors")
        ws = Scope("ws", span, scope)
        scope.items.append(ws)
        if target.is_vector:
            return self._apply(ops.REGISTRY["dense"], None, {"out": target.c, "bias": False}, x, span, ws, env,
                               role="ws")
        try:
            stride = ops.subsample_stride(x.shape, target.dims)
        except ShapeError as err:
            raise ArchError(f"cannot project the skip: {err}", span) from None
        given = {"out": target.c, "stride": stride, "padding": 0, "bias": False}
        y = self._apply(ops.REGISTRY["conv"], (1, 1), given, x, span, ws, env, role="ws")
        return self._apply(ops.REGISTRY["bn"], None, {}, y, span, ws, env, role="ws")

    def _concat(self, c: ast.Concat, x: Val, env: Env, scope: Scope) -> Val:
        vals: list[Val] = []
        for branch in c.branches:
            if _is_skip(branch):
                if branch.args:
                    raise ArchError("inside a concat, skip is the plain identity and takes no flags",
                                    branch.span)
                vals.append(x)
                continue
            sub = Scope("branch", branch.span, scope)
            scope.items.append(sub)
            vals.append(self._expr(branch, x, env, sub))
        return self._join(vals, list(c.branches), c.span, scope)

    def _join(self, vals: list[Val], branches: list, span: Span, scope: Scope) -> Val:
        if len(vals) == 1:
            return vals[0]
        first = vals[0].shape
        for val, branch in zip(vals[1:], branches[1:], strict=True):
            s = val.shape
            if s.is_vector != first.is_vector or (not s.is_vector and (s.h, s.w) != (first.h, first.w)):
                raise ArchError(
                    f"cannot concatenate {first} and {s}: "
                    + ("a vector and an image" if s.is_vector != first.is_vector else "their HxW differ"),
                    branch.span, notes=[Note(f"the first branch ({first}) is here", branches[0].span)])
        width = sum(v.shape.c for v in vals)
        out = TensorType(dims=(width,) + first.dims[1:])
        return self._node("_concat", {}, vals, out, span, scope, role="merge")

    # ---- inception sugar ----

    def _inception(self, b: ast.BracketCall, x: Val, env: Env, scope: Scope) -> Val:
        if b.name != "inception":
            raise ArchError(f"'{b.name}[...]': only inception takes a bracketed branch list", b.name_span,
                            hint="for a concat of branches write [a, b] on its own")
        use_bn = False
        for arg in b.args:
            if (isinstance(arg, ast.Positional) and isinstance(arg.value, ast.Name)
                    and arg.value.name == "bn" and arg.value.name not in env.values and not use_bn):
                use_bn = True
                continue
            raise ArchError("inception takes only the flag bn after its branches", arg.span)
        if x.shape.is_vector:
            raise ArchError(f"inception needs a CxHxW input, but gets the feature vector {x.shape}", b.span)
        sub = Scope("call", b.span, scope, def_name="inception")
        scope.items.append(sub)
        vals = []
        for item in b.items:
            bs = Scope("branch", item.span, sub)
            sub.items.append(bs)
            vals.append(self._inception_branch(item, x, env, bs, use_bn))
        return self._join(vals, list(b.items), b.span, sub)

    def _inception_branch(self, item: ast.BracketItem, x: Val, env: Env, scope: Scope, use_bn: bool) -> Val:
        width: int | None = None
        reduce: int | None = None
        for arg in item.args:
            if isinstance(arg, ast.Positional) and width is None and not (
                    isinstance(arg.value, ast.Name) and arg.value.name not in env.values):
                width = self._width(arg.value, env)
            elif isinstance(arg, ast.Keyword) and arg.key == "reduce" and reduce is None:
                reduce = self._width(arg.value, env)
            else:
                raise ArchError("an inception branch takes a width and, for KxK, reduce=R", arg.span,
                                hint="for example: 3x3 128 reduce=96")
        span = item.span
        conv, bn, relu = ops.REGISTRY["conv"], ops.REGISTRY["bn"], ops.REGISTRY["relu"]

        def conv_act(v: Val, kernel, out: int | None, padding) -> Val:
            given = {"padding": padding}
            if out is not None:
                given["out"] = out
            v = self._apply(conv, kernel, given, v, span, scope, env)
            if use_bn:
                v = self._apply(bn, None, {}, v, span, scope, env)
            return self._apply(relu, None, {}, v, span, scope, env)

        if item.head == "pool":
            if reduce is not None:
                raise ArchError("a pool branch takes no reduce", span)
            pool = {"stride": 1, "padding": "same"}
            v = self._apply(ops.REGISTRY["maxpool"], (3, 3), pool, x, span, scope, env)
            return v if width is None else conv_act(v, (1, 1), width, 0)
        dims = item.head.split("x")
        if len(dims) != 2 or not all(d.isdigit() for d in dims):
            raise ArchError(f"unknown inception branch '{item.head}'", span,
                            hint="branches are 1x1 C, KxK C [reduce=R], pool [C]")
        kernel = (int(dims[0]), int(dims[1]))
        if reduce is not None:
            if kernel == (1, 1):
                raise ArchError("a 1x1 branch takes no reduce", span)
            x = conv_act(x, (1, 1), reduce, 0)
        return conv_act(x, kernel, width, "same")

    def _width(self, v: ast.Value, env: Env) -> int:
        n = self._count(v, env, "a width")
        if n < 1:
            raise ArchError("a width must be at least 1", v.span)
        return n
