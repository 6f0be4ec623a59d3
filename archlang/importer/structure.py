"""From the flat graph of mapped layers (archlang.importer.trace) to readable .arch text.

Each module the trace went through is a block whose graph (its layers, and its child modules
as single units) is written as a series-parallel expression: chains as `>`, sums as `|`,
products as `&`, concatenations as `[...]`.  A sum's branch that is exactly the projection the
language inserts for a `skip` (a 1x1 conv without bias and a BN, where the shapes differ) is
written `skip`.  Containers (nn.Sequential, ModuleList, ModuleDict and their subclasses) and
custom modules used once are written inline; a custom class used several times becomes one
`def` per distinct layout, the numbers that differ between its uses becoming parameters (a
value equal to another parameter, a multiple of one, or the input width `in.c` is written so).
Runs of equal items become `xN`.  The network's lines are labelled with the model's attribute
names, so that where the structure allows, state_dict keys line up."""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from archlang.compiler import ops
from archlang.compiler.passes.bias import absorbed
from archlang.frontend.format import format_source
from archlang.importer.trace import FNode, Frame, ImportFailure, is_container

# ---- expressions ----


@dataclass
class Skip:
    reg: float | None = None  # where the projection it stands for registers its weights
    origin: str | None = None  # the module the projection was (`layer2.0.downsample`)
    fit: str | None = None  # "pad": He et al.'s option A, `skip pad`


@dataclass
class Ref:
    """`@label`, or `@label crop` / `@label pad`: an earlier line's output (a U-Net's long skip)."""

    label: str
    fit: str | None = None


FITS = {"_crop": "crop", "_zeropad": "pad"}
JOINS = {"_add": "|", "_mul": "&", "_concat": "cat"}  # the joins, as the expressions write them


class _NotSeriesParallel(ImportFailure):
    """The network's graph is no nesting of chains and joins: its lines may still be written with
    references (Writer.lines_expr)."""


@dataclass
class Form:
    """One op call: `conv3x3 64 /2 nobias`.  Item values are numbers, or text in a def's body."""

    stem: str
    kernel: Any  # (kh, kw), or a parameter's text, or None
    items: list[list]  # [kind, key, value]: kind pos / stride / kw / flag
    node: FNode
    label: str | None = None


@dataclass
class Seq:
    items: list


@dataclass
class Merge:
    kind: str  # "|", "&" or "cat"
    branches: list


@dataclass
class Repeat:
    body: Any
    n: int


@dataclass
class Call:
    name: str
    values: list
    stride: Any = None


@dataclass
class Group:
    """A module's expression with the attribute name it had (a line's label at the top)."""

    label: str | None
    body: Any
    key: tuple = ()
    refs: bool = False  # its body reads other lines (`@enc4`): written inline, never a def
    forced: bool = False  # a line's label chosen for a reference, not the attribute's name


@dataclass
class Head:
    """An auxiliary head, computed in training only: `aux label = @ref > body`."""

    label: str
    ref: str
    body: Any
    order: int  # where its module registers among the network's


@dataclass
class Def:
    name: str
    params: list[str]
    stride: bool
    body: Any


@dataclass
class Settings:
    padding: str = "valid"
    shortcut_name: str = "ws"
    op_defaults: dict[tuple[str, str], Any] = field(default_factory=dict)


def seq(*parts) -> Any:
    items = []
    for p in parts:
        if isinstance(p, Skip) and p.reg is None and p.fit is None:
            continue
        items.extend(p.items if isinstance(p, Seq) else [p])
    if not items:
        return Skip()
    return items[0] if len(items) == 1 else Seq(items)


# ---- numbers and names ----


def num(v) -> str:
    if isinstance(v, str):
        return v
    return repr(v)  # exact: a float written back reads as the same float


RESERVED = {"use", "set", "def", "network", "input", "in", "skip", "inception"}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def good_label(name: str) -> bool:
    return bool(NAME_RE.match(name)) and name not in RESERVED and not re.fullmatch(r"x[0-9]+", name)


def snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s).lower().strip("_")
    s = re.sub(r"[^a-z0-9_]", "_", s) or "block"
    if s[0].isdigit():
        s = "b" + s
    if not good_label(s) or ops.lookup(s) or ops.bare_kernel_op(s) or s in ("fc", "linear", "droppath"):
        s += "_block"
    return s


# ---- the writer ----


