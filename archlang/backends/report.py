"""IR → the static cost report: parameters, MACs, other ops and activation memory per layer,
rolled up by block at a chosen depth, as text, Markdown, CSV or JSON; and the per-block
difference of two networks.  Everything is computed from the IR: no torch, no forward pass."""

from __future__ import annotations

import csv
import difflib
import io
import json
from dataclasses import dataclass, field
from typing import Any

from archlang.backends.describe import describe_block
from archlang.backends.memory import CONVENTION as TRAINING_CONVENTION
from archlang.backends.memory import TrainingMemory, TrainingSetup, mib, training_memory
from archlang.compiler.ir import NetworkIR, Node, Role
from archlang.compiler.ops import REGISTRY, describe, node_cost

BYTES_PER_ELEMENT = 4  # float32

CONVENTION = [
    "MACs: multiply-accumulates of conv, dense and attention (its matmuls included), bias excluded, batch 1 "
    "(torchvision's published \"GFLOPS\"); FLOPs = 2 × MACs.",
    "other ops: elementwise work outside the MACs, one per output element and step (bias adds, BN, "
    "activations, pool windows, residual adds).",
    "activations: the float32 output of every layer at batch 1 (flatten is a view and takes none); "
    "params exclude BN running statistics (buffers).",
]


@dataclass
class Row:
    """One line of a report: a layer, or a block rolled up at the report's depth."""

    name: str
    op: str
    kind: str  # input | layer | block
    shape: tuple[int, ...]
    params: int = 0
    buffers: int = 0
    macs: int = 0
    other_ops: int = 0
    activations: int = 0  # elements
    ws: bool = False  # an inserted Ws projection, or a block holding one
    pad: bool = False  # a zero-pad shortcut (option A), or a block holding one
    layers: int = 0
    parts: dict[str, int] = field(default_factory=dict)  # MACs by named part (attention's matmuls)
    saved: int | None = None  # bytes kept for backward in a training step (a report with a TrainingSetup)
    skips: int = 0  # `skip` branches of sums in a block (a plain twin has none): its structure

    @property
    def marks(self) -> str:
        return ("  [Ws]" if self.ws else "") + ("  [pad]" if self.pad else "")

    @property
    def activation_bytes(self) -> int:
        return self.activations * BYTES_PER_ELEMENT

    def add(self, node: Node, work: bool = True) -> None:
        """Adds a node's counts; without `work` its parameters only (an auxiliary head in a total)."""
        c = node_cost(node)
        self.params += c.params
        self.buffers += c.buffers
        if not work:
            return
        self.macs += c.macs
        self.other_ops += c.other_ops
        spec = REGISTRY[node.op]
        if spec.breakdown is not None:
            for part, macs in spec.breakdown(node.attrs, node.in_shapes, node.shape):
                self.parts[part] = self.parts.get(part, 0) + macs
        if not REGISTRY[node.op].view and node.role is not Role.INPUT:
            self.activations += node.shape.numel
        self.ws = self.ws or node.role is Role.PROJECTION
        self.pad = self.pad or node.role is Role.PAD
        self.layers += 1
        self.shape = node.shape.dims

    def to_dict(self) -> dict[str, Any]:
        row = {"name": self.name, "op": self.op, "kind": self.kind, "shape": list(self.shape),
               "params": self.params, "buffers": self.buffers, "macs": self.macs, "other_ops": self.other_ops,
               "activation_bytes": self.activation_bytes, "ws": self.ws, "pad": self.pad, "layers": self.layers,
               "skips": self.skips}
        if self.parts:
            row["parts"] = dict(self.parts)
        if self.saved is not None:
            row["saved_bytes"] = self.saved
        return row

    def part_cells(self) -> list[list[str]]:
        """The sub-rows of a row whose MACs have named parts: `  · q·kᵀ` and its MACs."""
        cells = [["", f"  · {part}", "", "", f"{macs:,}", "", ""] for part, macs in self.parts.items()]
        return [c + [""] for c in cells] if self.saved is not None else cells


