"""IR → a graphviz diagram: DOT text built with the `graphviz` package, rendered by `dot`.

Blocks above the chosen depth are clusters; blocks at the depth are single nodes, and a run
of identical sibling blocks (a repeated stage) becomes one node with a ×N badge.  Inserted
Ws projections and zero-pad shortcuts are drawn dashed in orange, with a legend.  Merges
are small round nodes; edges carry the tensor shape (in the compact style only where it
changes).  The branches of a join are drawn left to right (top to bottom with LR) in the order
the join takes them.  The same IR gives the same DOT."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import graphviz

from archlang.backends.describe import describe_block, shortcut_kind
from archlang.compiler.ir import Container, NetworkIR, Node, Role, Scope, ScopeKind
from archlang.compiler.ops import REGISTRY, describe, node_cost

DEFAULT_DEPTH = 2
DIRECTIONS = ("TB", "LR")  # top to bottom, left to right
STYLES = ("full", "compact")  # compact: a shape on an edge only where it changes, tighter spacing
FONT = "Helvetica"
WS_COLOUR = "#d9822b"
GATE_COLOUR = "#7b4ea3"  # the edge of a gate into its multiply (squeeze-and-excitation)
REF_COLOUR = "#2f6fb0"  # a value read by reference (`@enc4`): a long skip, drawn beside the column
AUX_COLOUR = "#8a8a8a"  # an auxiliary head's output (training only)
BLOCK_FILL = "#f4f7fb"
LEGEND_WS = (f'<tr><td border="1" style="dashed" color="{WS_COLOUR}" bgcolor="#fdf0e2">  Ws  </td>'
             f'<td align="left">inserted shortcut: projection or zero-pad</td></tr>')
LEGEND_ADD = '<tr><td>+</td><td align="left">residual sum</td></tr>'
LEGEND_REF = (f'<tr><td><font color="{REF_COLOUR}">@name</font></td>'
              '<td align="left">an earlier line read by reference (long skip)</td></tr>')
LEGEND_AUX = (f'<tr><td border="1" style="dashed" color="{AUX_COLOUR}">aux</td>'
              '<td align="left">auxiliary head: computed and returned in training only</td></tr>')
LEGEND_GATE = (f'<tr><td bgcolor="#efe3f7"><font color="{GATE_COLOUR}">×</font></td>'
               f'<td align="left"><font color="{GATE_COLOUR}">gate</font>: '
               'channels scaled by a broadcast factor</td></tr>')


MAX_BOXES = 400  # a diagram drawing more is collapsed to a smaller depth, then cut in the middle
KEPT_AT_ENDS = 60  # boxes kept at each end of a diagram cut in the middle
DOT_TIMEOUT = 60.0  # seconds


class RenderError(Exception):
    """The `dot` binary is missing, failed or took too long; the message says what to do."""


@dataclass
class _Box:
    """One drawn node: a layer, or a block (or run of identical blocks) shown collapsed."""

    key: str
    nodes: list[Node] = field(default_factory=list)
    scopes: list[Scope] = field(default_factory=list)  # empty for a single layer
    parents: list[Scope] = field(default_factory=list)  # the clusters it sits in, outermost first


def _fmt(dims) -> str:
    return "×".join(str(d) for d in dims)


def _signature(scope: Scope) -> tuple:
    """Blocks with the same signature compute the same thing on the same shapes."""
    return tuple((describe(n.op, n.attrs), n.role, tuple(s.dims for s in n.in_shapes), n.shape.dims)
                 for n in scope.walk_nodes())


def _chain(scope: Scope, root: Scope) -> list[Scope]:
    """The blocks from the root (excluded) down to `scope`."""
    chain = []
    while scope is not None and scope is not root:
        chain.append(scope)
        scope = scope.parent
    return chain[::-1]


def _layout(ir: NetworkIR, depth: int | None) -> tuple[list[_Box], dict[int, _Box]]:
    """Which box draws each IR node, in graph order."""
    runs: dict[int, str] = {}  # id(scope) → key of the run it belongs to
    if depth is not None:
        for scope in ir.root.walk_scopes():
            level = 0 if scope is ir.root else len(scope.path.split("."))
            if level != depth - 1:
                continue
            previous = None
            for item in scope.items:
                if not isinstance(item, Scope):
                    previous = None
                    continue
                sig = _signature(item)
                if previous is not None and previous[0] == sig:
                    runs[id(item)] = previous[1]
                else:
                    previous = (sig, item.path)
                    runs[id(item)] = item.path
    boxes: dict[str, _Box] = {}
    of_node: dict[int, _Box] = {}
    scope_of = ir.scopes_of_nodes()
    for node in ir.nodes:
        if node.role is Role.IMPLICIT and node.inputs:  # an inserted flatten is drawn as part of its input
            of_node[node.id] = of_node[node.inputs[0]]
            continue
        chain = _chain(scope_of[node.id], ir.root)
        # a shortcut block of one node needs no frame of its own
        chain = [s for s in chain if not (s.is_shortcut and len(s.items) == 1)]
        if depth is not None and len(chain) >= depth:
            collapsed = chain[depth - 1]
            key = "block:" + runs.get(id(collapsed), collapsed.path)
            box = boxes.setdefault(key, _Box(key, parents=chain[:depth - 1]))
            if collapsed not in box.scopes:
                box.scopes.append(collapsed)
        else:
            key = f"node:{node.id}"
            box = boxes.setdefault(key, _Box(key, parents=chain))
        box.nodes.append(node)
        of_node[node.id] = box
    return list(boxes.values()), of_node


def _html(text: str) -> str:
    return html.escape(text, quote=False)


def _block_label(box: _Box) -> str:
    first, n = box.scopes[0], len(box.scopes)
    leaf = first.path.rsplit(".", 1)[-1]
    in_list = first.parent is not None and first.parent.container is Container.LIST
    name = first.path if in_list else leaf  # inside its cluster, `branch2` says enough; `0` does not
    if n > 1:
        name += f" – {box.scopes[-1].path.rsplit('.', 1)[-1]}"
    if first.is_shortcut:
        kind = shortcut_kind(box.nodes)
        kind = "Ws" if kind == "Ws projection" else kind
        what = " > ".join(describe(x.op, x.attrs) for x in box.nodes)
        return f'<<b>{_html(kind)}</b><br/><font point-size="10">{_html(what)}</font>>'
    what = describe_block(first)
    params = sum(node_cost(x).params for x in box.nodes)
    badge = f' <font color="{WS_COLOUR}"><b>×{n}</b></font>' if n > 1 else ""
    extra = []
    if any(x.role is Role.PROJECTION for x in box.nodes):
        extra.append(f'<font color="{WS_COLOUR}">+Ws</font>')
    if any(x.role is Role.PAD for x in box.nodes):
        extra.append(f'<font color="{WS_COLOUR}">+zero-pad</font>')
    stats = f"{_short(params)} params" + "".join(f" {e}" for e in extra)
    return (f'<<b>{_html(name)}</b>{badge}<br/>{_html(what)}<br/>'
            f'<font point-size="9" color="#555555">{stats}</font>>')


def _short(n: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def _node_attrs(box: _Box) -> dict[str, str]:
    if box.key == "cut":
        layers = sum(1 for n in box.nodes if n.role is Role.LAYER)
        return {"label": f"⋯ {layers:,} layers, {_short(sum(node_cost(n).params for n in box.nodes))} params ⋯",
                "shape": "box", "style": "dashed"}
    if box.scopes:
        ws = box.scopes[0].is_shortcut
        attrs = {"label": _block_label(box), "shape": "box", "style": "rounded,filled" + (",dashed" if ws else ""),
                 "fillcolor": "#fdf0e2" if ws else BLOCK_FILL}
        if ws:
            attrs["color"] = WS_COLOUR
        return attrs
    node = box.nodes[0]
    draw = REGISTRY[node.op].draw
    if node.role is Role.INPUT:
        return {"label": f"input {_fmt(node.shape.dims)}", "shape": draw.shape, "style": "filled",
                "fillcolor": "white"}
    if draw.compact and draw.shape == "circle":
        attrs = {"label": draw.text, "shape": "circle", "width": "0.3", "fixedsize": "true", "fontsize": "14"}
        if draw.fill != "white":  # a product: filled, so a gate's multiply stands apart from a sum
            attrs.update(style="filled", fillcolor=draw.fill, color=GATE_COLOUR)
        return attrs
    if draw.compact:
        return {"label": draw.text, "shape": draw.shape, "style": "rounded", "height": "0.25", "fontsize": "10"}
    text = draw.text or describe(node.op, node.attrs)
    if node.role is Role.PROJECTION:
        return {"label": f"<<b>Ws</b> {_html(text)}>", "shape": "box", "style": "filled,dashed",
                "color": WS_COLOUR, "fillcolor": "#fdf0e2"}
    if node.role is Role.PAD:
        return {"label": "zero-pad shortcut", "shape": "box", "style": "filled,dashed", "color": WS_COLOUR,
                "fillcolor": "#fdf0e2"}
    return {"label": text, "shape": draw.shape, "style": "filled", "fillcolor": draw.fill}


def fitted_layout(ir: NetworkIR, depth: int | None) -> tuple[list[_Box], dict[int, _Box], str | None]:
    """The layout at `depth`, or, when that draws more than MAX_BOXES boxes, at the deepest depth
    that draws fewer; if even depth 1 draws too many, its middle is cut out and drawn as one box.
    The note says what was done (None: nothing)."""
    boxes, of_node = _layout(ir, depth)
    if len(boxes) <= MAX_BOXES:
        return boxes, of_node, None
    start = max(scope.path.count(".") + 1 for scope in ir.root.walk_scopes()) if depth is None else depth
    for smaller in range(min(start, depth or start) - 1, 0, -1):
        boxes, of_node = _layout(ir, smaller)
        if len(boxes) <= MAX_BOXES:
            return boxes, of_node, f"drawn at depth {smaller}: deeper, it would draw more than {MAX_BOXES} boxes"
    boxes, of_node = _layout(ir, 1)
    middle = boxes[KEPT_AT_ENDS:-KEPT_AT_ENDS]
    cut = _Box("cut", nodes=[n for box in middle for n in box.nodes])
    for node in cut.nodes:
        of_node[node.id] = cut
    kept = boxes[:KEPT_AT_ENDS] + [cut] + boxes[-KEPT_AT_ENDS:]
    return kept, of_node, (f"{len(middle)} of {len(boxes)} boxes at depth 1 are drawn as one: label blocks "
                           f"(`name = ...`) to draw a network of this size in full")


def _is_sum(node: Node) -> bool:
    return node.role is Role.MERGE and REGISTRY[node.op].draw.text == "+"


def _spine(box: _Box, ir: NetworkIR) -> bool:
    """On the network's main column: in no branch of a join, no shortcut, no auxiliary head, and
    no residual sum (the skip's edge into it would pull the column towards itself)."""
    if any(s.kind in (ScopeKind.BRANCH, ScopeKind.SHORTCUT) for s in [*box.parents, *box.scopes[:1]]):
        return False
    if any(n.id in ir.training_only for n in box.nodes):
        return False
    return bool(box.scopes) or not (box.nodes[0].role.is_shortcut or _is_sum(box.nodes[0]))


def _frame(box: _Box) -> int | None:
    """The frame (cluster) a box is drawn in: its innermost block that is not a branch."""
    framed = [s for s in box.parents if s.kind is not ScopeKind.BRANCH]
    return id(framed[-1]) if framed else None


def _branch_rows(ir: NetworkIR, boxes: list[_Box], of_node: dict[int, _Box]) -> dict[int | None, list[list[_Box]]]:
    """For each frame, the rows of boxes that start the branches of a fork, in branch order.

    A fork's branches are its successors with no other input (a skip into a sum is not one),
    in the order of their nodes, which is the join's order.  Dot orders the nodes of a rank to
    cross fewer edges, and on a tie as it likes (GoogLeNet's 1x1 branch came out rightmost);
    `ordering=out` holds only when the fork and its branches share a frame, and `ordering=in` on
    the join did not hold in every layout either.  What does hold: invisible edges between nodes
    on one rank (`rank=same`) of one frame, drawn left to right.  So branches are drawn without
    a frame of their own, and their first boxes are tied into one ordered row."""
    successors: dict[str, list[_Box]] = {}
    inputs: dict[str, set[str]] = {}
    for node in ir.nodes:
        for src in node.inputs:
            a, b = of_node[src], of_node[node.id]
            if a is b or (src, node.id) in ir.ref_edges:
                continue
            inputs.setdefault(b.key, set()).add(a.key)
            if b not in successors.setdefault(a.key, []):
                successors[a.key].append(b)
    rows: dict[int | None, list[list[_Box]]] = {}
    for targets in successors.values():
        heads = [b for b in targets if len(inputs[b.key]) == 1]
        frames = {_frame(b) for b in heads}
        if len(heads) > 1 and len(frames) == 1:
            rows.setdefault(frames.pop(), []).append(heads)
    return rows


def build_dot(ir: NetworkIR, depth: int | None = DEFAULT_DEPTH, direction: str = "TB", style: str = "full") -> str:
    """The DOT text of the diagram; `depth=None` draws every layer, `direction` LR lays it out
    left to right, `style="compact"` labels an edge only where the shape changes and packs the
    boxes closer.  A diagram too large to draw is collapsed (fitted_layout), and its title says so."""
    if depth is not None and depth < 1:
        raise ValueError("depth must be at least 1")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction is one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if style not in STYLES:
        raise ValueError(f"style is one of {', '.join(STYLES)}, not {style!r}")
    compact = style == "compact"
    boxes, of_node, note = fitted_layout(ir, depth)
    ids = {box.key: f"n{i}" for i, box in enumerate(boxes)}
    title = f"{ir.name}: {_fmt(ir.input.shape.dims)} → {_fmt(ir.output.shape.dims)}"
    # newrank ranks the whole graph at once, not frame by frame: the branches of a join inside a
    # frame then start on one rank below their fork, not stacked against the join
    g = graphviz.Digraph(ir.name, graph_attr={
        "rankdir": direction, "newrank": "true", "fontname": FONT, "labelloc": "t",
        "nodesep": "0.15" if compact else "0.25", "ranksep": "0.2" if compact else "0.3",
        "label": title + (f"\n({note})" if note else ""), "fontsize": "16"},
        node_attr={"fontname": FONT, "fontsize": "11", "height": "0.3", "margin": "0.12,0.04"},
        edge_attr={"fontname": FONT, "fontsize": "9", "color": "#444444", "arrowsize": "0.6"})

    # clusters: a tree of the scopes boxes sit in, emitted in order of first use
    tree: dict[int, list] = {}
    order: list[tuple[str, object]] = []
    for box in boxes:
        parent_key = None
        for scope in box.parents:
            if id(scope) not in tree:
                tree[id(scope)] = []
                (tree[parent_key] if parent_key is not None else order).append(("scope", scope))
            parent_key = id(scope)
        (tree[parent_key] if parent_key is not None else order).append(("box", box))

    cluster_numbers: dict[int, int] = {}  # in emission order, so the DOT reads top to bottom
    rows = _branch_rows(ir, boxes, of_node)

    def emit(graph, items, frame: int | None = None, rows_here: bool = True) -> None:
        for kind, item in items:
            if kind == "box":
                # one group for the main column: dot keeps its edges straight, so a long network
                # does not drift sideways (and widen the picture) around its shortcuts
                spine = {"group": "spine"} if _spine(item, ir) else {}
                graph.node(ids[item.key], **_node_attrs(item), **spine)
                continue
            scope = item
            if scope.kind is ScopeKind.BRANCH:  # unframed: see _branch_rows
                emit(graph, tree[id(scope)], frame, rows_here=False)
                continue
            ws = scope.is_shortcut
            number = cluster_numbers.setdefault(id(scope), len(cluster_numbers))
            with graph.subgraph(name=f"cluster_{number}") as sub:
                in_list = scope.parent is not None and scope.parent.container is Container.LIST
                label = "Ws" if ws else scope.path if in_list else scope.name
                sub.attr(label=label, style="rounded,dashed" if ws else "rounded,filled",
                         color=WS_COLOUR if ws else "#b8c4d6", fillcolor="white" if ws else BLOCK_FILL,
                         fontsize="11", labeljust="l", fontcolor=WS_COLOUR if ws else "#333333")
                emit(sub, tree[id(scope)], id(scope))
        for row in rows.get(frame, []) if rows_here else []:  # the first boxes of a join's branches, in order
            if direction == "LR" and frame is not None:  # dot lays a frame's rows out bottom to top
                row = row[::-1]
            with graph.subgraph() as same:
                same.attr(rank="same")
                for left, right in zip(row, row[1:], strict=False):
                    same.edge(ids[left.key], ids[right.key], style="invis")

    emit(g, order)
    out_id = "output"
    outputs = []  # (DOT id, source node id)
    if ir.outputs:
        for k, out in enumerate(ir.outputs):
            dot_id = out_id if k == 0 else f"output{k}"
            shape_text = _fmt(ir.nodes[out.node].shape.dims)
            if out.training_only:
                g.node(dot_id, f"{out.name} {shape_text}\n(training only)", shape="oval", style="dashed",
                       color=AUX_COLOUR, fontcolor="#555555")
            else:
                g.node(dot_id, f"output {out.name} {shape_text}", shape="oval",
                       **({"group": "spine"} if k == 0 else {}))
            outputs.append((dot_id, out.node))
    else:
        g.node(out_id, f"output {_fmt(ir.output.shape.dims)}", shape="oval", group="spine")
        outputs.append((out_id, ir.output.id))

    def entering(box: _Box):
        """The shape a box takes in (the input's own), to tell where an edge's shape changes."""
        first = box.nodes[0]
        return first.in_shapes[0] if first.in_shapes else first.shape

    # compact, top to bottom: external labels, placed after the layout, add no rank of their own
    # (left to right, they would sit on the short edges' boxes)
    text_key = "xlabel" if compact and direction == "TB" else "label"
    seen = set()
    labelled = set()  # compact: sources whose shape is already on one of their edges
    for node in ir.nodes:
        for src in node.inputs:
            a, b = ids[of_node[src].key], ids[of_node[node.id].key]
            if a == b or (a, b) in seen:
                continue
            seen.add((a, b))
            shortcut = node.role.is_shortcut or ir.nodes[src].role.is_shortcut
            gate = node.op == "_mul" and ir.nodes[src].shape != node.shape  # a broadcast factor: the gate
            shape_text = _fmt(ir.nodes[src].shape.dims)
            ref = ir.ref_edges.get((src, node.id))
            if ref is not None:  # a long skip: drawn beside the column, which it does not stretch (a head
                # branching off by reference hangs below its source instead)
                g.edge(a, b, **{text_key: f" @{ref}" + ("" if compact else f" {shape_text}")},
                       style="dashed",
                       color=REF_COLOUR, fontcolor=REF_COLOUR,
                       **({} if node.id in ir.training_only else {"constraint": "false"}))
                continue
            style = ({"style": "dashed", "color": WS_COLOUR} if shortcut else
                     {"style": "bold", "color": GATE_COLOUR, "fontcolor": GATE_COLOUR} if gate else {})
            show = not compact or (ir.nodes[src].shape != entering(of_node[src]) and a not in labelled)
            if show:
                labelled.add(a)
            label = (" gate" if gate else "") + (f" {shape_text}" if show else "")
            g.edge(a, b, **({text_key: label} if label else {}), **style)
    for dot_id, node_id in outputs:
        style = {"style": "dashed", "color": AUX_COLOUR} if node_id in ir.training_only else {}
        label = {} if compact else {"label": " " + _fmt(ir.nodes[node_id].shape.dims)}
        g.edge(ids[of_node[node_id].key], dot_id, **label, **style)

    gates = any(not box.scopes and box.nodes[0].op == "_mul" for box in boxes)
    refs = any(ids[of_node[src].key] != ids[of_node[dst].key] for src, dst in ir.ref_edges)
    aux = any(o.training_only for o in ir.outputs)
    if any(n.role.is_shortcut for n in ir.nodes) or gates or refs or aux:
        sums = any(not box.scopes and _is_sum(box.nodes[0]) for box in boxes)
        rows = (LEGEND_WS if any(n.role.is_shortcut for n in ir.nodes) else "") + (LEGEND_ADD if sums else "") \
            + (LEGEND_GATE if gates else "") + (LEGEND_REF if refs else "") + (LEGEND_AUX if aux else "")
        g.node("legend", label=f'<<table border="0" cellborder="0" cellspacing="2" cellpadding="2">{rows}</table>>',
               shape="plaintext", fontsize="9")
        g.edge(out_id, "legend", style="invis")
    return g.source


def render(dot_source: str, fmt: str, timeout: float = DOT_TIMEOUT, dpi: int | None = None) -> bytes:
    """DOT → svg/png/pdf bytes through graphviz's `dot`, which may take at most `timeout` seconds;
    `dpi` sets a PNG's resolution (graphviz's default: 96)."""
    import subprocess

    try:
        done = subprocess.run(["dot", f"-T{fmt}", *([f"-Gdpi={dpi}"] if dpi else [])],
                              input=dot_source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise RenderError("rendering needs graphviz's `dot` program, which is not installed "
                          "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz); "
                          "-f dot writes the DOT text without it") from None
    except subprocess.TimeoutExpired:
        raise RenderError(f"graphviz's dot did not finish within {timeout:g} s; draw less with a smaller "
                          "--depth, or write the DOT text with -f dot") from None
    if done.returncode != 0:  # pragma: no cover - dot rejecting our own DOT is a bug
        raise RenderError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