class Writer:
    def __init__(self, nodes: list[FNode], output: int, root_module, name: str, heads: tuple[int, ...] = ()):
        self.nodes = nodes
        self.output = output
        self.heads = heads  # the outputs of auxiliary heads (training mode only)
        self.returns: list[int] = []  # with heads: the outputs in the order the model returns them
        self.head_label: dict[int, str] = {}
        self.root = root_module
        self.name = name
        self.live = self._live()
        order = {path: i for i, (path, _) in enumerate(root_module.named_modules())}
        self.module_order = order
        self.settings = self._settings()
        self.absorbed = absorbed([(n.id, n.op, n.users) for n in sorted(nodes, key=lambda n: n.id)],
                                 {output: False})
        self.defs: list[Def] = []
        self.def_names: set[str] = set()
        self.forced: dict[Any, str] = {}  # the labels of lines that references read
        self.taken = {name for name, _ in root_module.named_children()}

    # -- what is live, and settings --

    def _live(self) -> set[int]:
        live, todo = set(), [self.output, *self.heads]
        while todo:
            i = todo.pop()
            if i in live:
                continue
            live.add(i)
            todo.extend(self.nodes[i].inputs)
        for n in self.nodes:
            n.users = [u for u in n.users if u in live]
        return live

    def _settings(self) -> Settings:
        s = Settings()
        same = valid = 0
        values: dict[tuple[str, str], Counter] = {}
        for i in sorted(self.live):
            n = self.nodes[i]
            if "padding" in n.args and isinstance(n.args["padding"], tuple):
                k = n.args["kernel"]
                d = n.args.get("dilation", 1)
                if k != (1, 1):
                    same += n.args["padding"] == (d * (k[0] - 1) // 2, d * (k[1] - 1) // 2)
                    valid += n.args["padding"] == (0, 0)
            for key in ("eps", "momentum"):
                if key in n.args and n.op in ("bn", "layernorm"):
                    values.setdefault((n.op, key), Counter())[n.args[key]] += 1
        s.padding = "same" if same > valid else "valid"
        for (op, key), counter in values.items():
            value, count = counter.most_common(1)[0]
            if value != ops.REGISTRY[op].args[key].default and count >= 2:
                s.op_defaults[(op, key)] = value
        return s

    def default(self, op: str, key: str):
        if (op, key) in self.settings.op_defaults:
            return self.settings.op_defaults[(op, key)]
        arg = ops.REGISTRY[op].args.get(key)
        return arg.default if arg else None

    # -- one node's form --

    def form(self, n: FNode) -> Form:
        spec = ops.REGISTRY[n.op]
        args = dict(n.args)
        kernel = args.pop("kernel", None)
        items: list[list] = []
        for name in spec.positional:
            if name in args:
                items.append(["pos", name, args.pop(name)])
        if "stride" in args:
            items.append(["stride", "stride", args.pop("stride")])
        if isinstance(args.get("padding"), tuple | str):  # a conv's or a pool's (a transposed conv's is a number)
            text = self._padding(n, args.pop("padding"), kernel, args.get("dilation", 1))
            if text:
                items.append(["flag", text] if "=" not in text else ["kw", "padding", int(text.split("=")[1])])
        if "bias" in args:
            bias = args.pop("bias")
            if "bias" in spec.settings:
                auto = not self.absorbed[n.id]  # what `bias=auto` decides for the text written
            else:
                auto = spec.args["bias"].default if "bias" in spec.args else True
            if bias != auto:
                items.append(["flag", "bias" if bias else "nobias"])
        for name, value in args.items():
            words = [w for w, (target, v) in spec.flags.items() if target == name and v == value]
            if isinstance(value, bool | str) and value == self.default(n.op, name):
                continue
            if isinstance(value, bool | str) and words:
                items.append(["flag", words[0]])  # bilinear, align_corners
            elif isinstance(value, bool):
                raise ImportFailure(f"cannot import {n.leaf or n.op}: {n.op} has no word for {name}={value}")
            else:
                items.append(["kw", name, value])
        label = n.leaf.rsplit(".", 1)[-1] if n.leaf else None
        return Form(n.op, kernel, items, n, label)

    def _padding(self, n: FNode, padding, kernel, dilation) -> str:
        same = (dilation * (kernel[0] - 1) // 2, dilation * (kernel[1] - 1) // 2)
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if any((dilation * (k - 1)) % 2 for k in kernel):
                raise ImportFailure(f"cannot import {n.leaf}{' at ' + n.where if n.where else ''}: "
                                    "padding='same' with an even kernel pads one side more")
            padding = same
        chosen = same if self.settings.padding == "same" else (0, 0)
        if padding == chosen:
            return ""
        if padding == same:
            return "same"
        if padding == (0, 0):
            return "valid"
        if padding[0] == padding[1]:
            return f"padding={padding[0]}"
        raise ImportFailure(f"cannot import {n.leaf}{' at ' + n.where if n.where else ''}: padding {padding} "
                            "differs between height and width and is not `same`")

    # -- blocks as series-parallel expressions --

    def units(self, key: tuple[Frame, ...]) -> tuple[dict, dict[Any, list[int]], dict[Any, int]]:
        """The parts of the module call `key`: its own layers (by node id) and its child module
        calls (("blk", stack)), each with its nodes and its output node."""
        depth = len(key)
        members = [i for i in sorted(self.live) if i and self.nodes[i].stack[:depth] == key]
        unit_of: dict[int, Any] = {}
        for i in members:
            st = self.nodes[i].stack
            unit_of[i] = i if len(st) == depth else ("blk", st[:depth + 1])
        units: dict[Any, list[int]] = {}
        for i in members:
            units.setdefault(unit_of[i], []).append(i)
        return unit_of, units, {u: max(ids) for u, ids in units.items()}

    def external(self, u, ids: list[int]) -> list[int]:
        """The tensors a child module call reads from outside it (checking nothing inside it is
        used outside it but its output)."""
        own = set(ids)
        ext = list(dict.fromkeys(j for i in ids for j in self.nodes[i].inputs if j not in own))
        out = max(ids)
        for i in ids:
            if i != out and any(v not in own for v in self.nodes[i].users):
                raise ImportFailure(f"cannot import {frame_text(u)}: a value inside it is used outside it")
        return ext

    def block_expr(self, key: tuple[Frame, ...], sources: dict[int, Any] | None = None,
                   line_input=None) -> tuple[Any, int]:
        """The expression of the module call `key` (() for the model), and its input node.
        `sources`: for a line of the network that reads other lines, what each tensor it reads
        is ("SRC": the line's input, ("ref", label): a reference); `line_input` gives the label
        of the line before (its input, "SRC")."""
        unit_of, units, out_of = self.units(key)
        outside = {j for ids in units.values() for i in ids for j in self.nodes[i].inputs if j not in unit_of}
        where = f"{key[-1].path} ({key[-1].cls.__name__})" if key else self.name
        if sources is None:
            if len(outside) != 1:
                raise ImportFailure(f"cannot import {where}: it reads {len(outside)} tensors from outside; archlang "
                                    "blocks take one")
            source = outside.pop()
            sources = {source: "SRC"}
        else:
            source = next((j for j, v in sources.items() if v == "SRC"), -1)
        fail = _NotSeriesParallel if not key else ImportFailure
        preds: dict[Any, list] = {}
        for u, ids in units.items():
            if isinstance(u, tuple):
                inputs = self.external(u, ids)
                if len(inputs) != 1:
                    frame = u[1][-1]
                    raise fail(f"cannot import {frame.path} ({frame.cls.__name__}): it takes {len(inputs)} tensors; "
                               "archlang blocks take one (a module of the network itself may read other lines, "
                               "which archlang writes as references)")
            else:
                inputs = self.nodes[u].inputs
            preds[u] = [sources[j] if j in sources else unit_of[j] for j in inputs]
        final = unit_of.get(self.output if not key else max(out_of.values()), "SRC")
        order = sorted(units, key=lambda u: out_of[u])
        rank: dict[Any, float] = {"SRC": -1, **{u: k for k, u in enumerate(order)}}
        idom: dict[Any, Any] = {"SRC": "SRC"}
        for r in sources.values():
            if r != "SRC":
                rank[r], idom[r] = -0.5, "SRC"
        for u in order:
            ps = list(dict.fromkeys(preds[u]))
            d = ps[0]
            for p in ps[1:]:
                a, b = d, p
                while a != b:
                    while rank[a] > rank[b]:
                        a = idom[a]
                    while rank[b] > rank[a]:
                        b = idom[b]
                d = a
            idom[u] = d
        used: Counter = Counter()

        def expr(d, v):
            if v == d:
                return Skip()
            if isinstance(v, tuple) and v[0] == "ref":
                return Ref(v[1])
            used[v] += 1
            atom = self.atom(v)
            if isinstance(v, int) and ops.REGISTRY[self.nodes[v].op].multi_input:
                m = idom[v]
                kind = JOINS[self.nodes[v].op]
                branches = [expr(m, p) for p in preds[v]]
                if isinstance(m, tuple) and m[0] == "ref":
                    start = (lambda m=m: Ref(m[1]))
                else:
                    start = (lambda: Ref(line_input())) if m == "SRC" and line_input else None
                return self.join(expr(d, m), kind, branches, fail, start)
            if len(preds[v]) != 1:
                raise ImportFailure(f"cannot import {self.nodes[v].leaf or self.nodes[v].op}: several inputs")
            return seq(expr(d, preds[v][0]), atom)

        result = expr("SRC", final)
        if not key and self.heads:
            result = self.with_heads(result, [unit_of[h] for h in self.heads], preds, used, expr)
        bad = [u for u in units if used[u] != 1]
        if bad:
            u = bad[0]
            what = frame_text(u) if isinstance(u, tuple) else (self.nodes[u].leaf or self.nodes[u].op)
            how = "never used" if not used[u] else "used by several branches"
            raise fail(f"cannot import {where}: its graph is not a nesting of chains, sums, products and "
                       f"concatenations ({what} is {how})")
        stray = [f for f in flat_forms(result) if f.stem in FITS]
        if stray:
            n = stray[0].node
            raise fail(f"cannot import {_fit_text(n)} in {where}: archlang writes a {FITS[n.op]} only as the fit of "
                       "a reference in a concat or a sum ([@enc4 crop, skip])")
        return result, source

    def join(self, before, kind: str, branches: list, fail=ImportFailure, start=None):
        """`before > [...]`: a concat, sum or product of branches.  A crop or pad that fits one
        branch to the others becomes the `crop` / `pad` flag of the join's references, and a
        concat of references and one chain is written `chain > [@ref, skip]`.  `start`: where the
        branches begin, as a reference (a line of the network), where it is one."""
        if kind == "&":  # a product broadcasts; nothing is fitted
            return seq(before, self.merge(kind, branches))

        def at_start(why: str) -> Ref:
            ref = start() if start else None
            if ref is None:
                raise fail(f"cannot import a {'sum' if kind == '|' else 'concat'} whose branch {why}: archlang "
                           "fits only references to the network's lines ([@enc4 crop, skip])")
            return ref

        branches = [Ref(b.items[0].label, FITS[b.items[1].stem]) if isinstance(b, Seq) and len(b.items) == 2
                    and isinstance(b.items[0], Ref) and b.items[0].fit is None and isinstance(b.items[1], Form)
                    and b.items[1].stem in FITS else b for b in branches]
        fitted = {b.fit for b in branches if isinstance(b, Ref) and b.fit}
        moved = set()
        for k, b in enumerate(branches):
            tail = b.items[-1] if isinstance(b, Seq) else b
            if isinstance(tail, Form) and tail.stem in FITS:
                moved.add(FITS[tail.stem])
                branches[k] = seq(*b.items[:-1]) if isinstance(b, Seq) else Skip()
                if isinstance(branches[k], Skip):  # the join's input itself, fitted
                    branches[k] = at_start("is its input, cropped or padded")
        if moved:
            refs = [k for k, b in enumerate(branches) if isinstance(b, Ref)]
            if not refs or len(moved) > 1 or fitted:  # nothing to flag, or both sides fitted
                raise fail("cannot import a join whose branches are cropped or padded to one size other "
                           "than as archlang fits references ([@enc4 crop, skip]: the reference and the "
                           "others are centre-cropped to the smallest, or padded to the largest)")
            for k in refs:
                branches[k] = Ref(branches[k].label, next(iter(moved)))
            fitted = moved
        if len(fitted) > 1:
            raise fail("cannot import a join whose references are cropped and padded: archlang fits the "
                       "references of one join all by crop or all by pad")
        if fitted and kind == "|":  # a sum's `skip` is projected to the others' shape: its input by reference
            branches = [at_start("is its input") if isinstance(b, Skip) else b for b in branches]
        others = [k for k, b in enumerate(branches) if not isinstance(b, Ref)]
        if kind == "cat" and len(others) == 1 and len(branches) > 1 and not isinstance(branches[others[0]], Skip):
            chain = branches[others[0]]
            branches[others[0]] = Skip()
            return seq(before, chain, self.merge(kind, branches))
        return seq(before, self.merge(kind, branches))

    # -- a network of lines with references (a U-Net) --

    def label_for(self, u) -> str:
        """The label of the line `u` (a unit of the network), chosen when a reference reads it."""
        if u == "SRC":
            return "input"
        if u not in self.forced:
            path = u[1][-1].path if isinstance(u, tuple) else (self.nodes[u].leaf or "")
            base = path if good_label(path) else re.sub(r"[^A-Za-z0-9_]+", "_", path).strip("_")  # downs.2: downs_2
            if not good_label(base):
                base = "line"
            name, k = base, 2
            while (name in self.taken and name != path) or name in self.forced.values():
                name, k = f"{base}_{k}", k + 1
            self.forced[u] = name
        return self.forced[u]

    def network_expr(self):
        """The network's expression: a nesting of chains and joins where its graph is one (and its
        joins do not span several modules), else a chain of lines with references."""
        try:
            root, _ = self.block_expr(())
        except ImportFailure as err:
            if self.heads:
                raise ImportFailure(f"{err} (and it has auxiliary heads)") from None
            try:
                return self.lines_expr()
            except ImportFailure:
                if isinstance(err, _NotSeriesParallel):
                    raise
                raise err from None
        if self.heads or not _long_join(root):
            return root
        try:
            return self.lines_expr()
        except ImportFailure:
            return root

    def lines_expr(self):
        """One line per module call and layer of the network, in the order they are computed; a
        line that does not read the line before reads a reference (`@enc4 > ...`), and a module
        called with several tensors reads the others as references (U-Net's `Up(x, skip)`)."""
        self.forced.clear()
        unit_of, units, out_of = self.units(())
        order = sorted(units, key=lambda u: out_of[u])

        def unit(j):
            return "SRC" if j == 0 else unit_of[j]

        folded = {u for u in order if isinstance(u, int) and self.nodes[u].op in FITS
                  and len(self.nodes[u].users) == 1 and isinstance(unit(self.nodes[u].users[0]), int)
                  and self.nodes[unit(self.nodes[u].users[0])].op in ("_add", "_concat")}
        lines = [u for u in order if u not in folded]
        made = []
        prev = "SRC"
        for u in lines:
            if isinstance(u, tuple):
                ext = self.external(u, units[u])
                sources = {j: "SRC" if unit(j) == prev else ("ref", self.label_for(unit(j))) for j in ext}
                body, _ = self.block_expr(u[1], sources, line_input=lambda p=prev: self.label_for(p))
                item = Group(u[1][-1].path.rsplit(".", 1)[-1], body, u[1], refs=has_ref(body))
            else:
                n = self.nodes[u]
                spec = ops.REGISTRY[n.op]
                if spec.multi_input:
                    branches = []
                    for j in n.inputs:
                        fit = None
                        if unit(j) in folded:
                            fit, j = FITS[self.nodes[j].op], self.nodes[j].inputs[0]
                        if unit(j) == prev and fit is None:
                            branches.append(Skip())
                        else:
                            branches.append(Ref(self.label_for(unit(j)), fit))
                    item = self.join(Skip(), JOINS[n.op], branches, start=lambda p=prev: Ref(self.label_for(p)))
                elif n.op in FITS:
                    raise ImportFailure(f"cannot import {_fit_text(n)}: archlang writes a {FITS[n.op]} only as the "
                                        "fit of a reference in a concat or a sum ([@enc4 crop, skip])")
                else:
                    item = self.form(n)
                    if unit(n.inputs[0]) != prev:
                        item = Seq([Ref(self.label_for(unit(n.inputs[0]))), item])
            made.append((u, item))
            prev = u
        items = []
        for u, item in made:
            label = self.forced.get(u)
            if label is None:
                items.append(item)
            elif isinstance(item, Group):
                items.append(replace(item, label=label, forced=True))
            else:
                items.append(Group(label, item, (), forced=True))
        return Seq(items)

    def with_heads(self, main, heads: list, preds: dict, used: Counter, expr) -> Any:
        """The network's lines with each auxiliary head's line `aux NAME = @ref > ...` among them,
        where its module registers (so that weights load by order)."""
        lines = list(main.items) if isinstance(main, Seq) else [main]
        made = []
        for h, u in zip(self.heads, heads, strict=True):
            what = frame_text(u) if isinstance(u, tuple) else (self.nodes[u].leaf or self.nodes[u].op)
            v = u
            while v != "SRC" and not used[v]:  # back along the head to the line it reads
                if len(preds[v]) != 1:
                    raise ImportFailure(f"cannot import the auxiliary head {what}: it is not a chain from one "
                                        "line of the network")
                v = preds[v][0]
            path = v[1][-1].path if isinstance(v, tuple) else (self.nodes[v].leaf or "")
            if v == "SRC" or not good_label(path):
                raise ImportFailure(f"cannot import the auxiliary head {what}: it reads "
                                    f"{'the input' if v == 'SRC' else path}, which is not a line of the network")
            body = expr(v, u)
            label_path = u[1][-1].path if isinstance(u, tuple) else (self.nodes[u].leaf or "")
            label = label_path if good_label(label_path) else f"aux{len(made) + 1}"
            made.append(Head(label, path, body, self.module_order.get(label_path, len(self.module_order))))
            self.head_label[h] = label
        for h in sorted(made, key=lambda h: h.order):
            after = next(k for k, item in enumerate(lines) if self.line_label(item) == h.ref)
            at = next((k for k in range(after + 1, len(lines)) if self.line_order(lines[k]) > h.order), len(lines))
            lines.insert(at, h)
        return Seq(lines)

    def line_label(self, item) -> str | None:
        if isinstance(item, Group) and item.key:
            return item.key[-1].path
        if isinstance(item, Form):
            return item.node.leaf
        return None

    def line_order(self, item) -> int:
        if isinstance(item, Head):
            return item.order
        found = [self.module_order[p] for p in [self.line_label(x) for x in flat_items(item)] + [self.line_label(item)]
                 if p in self.module_order]
        return min(found) if found else -1

    def atom(self, u):
        if isinstance(u, tuple):
            key = u[1]
            body, _source = self.block_expr(key)
            return Group(key[-1].path.rsplit(".", 1)[-1], body, key)
        return self.form(self.nodes[u])

    def merge(self, kind: str, branches: list) -> Merge:
        if kind == "|":
            branches = [self.projection(b) for b in branches]
            regs = [self.reg(b) for b in branches]
            order = sorted(range(len(branches)), key=lambda k: (regs[k] is None, regs[k] or 0, k))
            branches = [branches[k] for k in order]
        elif kind == "&":
            branches = sorted(branches, key=lambda b: not isinstance(b, Skip))
        return Merge(kind, branches)

    def reg(self, e) -> float | None:
        """Where the first weights of an expression register in the model (None: it has none)."""
        found = []

        def walk(x):
            if isinstance(x, Form):
                n = x.node
                if n.leaf is not None:
                    path = n.leaf
                    owner = path if path in self.module_order else path.rsplit(".", 1)[0] if "." in path else ""
                    base = self.module_order.get(owner, 0)
                    found.append(base - (0.5 if owner != path else 0))
            elif isinstance(x, Skip):
                if x.reg is not None:
                    found.append(x.reg)
            elif isinstance(x, Seq):
                for i in x.items:
                    walk(i)
            elif isinstance(x, Merge):
                for b in x.branches:
                    walk(b)
            elif isinstance(x, Group):
                walk(x.body)

        walk(e)
        return min(found) if found else None

    def projection(self, b):
        """`skip` for a branch that is the language's own projection of a skip (`skip pad` for
        its zero-pad shortcut)."""
        items = flat_items(b)
        if len(items) == 1 and isinstance(items[0], Form) and items[0].stem == "_pad":
            return Skip(fit="pad")
        if len(items) != 2 or not all(isinstance(f, Form) for f in items):
            return b
        conv, bn = items
        c, n = conv.node, bn.node
        if c.op != "conv" or n.op != "bn" or c.args["kernel"] != (1, 1) or c.args["groups"] != 1 \
                or c.args["bias"] or c.args["padding"] not in ((0, 0), "valid") or c.in_dims == c.dims:
            return b
        if n.args["eps"] != self.default("bn", "eps") or n.args["momentum"] != self.default("bn", "momentum"):
            return b
        s = c.args["stride"]
        h, w = c.in_dims[1:], c.dims[1:]
        if any(-(-a // s) != o for a, o in zip(h, w, strict=True)) or -(-h[0] // w[0]) != s:
            return b
        origin = b.key[-1].path if isinstance(b, Group) and b.key else None
        return Skip(self.reg(b), origin)


def _fit_text(n: FNode) -> str:
    what = "the slice x[:, :, a:b, c:d]" if n.op == "_crop" else "the function F.pad"
    return what + (f" at {n.where}" if n.where else "")


def has_ref(e) -> bool:
    return isinstance(e, Ref) or any(has_ref(c) for c in children(e))


def flat_forms(e) -> list:
    """Every layer of an expression, at any depth."""
    found = [e] if isinstance(e, Form) else []
    for child in children(e):
        found.extend(flat_forms(child))
    return found


def _long_join(root) -> bool:
    """Whether a join of the network's own lines spans several modules (a long skip, as a U-Net
    written in one forward): written better as lines with references."""
    def modules(e) -> int:
        if isinstance(e, Group) and e.key:
            return 1
        return sum(modules(c) for c in children(e))

    def walk(e) -> bool:
        if isinstance(e, Merge) and any(modules(b) >= 2 for b in e.branches):
            return True
        return any(walk(c) for c in children(e) if not (isinstance(c, Group) and c.key))

    return walk(root)


def frame_text(u) -> str:
    frame = u[1][-1]
    return f"{frame.path} ({frame.cls.__name__})"


def children(e) -> list:
    """The sub-expressions an expression holds: a chain's items, a merge's branches, a block's or
    a repeat's body; none for a layer, a call or a skip."""
    if isinstance(e, Seq):
        return list(e.items)
    if isinstance(e, Merge):
        return list(e.branches)
    if isinstance(e, Group | Repeat | Head):
        return [e.body]
    return []


def flat_items(e) -> list:
    if isinstance(e, Group):
        return flat_items(e.body)
    if isinstance(e, Seq):
        out = []
        for i in e.items:
            out.extend(flat_items(i))
        return out
    return [e]


# ---- defs, inlining and repeats ----


def _kernel_op(stem: str) -> bool:
    return ops.REGISTRY[stem].kernel


def holes(e, out: list) -> list:
    """The numbers of an expression, in order: (name, value, setter) each."""
    if isinstance(e, Form):
        if e.kernel is not None and not isinstance(e.kernel, str) and e.kernel[0] == e.kernel[1]:
            out.append(("kernel", e.kernel[0], lambda t, f=e: setattr(f, "kernel", t)))
        for item in e.items:
            if item[0] != "flag" and not isinstance(item[2], str | bool):
                out.append((item[1], item[2], lambda t, it=item: it.__setitem__(2, t)))
    elif isinstance(e, Call):
        for k, v in enumerate(e.values):
            out.append((e.names[k] if hasattr(e, "names") else "v", v,
                        lambda t, c=e, k=k: c.values.__setitem__(k, t)))
        if e.stride is not None:
            out.append(("stride", e.stride, lambda t, c=e: setattr(c, "stride", t)))
    for child in children(e):
        holes(child, out)
    return out


def skeleton(e) -> str:
    if isinstance(e, Form):
        k = "" if e.kernel is None else ("#" if e.kernel[0] == e.kernel[1] else f"{e.kernel}")
        parts = [f"{i[0]}:{i[1]}" + ("" if i[0] != "flag" and not isinstance(i[2], str | bool) else f"={i[-1]}")
                 for i in e.items]
        return f"{e.stem}{k}({','.join(parts)})"
    if isinstance(e, Call):
        return f"{e.name}({len(e.values)},{e.stride is not None})"
    if isinstance(e, Skip):
        return f"skip:{e.fit}"
    if isinstance(e, Ref):
        return f"@{e.label}:{e.fit}"
    if isinstance(e, Seq):
        return "(" + ">".join(skeleton(i) for i in e.items) + ")"
    if isinstance(e, Merge):
        return e.kind + "[" + ",".join(skeleton(b) for b in e.branches) + "]"
    if isinstance(e, Group):
        return skeleton(e.body)
    if isinstance(e, Repeat):
        return f"({skeleton(e.body)})x{e.n}"
    raise AssertionError(e)


PARAM_NAMES = {"out": "c", "kernel": "k", "groups": "g", "p": "p", "heads": "heads", "stride": "stride"}


def _factor(vals, refs) -> tuple[str, int] | None:
    """One constant k relating each value to its reference: value = k·ref ("*", k), or
    value = ref // k with ref = k·value ("//", k)."""
    pairs = list(zip(vals, refs, strict=True))
    if all(r and v % r == 0 for v, r in pairs):
        ks = {v // r for v, r in pairs}
        if len(ks) == 1:
            return "*", ks.pop()
    if all(v and r % v == 0 for v, r in pairs):
        ks = {r // v for v, r in pairs}
        if len(ks) == 1:
            return "//", ks.pop()
    return None


class Structurer:
    """Decides what becomes a def, what is inline, and writes the defs."""

    def __init__(self, writer: Writer):
        self.w = writer
        self.call_of: dict[tuple, Call] = {}
        self.defs: list[Def] = []
        self.names: set[str] = set()

    def collect(self, e, found: list):
        if isinstance(e, Group) and e.key and not e.refs:
            found.append(e)
        for child in children(e):
            self.collect(child, found)

    def module(self, key):
        return self.w.root.get_submodule(key[-1].path)

    def run(self, root):
        groups: list[Group] = []
        self.collect(root, groups)
        classes: dict[type, list[Group]] = {}
        for g in groups:
            if not is_container(self.module(g.key)):
                classes.setdefault(g.key[-1].cls, []).append(g)
        for cls, insts in sorted(classes.items(), key=lambda kv: -max(len(g.key) for g in kv[1])):
            if len(insts) >= 2:
                self.make_defs(cls, insts)
        return self.resolve(root, top=True)

    def resolve(self, e, top=False):
        if isinstance(e, Group):
            if e.key in self.call_of:
                call = self.call_of[e.key]
                return replace(e, body=call) if top else call
            body = self.resolve(e.body)
            return replace(e, body=body) if top else body
        if isinstance(e, Seq):
            return seq(*[self.resolve(i, top) for i in e.items]) if not top else Seq(
                [self.resolve(i, True) for i in e.items])
        if isinstance(e, Merge):
            return Merge(e.kind, [self.resolve(b) for b in e.branches])
        if isinstance(e, Head):
            return Head(e.label, e.ref, self.resolve(e.body), e.order)
        return e

    def make_defs(self, cls, insts: list[Group]):
        bodies = [compress(self.resolve(g.body)) for g in insts]
        by_shape: dict[str, list[int]] = {}
        for k, b in enumerate(bodies):
            by_shape.setdefault(skeleton(b), []).append(k)
        base = snake(cls.__name__)
        for n, (_, members) in enumerate(by_shape.items()):
            name = base if n == 0 else f"{base}{n + 1}"
            while name in self.names:
                name += "_"
            self.names.add(name)
            self.make_def(name, [insts[k] for k in members], [bodies[k] for k in members])

    def make_def(self, name: str, insts: list[Group], bodies: list):
        found = [holes(b, []) for b in bodies]
        body = copy.deepcopy(bodies[0])
        setters = holes(body, [])
        in_cs = [self.in_c(g) for g in insts]
        params: list[tuple[str, list]] = []
        stride_param = None
        texts: list[str | None] = []
        taken: set[str] = set()
        for h, (key, _, _) in enumerate(found[0]):
            vals = [f[h][1] for f in found]
            text = None
            if len(set(vals)) > 1:
                text = self.relate(vals, params, in_cs)
                if text is None:
                    if key == "stride" and stride_param is None:
                        pname = "stride"
                        stride_param = (pname, vals)
                    else:
                        basename = PARAM_NAMES.get(key, key if NAME_RE.match(key) else "v")
                        pname, i = basename, 1
                        while pname in taken or pname in ("stride", "in"):
                            i += 1
                            pname = f"{basename}{i}"
                        params.append((pname, vals))
                    taken.add(pname)
                    text = pname
            texts.append(text)
        for (_, _, setter), text in zip(setters, texts, strict=True):
            if text is not None:
                setter(text)
        names = [p for p, _ in params]
        self.defs.append(Def(name, names, stride_param is not None, body))
        for k, g in enumerate(insts):
            call = Call(name, [v[k] for _, v in params], stride_param[1][k] if stride_param else None)
            call.names = names  # the callee's parameters, for a caller's def
            self.call_of[g.key] = call

    def relate(self, vals, params, in_cs) -> str | None:
        for pname, pv in params:
            if pv == vals:
                return pname
        if all(isinstance(v, int) for v in vals):
            for pname, pv in params:
                if all(isinstance(v, int) and v for v in pv):
                    found = _factor(vals, pv)
                    if found:
                        return f"{found[1]}*{pname}" if found[0] == "*" else f"{pname}//{found[1]}"
            if vals == in_cs:
                return "in.c"
            found = _factor(vals, in_cs)
            if found:
                return f"in.c{found[0]}{found[1]}"
        return None

    def in_c(self, g: Group) -> int:
        depth = len(g.key)
        members = [i for i in sorted(self.w.live) if i and self.w.nodes[i].stack[:depth] == g.key]
        own = set(members)
        src = next(j for i in members for j in self.w.nodes[i].inputs if j not in own)
        n = self.w.nodes[src]
        return n.dims[n.layout.channel_axis]


def compress(e):
    """Runs of equal items of a chain as `xN`, everywhere in an expression."""
    if isinstance(e, Seq):
        items = [compress(i) for i in e.items]
        texts = [render(i, 2) for i in items]
        out, i = [], 0
        while i < len(items):
            best = (0, 1, 1)  # saved, period, count
            for p in range(1, (len(items) - i) // 2 + 1):
                count = 1
                while texts[i + count * p:i + (count + 1) * p] == texts[i:i + p]:
                    count += 1
                if count > 1 and (p * (count - 1), -p) > (best[0], -best[1]):
                    best = (p * (count - 1), p, count)
            _, p, count = best
            if count > 1:
                out.append(Repeat(seq(*items[i:i + p]), count))
                i += p * count
            else:
                out.append(items[i])
                i += 1
        return out[0] if len(out) == 1 else Seq(out)
    if isinstance(e, Merge):
        return Merge(e.kind, [compress(b) for b in e.branches])
    if isinstance(e, Group):
        return replace(e, body=compress(e.body))
    return e


# ---- text ----


def render_form(f: Form, w: Writer | None = None) -> str:
    parts = []
    word = f.stem
    if f.kernel is not None:
        if isinstance(f.kernel, str):
            parts.append(f"kernel={f.kernel}")
        else:
            word = f"{f.stem}{f.kernel[0]}x{f.kernel[1]}"
    positional = [i for i in f.items if i[0] == "pos"]
    last = max((k for k, i in enumerate(positional) if not _omit(f, i, w)), default=-1)
    texts = [num(i[2]) for i in positional[:last + 1]] + parts
    for i in f.items:
        if i[0] == "stride" and not _omit(f, i, w):
            texts.append("/" + (num(i[2]) if not isinstance(i[2], str) or NAME_RE.match(i[2]) else f"({i[2]})"))
    for i in f.items:
        if i[0] == "kw" and not _omit(f, i, w):
            texts.append(f"{i[1]}={num(i[2])}")
        elif i[0] == "flag":
            texts.append(i[1])
    return " ".join([word, *texts])


_WRITER: list = []


def _omit(f: Form, item, w) -> bool:
    value = item[2]
    if isinstance(value, str):
        return False
    key = item[1]
    if key == "stride":
        if ops.REGISTRY[f.stem].name in ("maxpool", "avgpool"):
            return f.kernel is not None and not isinstance(f.kernel, str) and f.kernel == (value, value)
        return value == 1
    w = w or (_WRITER[0] if _WRITER else None)
    default = w.default(f.stem, key) if w else (ops.REGISTRY[f.stem].args[key].default
                                                 if key in ops.REGISTRY[f.stem].args else None)
    return default is not None and value == default and not isinstance(default, bool)


def _needs_parens(e, level: int) -> bool:
    if isinstance(e, Group):
        return _needs_parens(e.body, level)
    if isinstance(e, Merge):
        return (e.kind == "|" and level > 0) or (e.kind == "&" and level > 1)
    if isinstance(e, Seq):
        return level > 2
    if isinstance(e, Repeat):
        return level > 2
    return False


def render(e, level: int = 0) -> str:
    text = _render(e, level)
    return f"({text})" if _needs_parens(e, level) else text


def _render(e, level: int) -> str:
    if isinstance(e, Group):
        return _render(e.body, level)
    if isinstance(e, Skip):
        return "skip pad" if e.fit else "skip"
    if isinstance(e, Ref):
        return f"@{e.label}" + (f" {e.fit}" if e.fit else "")
    if isinstance(e, Form):
        return render_form(e)
    if isinstance(e, Call):
        parts = [e.name, *(num(v) for v in e.values)]
        if e.stride is not None and e.stride != 1:
            parts.append("/" + num(e.stride))
        return " ".join(parts)
    if isinstance(e, Seq):
        return " > ".join(render(i, 2) for i in e.items)
    if isinstance(e, Merge):
        if e.kind == "cat":
            return "[" + ", ".join(render(b, 0) for b in e.branches) + "]"
        return f" {e.kind} ".join(render(b, 1 if e.kind == "|" else 2) for b in e.branches)
    if isinstance(e, Repeat):
        return f"{render(e.body, 3)} x{e.n}"
    raise AssertionError(e)


def wrap(e, text: str, width: int = 96) -> str:
    """A long chain broken after each `>` inside brackets, a long concatenation after each `,`
    (the formatter indents them)."""
    if len(text) <= width:
        return text
    body = e.body if isinstance(e, Group) else e
    if isinstance(body, Seq):
        segments: list[list[str]] = []
        for item in body.items:  # each main layer begins a segment: `conv3x3 64 > bn > relu`
            if not segments or not isinstance(item, Form) or ops.REGISTRY[item.stem].main:
                segments.append([])
            segments[-1].append(render(item, 2))
        return "(\n" + _pack([" > ".join(seg) for seg in segments], " >", width - 16) + "\n)"
    if isinstance(body, Merge) and body.kind == "cat":
        return "[\n" + ",\n".join(render(b, 0) for b in body.branches) + "\n]"
    if isinstance(body, Merge) and body.kind == "|" and isinstance(body.branches[0], Seq):
        first = "(\n" + " >\n".join(render(i, 2) for i in body.branches[0].items) + "\n)"
        return " | ".join([first, *(render(b, 1) for b in body.branches[1:])])
    return text


def _pack(parts: list[str], sep: str, width: int) -> str:
    """Parts joined by `sep`, as many to a line as fit in `width`."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(sep) + 1 + len(part) <= width:
            lines[-1] += f"{sep} {part}"
        else:
            if lines:
                lines[-1] += sep
            lines.append(part)
    return "\n".join(lines)


def write(writer: Writer, root, structurer: Structurer, input_dims, header: str) -> str:
    _WRITER[:] = [writer]
    try:
        lines = [f"# {line}" if line else "#" for line in header.splitlines()]
        s = writer.settings
        if s.padding != "valid":
            lines.append(f"set padding = {s.padding}")
        if s.shortcut_name != "ws":
            lines.append(f"set shortcut_name = {s.shortcut_name}")
        for (op, key), value in s.op_defaults.items():
            lines.append(f"set {op}.{key} = {num(value)}")
        for d in structurer.defs:
            lines.append("")
            params = [*d.params, *(["stride=1"] if d.stride else [])]
            head = f"def {d.name}({', '.join(params)})" if params else f"def {d.name}"
            body = compress(d.body)
            if isinstance(body, Seq) and len(render(body)) > 80:
                lines.append(head + ":")
                for item in body.items:
                    lines.append("    " + wrap(item, render(item, 0)))
            else:
                lines.append(f"{head} = {wrap(body, render(body, 0))}")
        lines += ["", f"network {writer.name}:", f"    input {'x'.join(map(str, input_dims))}"]
        items = root.items if isinstance(root, Seq) else [root]
        last = None
        for k, item in enumerate(items):
            after = items[k + 1] if k + 1 < len(items) else None
            if isinstance(item, Form) and item.stem == "flatten" and isinstance(after, Form) and after.stem == "dense":
                continue  # the compiler flattens before a dense itself
            if isinstance(item, Head):
                body = compress(item.body)
                lines.append(f"    aux {item.label} = @{item.ref} > {wrap(body, render(body, 2))}")
                continue
            label = item.label if isinstance(item, Group) else item.label if isinstance(item, Form) else None
            if isinstance(item, Group) and item.key and "." in item.key[-1].path and not item.forced:
                label = None
            if isinstance(item, Form) and (item.node.leaf is None or "." in item.node.leaf):
                label = None
            body = compress(item)
            text = wrap(body, render(body, 0))
            lines.append("    " + (f"{label} = {text}" if label and good_label(label) else text))
            if k == len(items) - 1 or all(isinstance(i, Head) for i in items[k + 1:]):
                last = label if label and good_label(label) else None
        heads = [i.label for i in items if isinstance(i, Head)]
        returns = [writer.head_label.get(o) for o in writer.returns]
        if writer.returns and returns[1:] != heads:  # not the default: the output, then the heads in line order
            if last is None:
                raise ImportFailure(f"cannot import {writer.name}: its output's line has no name to return it by")
            lines.append("    output " + ", ".join(f"@{r or last}" for r in returns))
        return format_source("\n".join(lines) + "\n")
    finally:
        _WRITER.clear()