@dataclass
class Report:
    network: str
    arguments: dict[str, Any]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    depth: int | None
    rows: list[Row]
    total: Row
    projections: list[str] = field(default_factory=list)
    pad_shortcuts: list[str] = field(default_factory=list)
    # every output of a network that returns several (an `output` line, `aux` heads), in order; an
    # auxiliary head's counts are its own layers' (the total's MACs are the eval path's)
    outputs: list[Row] = field(default_factory=list)
    training_only: list[bool] = field(default_factory=list)
    training: TrainingMemory | None = None  # the memory of a training step, when asked for

    @property
    def flops(self) -> int:
        return 2 * self.total.macs

    # ---- formats ----

    def to_dict(self) -> dict[str, Any]:
        t = self.total
        data = {
            "network": self.network, "arguments": self.arguments,
            "input_shape": list(self.input_shape), "output_shape": list(self.output_shape),
            "params": t.params, "buffers": t.buffers, "macs": t.macs, "flops": self.flops,
            "other_ops": t.other_ops, "activation_bytes": t.activation_bytes,
            "projections": self.projections, "pad_shortcuts": self.pad_shortcuts, "depth": self.depth,
            **({"parts": dict(t.parts)} if t.parts else {}),
            "convention": " ".join(CONVENTION),
            "layers": [r.to_dict() for r in self.rows],
        } | ({"outputs": [{"name": r.name, "shape": list(r.shape), "training_only": t, "params": r.params,
                            "macs": r.macs} for r, t in zip(self.outputs, self.training_only, strict=True)]}
             if self.outputs else {})
        if self.training:
            data["training"] = self.training.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def _cells(self, row: Row, human: bool) -> list[str]:
        op = row.op + row.marks
        saved = [] if row.saved is None else [_bytes(row.saved) if row.saved else ""]
        if row.kind == "input":
            return [row.name, op, _shape(row.shape), "", "", "", "", *saved]
        act = _bytes(row.activation_bytes) if human else str(row.activation_bytes)
        return [row.name, op, _shape(row.shape), f"{row.params:,}", f"{row.macs:,}", f"{row.other_ops:,}", act,
                *saved]

    HEADER = ["layer", "op", "output", "params", "MACs", "other ops", "activations"]
    SAVED_HEADER = "saved for backward"

    @property
    def header(self) -> list[str]:
        return self.HEADER + ([self.SAVED_HEADER] if self.training else [])

    def _total_cells(self, bold: bool = False) -> list[str]:
        t = self.total
        cells = [f"{t.params:,}", f"{t.macs:,}", f"{t.other_ops:,}", _bytes(t.activation_bytes)]
        if self.training:
            cells.append(_bytes(self.training.activation_bytes))
        return [f"**{c}**" if bold else c for c in cells]

    def _convention(self) -> list[str]:
        return CONVENTION + ([TRAINING_CONVENTION] if self.training else [])

    def _summary(self) -> list[str]:
        t = self.total
        args = ", ".join(f"{k}={v}" for k, v in self.arguments.items())
        lines = [f"{self.network}{f'({args})' if args else ''}: {_shape(self.input_shape)} → "
                 f"{_shape(self.output_shape)}",
                 f"params {t.params:,} ({_si(t.params)})  buffers {t.buffers:,}  MACs {t.macs:,} ({_si(t.macs)})  "
                 f"FLOPs {self.flops:,} ({_si(self.flops)})",
                 f"other ops {t.other_ops:,} ({_si(t.other_ops)})  activations {_bytes(t.activation_bytes)} "
                 f"({t.activation_bytes:,} bytes)"]
        if self.projections:
            lines.append(f"Ws projections: {', '.join(self.projections)}")
        if self.pad_shortcuts:
            lines.append(f"zero-pad shortcuts: {', '.join(self.pad_shortcuts)}")
        if t.parts:
            lines.append("of the MACs: " + ", ".join(f"{part} {macs:,}" for part, macs in t.parts.items()))
        if self.outputs:
            shown = []
            for row, train in zip(self.outputs, self.training_only, strict=True):
                text = f"{row.name} {_shape(row.shape)}"
                if train:
                    text += f" (training only: its head {row.params:,} params, {row.macs:,} MACs)"
                shown.append(text)
            lines.append(f"outputs: {'; '.join(shown)}")
            extra = sum(r.macs for r, t in zip(self.outputs, self.training_only, strict=True) if t)
            if extra:
                lines.append(f"MACs, other ops and activations are the eval path's; in training the auxiliary "
                             f"heads add {extra:,} MACs ({_si(self.total.macs + extra)} MACs in all)")
        return lines

    def to_text(self) -> str:
        body = [cells for r in self.rows for cells in (self._cells(r, True), *r.part_cells())]
        total = ["total", "", "", *self._total_cells()]
        (head, *lines, foot), rule = _aligned([self.header, *body, total])
        out = self._summary() + ["", head, rule, *lines, rule, foot, ""]
        if self.training:
            out += self.training.lines() + [""]
        out += self._convention()
        return "\n".join(out) + "\n"

    def to_markdown(self) -> str:
        def md(cells):
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        header = self.header
        out = [f"# {self.network}", ""] + [f"- {line}" for line in self._summary()[1:]] + [
            f"- input {_shape(self.input_shape)}, output {_shape(self.output_shape)}", "",
            md(header), "| " + " | ".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + " |"]
        for r in self.rows:
            c = self._cells(r, True)
            out.append(md([f"`{c[0]}`", *c[1:]]))
            out += [md(cells) for cells in r.part_cells()]
        out.append(md(["**total**", "", "", *self._total_cells(bold=True)]))
        if self.training:
            out += ["", f"**{self.training.title}**", ""] + [
                f"- {name}: {mib(n)} ({n:,} bytes)" for name, n in self.training.parts()]
        out += [""] + [f"{line}  " for line in self._convention()]
        return "\n".join(out).rstrip() + "\n"

    CSV_HEADER = ["network", "layer", "op", "kind", "output", "params", "buffers", "macs", "other_ops",
                  "activation_bytes", "ws", "pad"]

    def csv_rows(self) -> list[list]:
        """The CSV rows (and, in a report with a training setup, the saved bytes of each last)."""
        saved = self.training.activation_bytes if self.training else None
        return [[self.network, r.name, r.op, r.kind, _shape(r.shape), r.params, r.buffers, r.macs,
                 r.other_ops, r.activation_bytes, int(r.ws), int(r.pad),
                 *([] if self.training is None else [saved if r is self.total else r.saved or 0])]
                for r in [*self.rows, self.total]]

    def to_csv(self) -> str:
        return reports_to_csv([self])

    def __str__(self) -> str:
        return self.to_text()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def reports_to_csv(reports: list[Report]) -> str:
    """One CSV table of several networks' reports (the `network` column tells them apart)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(Report.CSV_HEADER + (["saved_bytes"] if any(r.training for r in reports) else []))
    for report in reports:
        w.writerows(report.csv_rows())
    return buf.getvalue()


def reports_to_text(reports: list[Report], fmt: str) -> str:
    """Several reports in one of the formats of `archc report`: text, markdown, csv or json
    (a list of objects, one per network)."""
    if fmt == "json":
        return json.dumps([r.to_dict() for r in reports], indent=2) + "\n"
    if fmt == "csv":
        return reports_to_csv(reports)
    if fmt == "markdown":
        return "\n".join(r.to_markdown() for r in reports)
    return "\n".join(r.to_text() for r in reports)


def build_report(ir: NetworkIR, depth: int | None = None, training: TrainingSetup | None = None) -> Report:
    """Rows in graph order; with `depth`, nodes deeper than it are summed into their block.  With
    `training`, the memory of a training step too (archlang/backends/memory.py): a section, and
    each row's bytes saved for backward."""
    if depth is not None and depth < 1:
        raise ValueError("depth must be at least 1")
    memory = training_memory(ir, training) if training is not None else None
    saved = memory.by_node if memory is not None else {}
    scopes = {s.path: s for s in ir.root.walk_scopes() if s.path}
    # the input row is keyed apart from the layers: a layer may be labelled `input` too
    rows: dict[str | None, Row] = {None: Row("input", "input", "input", ir.input.shape.dims)}
    if memory is not None:
        rows[None].saved = saved.get(ir.input.id, 0)
    total = Row("total", "", "total", ir.output.shape.dims)
    for node in ir.nodes[1:]:
        parts = node.path.split(".")
        total.add(node, work=node.id not in ir.training_only)
        if depth is not None and len(parts) > depth:
            key, kind = ".".join(parts[:depth]), "block"
        else:
            key, kind = node.path, "layer"
        if key not in rows:
            rows[key] = Row(key, describe(node.op, node.attrs) if kind == "layer" else "", kind, node.shape.dims,
                            saved=None if memory is None else 0)
        rows[key].add(node)
        if memory is not None:
            rows[key].saved += saved.get(node.id, 0)
    for key, row in rows.items():
        if row.kind == "block":
            row.op = describe_block(scopes[key]) if key in scopes else f"{row.layers} layers"
    if depth is not None:  # a block counts the skips of its sums (those of a layer row's sum show as the row)
        for path, scope in scopes.items():
            key = ".".join(path.split(".")[:depth])
            if scope.skips and key in rows and rows[key].kind == "block":
                rows[key].skips += scope.skips
    total.shape = ir.output.shape.dims
    def blocks(nodes):
        return list(dict.fromkeys(n.path.rsplit(".", 1)[0] if "." in n.path else "" for n in nodes))

    report = Report(ir.name, dict(ir.arguments), ir.input.shape.dims, ir.output.shape.dims, depth,
                    list(rows.values()), total, blocks(n for n in ir.nodes if n.role is Role.PROJECTION),
                    blocks(n for n in ir.nodes if n.role is Role.PAD), training=memory)
    if ir.outputs:
        heads = sorted(o.node for o in ir.outputs if o.training_only)
        for out in ir.outputs:
            row = Row(out.name, "output", "output", ir.nodes[out.node].shape.dims)
            if out.training_only:  # its head: the training-only nodes up to it, after the previous head
                before = max((h for h in heads if h < out.node), default=-1)
                for i in sorted(ir.training_only):
                    if before < i <= out.node:
                        row.add(ir.nodes[i])
            report.outputs.append(row)
            report.training_only.append(out.training_only)
    return report


