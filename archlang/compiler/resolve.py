"""Name resolution over the whole program, expanded or not.

Elaboration checks every name it expands, but only those: a def that no network calls, or the
body of a `×0` repeat, is never expanded, so a typo there would compile silently.  `check_names`
walks the AST of every def (of the file and of the files it uses) and every network of the file,
and checks each name against what is in scope where it is written:

- a call names `skip`, a def visible in the def's file, or an op (`conv3x3`, `relu`);
- a keyword names an argument of that op or a parameter of that def;
- a value name is a parameter of the enclosing def or network (a bare word given to an op may
  also be one of its flags: `same`, `nobias`); `in.` is followed by c, h or w;
- a reference `@name` names an earlier labelled line of the same body (or `@input`).

The messages are the elaborator's, so a mistake reads the same wherever it is found.
"""

from __future__ import annotations

from archlang.compiler import ops
from archlang.compiler.loader import Unit
from archlang.compiler.lowering.shortcuts import SKIP_POLICIES
from archlang.compiler.lowering.sugar import SUGAR
from archlang.compiler.ops.sampling import synonym_hint
from archlang.compiler.values import repeat_hint
from archlang.errors import ArchError, did_you_mean
from archlang.frontend import ast


def check_names(unit: Unit) -> None:
    """Raise ArchError at the first unresolved name in `unit`'s networks or in any def it can reach."""
    units: list[Unit] = []
    seen: set[int] = set()
    todo = [unit]
    while todo:
        u = todo.pop()
        if id(u) in seen:
            continue
        seen.add(id(u))
        units.append(u)
        todo += [home for _d, home in u.defs.values()]
    for u in units:
        for d in u.file.defs:
            _Scope(u, d.params).lines(d.body)
    for net in unit.file.networks:
        _Scope(unit, net.params).lines(net.body)