# ---- diff ----


@dataclass
class DiffRow:
    name: str
    a: Row | None
    b: Row | None

    @property
    def changed(self) -> bool:
        if self.a is None or self.b is None:
            return True
        return (self.a.shape, self.a.params, self.a.macs, self.a.op, self.a.marks, self.a.skips) != (
            self.b.shape, self.b.params, self.b.macs, self.b.op, self.b.marks, self.b.skips)

    @property
    def structure(self) -> str | None:
        """`skip removed`, `2 skips added`: how the block's sums changed, where they did."""
        if self.a is None or self.b is None or self.a.skips == self.b.skips:
            return None
        n = abs(self.b.skips - self.a.skips)
        return f"{n if n > 1 else ''}{' ' if n > 1 else ''}skip{'s' * (n > 1)} " \
               f"{'removed' if self.b.skips < self.a.skips else 'added'}"


def diff_reports(a: Report, b: Report) -> list[DiffRow]:
    """Rows of two reports aligned by name (difflib keeps their order), unchanged rows included."""
    names_a, names_b = [r.name for r in a.rows], [r.name for r in b.rows]
    out: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=names_a, b=names_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out += [DiffRow(names_a[i], a.rows[i], b.rows[j]) for i, j in zip(range(i1, i2), range(j1, j2),
                                                                                strict=True)]
            continue
        out += [DiffRow(names_a[i], a.rows[i], None) for i in range(i1, i2)]
        out += [DiffRow(names_b[j], None, b.rows[j]) for j in range(j1, j2)]
    return out


def diff_dict(a: Report, b: Report, label_a: str, label_b: str) -> dict[str, Any]:
    """`archc diff --json`: the aligned rows (unchanged ones included) and the totals."""
    rows = [{"name": r.name, "changed": r.changed, "structure": r.structure, "a": r.a and r.a.to_dict(),
             "b": r.b and r.b.to_dict()} for r in diff_reports(a, b)]
    return {"a": label_a, "b": label_b, "depth": a.depth, "rows": rows,
            "params": [a.total.params, b.total.params], "macs": [a.total.macs, b.total.macs]}


def diff_text(a: Report, b: Report, label_a: str, label_b: str, show_all: bool = False) -> str:
    rows = diff_reports(a, b)
    shown = [r for r in rows if show_all or r.changed]
    header = ["block", "op A → B", "output A → B", "params A → B", "Δ params", "MACs A → B", "Δ MACs"]
    body = []
    for r in shown:
        op = _arrow(r.a and _op(r.a), r.b and _op(r.b))
        body.append([r.name, f"{op}  ({r.structure})" if r.structure else op,
                     _arrow(r.a and _shape(r.a.shape), r.b and _shape(r.b.shape)),
                     _arrow(r.a and f"{r.a.params:,}", r.b and f"{r.b.params:,}"),
                     _delta(r.a and r.a.params, r.b and r.b.params),
                     _arrow(r.a and f"{r.a.macs:,}", r.b and f"{r.b.macs:,}"),
                     _delta(r.a and r.a.macs, r.b and r.b.macs)])
    ta, tb = a.total, b.total
    total = ["total", "", _arrow(_shape(a.output_shape), _shape(b.output_shape)),
             _arrow(f"{ta.params:,}", f"{tb.params:,}"), _delta(ta.params, tb.params),
             _arrow(f"{ta.macs:,}", f"{tb.macs:,}"), _delta(ta.macs, tb.macs)]
    (head, *lines, foot), rule = _aligned([header, *body, total])
    same = sum(1 for r in rows if not r.changed)
    depth = f"depth {a.depth}" if a.depth else "every layer"
    out = [f"A: {label_a}", f"B: {label_b}", f"{len(rows) - same} of {len(rows)} rows differ ({depth})", ""]
    if body:
        out += [head, rule, *lines, rule]
    out.append(foot)
    return "\n".join(out) + "\n"