class _Scope:
    def __init__(self, unit: Unit, params: tuple[ast.Param, ...]):
        self.unit = unit
        self.names = {p.name for p in params}
        for p in params:
            if p.default is not None:
                self.value(p.default)

    def _hint(self) -> str:
        if self.names:
            return "names in scope here: " + ", ".join(sorted(self.names))
        return "no parameters are in scope here"

    # ---- values ----

    def value(self, v: ast.Value) -> None:
        if isinstance(v, ast.Name):
            if v.name not in self.names:
                raise ArchError(f"unknown name '{v.name}'", v.span,
                                hint=did_you_mean(v.name, self.names) or self._hint())
        elif isinstance(v, ast.InAttr):
            if v.attr not in ("c", "h", "w"):
                raise ArchError(f"'in' has c, h and w, not '{v.attr}'", v.span)
        elif isinstance(v, ast.BinOp):
            self.value(v.left)
            self.value(v.right)
        elif isinstance(v, ast.Func):
            for a in v.args:
                self.value(a)

    def _bare(self, arg: ast.Arg) -> str | None:
        """The word of a positional argument that is a name not in scope (a flag, or a typo)."""
        if isinstance(arg, ast.Positional) and isinstance(arg.value, ast.Name) and arg.value.name not in self.names:
            return arg.value.name
        return None

    # ---- layer expressions ----

    def lines(self, body) -> None:
        self.written = {line.label: line.label_span for line in body if isinstance(line, ast.Line) and line.label}
        self.seen: list[str] = []
        for line in body:
            if isinstance(line, ast.Line):
                self.current = line
                self.expr(line.expr)
                if line.label is not None:
                    self.seen.append(line.label)

    def ref(self, r: ast.Ref) -> None:
        """`@name` names an earlier labelled line of the same body, or the body's input (the
        elaborator's messages; its checks of what the line may do with it stay there)."""
        from archlang.compiler.elaborate import ref_error, ref_fit

        ref_fit(r)
        if r.name in self.seen or (r.name == "input" and "input" not in self.written):
            return
        raise ref_error(r, self.seen, self.written, self.current.label)

    def expr(self, e: ast.Expr) -> None:
        if isinstance(e, ast.Seq):
            for item in e.items:
                self.expr(item)
        elif isinstance(e, ast.Sum | ast.Product | ast.Concat):
            for branch in e.branches:
                self.expr(branch)
        elif isinstance(e, ast.Repeat):
            self.value(e.count)
            self.expr(e.body)
        elif isinstance(e, ast.Call):
            self.call(e)
        elif isinstance(e, ast.Ref):
            self.ref(e)
        elif isinstance(e, ast.BracketCall):
            self.bracket_call(e)

    def call(self, c: ast.Call) -> None:
        if c.name == "skip":
            for arg in c.args:
                word = self._bare(arg)
                if word is not None and word not in SKIP_POLICIES:
                    raise ArchError("skip takes one flag: pad, project or optional", arg.span,
                                    hint=did_you_mean(word, SKIP_POLICIES))
            return
        if c.name in self.unit.defs:
            self.def_call(c, self.unit.defs[c.name][0])
            return
        found = ops.find(c.name, c.args) if not c.name.startswith("_") else None
        if found is None:
            if c.name in SUGAR:
                return  # the elaborator says it needs its branches in brackets
            if ops.lookup(c.name + "3x3"):
                hint = f"{c.name} needs a kernel size: {c.name}3x3, or as a value, {c.name} ... kernel=3"
            else:
                words = [*self.unit.defs, *ops.user_words(), "skip", *SUGAR]
                hint = synonym_hint(c.name) or did_you_mean(c.name, words)
            raise ArchError(f"unknown op or def '{c.name}'", c.name_span, hint=hint)
        spec = found[0]
        for arg in c.args:
            word = self._bare(arg)
            if word is not None:
                if word not in spec.flags:
                    flags = ", ".join(spec.flags) if spec.flags else "none"
                    hint = repeat_hint(word, arg.span) or did_you_mean(word, [*spec.flags, *self.names]) \
                        or f"flags of {c.name}: {flags}"
                    raise ArchError(f"'{word}' is neither a parameter in scope nor a flag of {c.name}", arg.span,
                                    hint=hint)
                continue
            keys = ops.arg_keys(spec)
            if isinstance(arg, ast.Keyword) and arg.key not in keys:
                known = ", ".join(keys) or "none"
                raise ArchError(f"{c.name} has no argument '{arg.key}'", arg.span,
                                hint=did_you_mean(arg.key, keys) or f"arguments of {c.name}: {known}")
            self.value(arg.value)

    def def_call(self, c: ast.Call, d: ast.Def) -> None:
        names = [p.name for p in d.params]
        signature = f"{d.name}({', '.join(names)})"
        for arg in c.args:
            word = self._bare(arg)
            if word is not None:
                raise ArchError(f"unknown name '{word}'", arg.span,
                                hint=repeat_hint(word, arg.span) or did_you_mean(word, self.names)
                                or f"a def takes values, not flags: {signature}")
            if isinstance(arg, ast.Keyword) and arg.key not in names:
                raise ArchError(f"{signature} has no parameter '{arg.key}'", arg.span,
                                hint=did_you_mean(arg.key, names))
            self.value(arg.value)

    def bracket_call(self, b: ast.BracketCall) -> None:
        if b.name not in SUGAR:
            raise ArchError(f"'{b.name}[...]': only inception takes a bracketed branch list", b.name_span,
                            hint="for a concat of branches write [a, b] on its own")
        for arg in b.args:
            if self._bare(arg) == "bn":
                continue
            if self._bare(arg) is not None:
                raise ArchError("inception takes only the flag bn after its branches", arg.span)
            self.value(arg.value)
        for item in b.items:
            for arg in item.args:
                if self._bare(arg) is not None:
                    raise ArchError("an inception branch takes a width and, for KxK, reduce=R", arg.span,
                                    hint="for example: 3x3 128 reduce=96")
                self.value(arg.value)