def _aligned(rows: list[list[str]]) -> tuple[list[str], str]:
    """Text table lines (columns padded to their widest cell, numbers from column 3 on to the
    right) and the ─ rule that goes under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i >= 3 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip() for cells in rows]
    return lines, "  ".join("─" * w for w in widths)


def _op(row: Row) -> str:
    return row.op + row.marks.replace("  ", " ")


def _arrow(a: str | None, b: str | None) -> str:
    if a is None:
        return f"— → {b}"
    if b is None:
        return f"{a} → —"
    return a if a == b else f"{a} → {b}"


def _delta(a: int | None, b: int | None) -> str:
    d = (b or 0) - (a or 0)
    return "" if d == 0 else f"{d:+,}"


# ---- number formats ----


def _shape(dims) -> str:
    return "x".join(str(d) for d in dims)


def _si(n: int) -> str:
    """`61.71 k`, `3.60 G`, then T, P and E; a count past 999.99 E is scientific (`1.00e+21`),
    never a float's digits."""
    if isinstance(n, float) and not n.is_integer():
        return f"{n:.2e}" if n == n and abs(n) != float("inf") else str(n)
    if n < 1000:
        return str(int(n))
    for unit, size in (("k", 10**3), ("M", 10**6), ("G", 10**9), ("T", 10**12), ("P", 10**15), ("E", 10**18)):
        if round(n / size, 2) < 1000:
            return f"{n / size:.2f} {unit}"
    return f"{n:.2e}"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
