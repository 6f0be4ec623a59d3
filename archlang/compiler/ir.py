"""The IR: typed tensor shapes, immutable nodes, a network's graph (a node list in topological
order, with a networkx view on demand) and its tree of block scopes.

Built by archlang.compiler.elaborate, finished by the passes in archlang.compiler.passes, read
by the backends.  Nodes are frozen: a pass that changes some replaces them (`NetworkIR.replace`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from archlang.errors import ArchWarning, Span

if TYPE_CHECKING:
    import networkx as nx


class Layout(StrEnum):
    """What the dimensions of a tensor mean (batch is implicit)."""

    IMAGE = "CxHxW"
    VECTOR = "F"
    TOKENS = "SxD"  # a sequence of S tokens of D features (N x S x D in PyTorch)
    GRID = "HxWxC"  # an image with channels last (N x H x W x C: Swin's layout)
    # an image cut into a Gh x Gw grid of windows of S tokens of D features (N x Gh x Gw x S x D: MaxViT's)
    WINDOWS = "GhxGwxSxD"

    @property
    def noun(self) -> str:
        return {Layout.IMAGE: "an image", Layout.VECTOR: "a vector", Layout.TOKENS: "a token sequence",
                Layout.GRID: "a channels-last image", Layout.WINDOWS: "windows of tokens"}[self]

    @property
    def the(self) -> str:
        """How messages name a tensor of the layout: `the feature vector 10`."""
        return {Layout.VECTOR: "the feature vector", Layout.TOKENS: "the token sequence (SxD)",
                Layout.GRID: "the channels-last image (HxWxC)", Layout.IMAGE: "the image (CxHxW)",
                Layout.WINDOWS: "the windows (GhxGwxSxD)"}[self]

    @property
    def channel_axis(self) -> int:
        """The axis of the features/channels in one sample's dims (the batch not counted)."""
        return 0 if self in (Layout.IMAGE, Layout.VECTOR) else -1

    @property
    def spatial(self) -> bool:
        """Has a height and a width."""
        return self in (Layout.IMAGE, Layout.GRID)


_LAYOUT_OF_RANK = {3: Layout.IMAGE, 1: Layout.VECTOR, 2: Layout.TOKENS, 4: Layout.WINDOWS}


@dataclass(frozen=True, slots=True)
class TensorType:
    """The shape of one sample and its layout: (C, H, W) images, (F,) feature vectors, (S, D)
    token sequences, (H, W, C) channels-last images or (Gh, Gw, S, D) windows of tokens.  `c` is
    always the features/channels."""

    dims: tuple[int, ...]
    layout: Layout = None  # type: ignore[assignment]  # derived from the rank when not given

    def __post_init__(self) -> None:
        if self.layout is None:
            if len(self.dims) not in _LAYOUT_OF_RANK:
                raise ValueError(f"no layout has rank {len(self.dims)}: {self.dims}")
            object.__setattr__(self, "layout", _LAYOUT_OF_RANK[len(self.dims)])

    @property
    def is_vector(self) -> bool:
        return self.layout is Layout.VECTOR

    @property
    def c(self) -> int:
        return self.dims[self.layout.channel_axis]

    @property
    def h(self) -> int:
        return self.dims[0 if self.layout is Layout.GRID else 1]

    @property
    def w(self) -> int:
        return self.dims[1 if self.layout is Layout.GRID else 2]

    @property
    def s(self) -> int:
        """A token sequence's length (of each window, for windows)."""
        return self.dims[-2]

    @property
    def is_image(self) -> bool:
        return self.layout is Layout.IMAGE

    def with_c(self, c) -> TensorType:
        """The same shape with `c` channels/features."""
        dims = list(self.dims)
        dims[self.layout.channel_axis] = c
        return TensorType(tuple(dims), self.layout)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    def __str__(self) -> str:
        return "x".join(str(d) for d in self.dims)


def shape(*dims: int) -> TensorType:
    return TensorType(tuple(dims))


class Role(StrEnum):
    """Why a node is in the graph."""

    LAYER = "layer"  # written by the user
    INPUT = "input"  # the network input
    MERGE = "merge"  # the join of branches: a sum or a concat
    PROJECTION = "ws"  # part of an inserted Ws projection (He et al. option B/C)
    PAD = "pad"  # an inserted zero-pad shortcut (option A)
    IMPLICIT = "implicit"  # inserted by the compiler to make a layer fit (the flatten before a dense)

    @property
    def is_shortcut(self) -> bool:
        return self in (Role.PROJECTION, Role.PAD)


class ScopeKind(StrEnum):
    NETWORK = "network"
    LABEL = "label"  # `name = ...`
    CALL = "call"  # a def call (or sugar such as inception[...])
    SHORTCUT = "ws"  # an inserted Ws projection or zero-pad shortcut
    BRANCH = "branch"  # one branch of a concat, or of a sum of several main branches
    REPEAT = "repeat"  # a def call repeated a parameter's number of times (staged elaboration only)


class Container(StrEnum):
    """How a block holds its children in the generated module."""

    MODULE = "module"  # children are named attributes
    LIST = "list"  # children are numbered 0, 1, ... (a repeated stage, as torchvision's layer1[0])


@dataclass(frozen=True, slots=True)
class Node:
    """One operation in the graph.  `attrs` are fully resolved (no 'auto', no 'same') and are
    never changed once the node is built; `name` and `path` come from the naming pass."""

    id: int
    op: str
    attrs: dict[str, Any]
    inputs: tuple[int, ...]
    in_shapes: tuple[TensorType, ...]
    shape: TensorType
    span: Span
    role: Role = Role.LAYER
    note: str | None = None
    name: str = ""  # its attribute name inside its block
    path: str = ""  # its qualified name from the network root, e.g. layer2.0.conv1


@dataclass(frozen=True)
class CallInfo:
    """What a def call passed: every parameter's value (defaults filled in), which of them the
    call gave, the shape it took and the network settings in force."""

    args: dict[str, Any]
    given: frozenset[str]
    inp: TensorType
    settings: tuple[tuple[str, str], ...]
    definition: Any  # the ast.Def
    home: Any  # the Unit it lives in


class Scope:
    """A named block: a label, a def call, a shortcut or a branch.

    `items` keeps nodes and child scopes in creation order, which is also the order in which
    the PyTorch backend registers modules.  `name`, `path` and `container` come from the
    naming pass (archlang.compiler.passes.naming), the one place that names things."""

    __slots__ = ("kind", "def_name", "label", "span", "parent", "items", "name", "path", "repeat", "container",
                 "call", "condition", "from_repeat", "skips", "ordinal", "entry")

    def __init__(self, kind: ScopeKind, span: Span, parent: Scope | None = None,
                 def_name: str | None = None, label: str | None = None):
        self.kind = kind
        self.def_name = def_name
        self.label = label
        self.span = span
        self.parent = parent
        self.items: list[Node | Scope] = []
        self.name = label or ""
        self.path = ""
        self.repeat: int | None = None
        self.container = Container.MODULE
        self.call: CallInfo | None = None  # a def call's arguments
        self.condition: Any = None  # a staged shortcut's condition (archlang.compiler.symbolic)
        self.from_repeat = False  # a def call made by a repeat: a list item even when alone
        # skips lowered in this block, and which of them a shortcut block is (1, 2, ...):
        # shortcuts are named by it, so that a name does not depend on which skips needed one
        self.skips = 0
        self.ordinal = 0
        # the id of the value the block was given (the line's or call's input): of the values it
        # reads from outside, this one comes first in its forward (`forward(self, x, enc4)`)
        self.entry: int | None = None

    def walk_nodes(self):
        for item in self.items:
            if isinstance(item, Scope):
                yield from item.walk_nodes()
            else:
                yield item

    def walk_scopes(self):
        yield self
        for item in self.items:
            if isinstance(item, Scope):
                yield from item.walk_scopes()

    @property
    def is_shortcut(self) -> bool:
        return self.kind is ScopeKind.SHORTCUT

    def boundary(self) -> tuple[set[int], int | None]:
        """The ids of the values its nodes read from outside it, and the id of its last node
        (None for a block without nodes).  Lint checks that a block reads one value and that
        only its last node is read from outside; the PyTorch backend's forwards rely on it."""
        ids = {n.id for n in self.walk_nodes()}
        outside = {i for n in self.walk_nodes() for i in n.inputs if i not in ids}
        return outside, max(ids, default=None)

    def inputs(self) -> list[int]:
        """The values the block reads from outside, in the order its forward takes them: the
        value it was given first, then those it reads by reference (`@enc4`), oldest first."""
        outside, _ = self.boundary()
        first = [self.entry] if self.entry in outside else []
        return first + sorted(outside - set(first))

    def __repr__(self) -> str:
        return f"Scope({self.kind} {self.path or self.name!r}, {len(self.items)} items)"


@dataclass(frozen=True)
class Output:
    """One value a network returns: its label, the node that gives it, and whether it is an
    auxiliary head's (computed and returned in training mode only)."""

    name: str
    node: int
    training_only: bool = False


@dataclass
class NetworkIR:
    """A compiled network: its Nodes in creation (= topological) order, its scopes, and the
    argument values it was compiled with."""

    name: str
    arguments: dict[str, Any]
    span: Span
    settings: dict[str, str]  # file-level settings of the network's file
    nodes: list[Node] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[ArchWarning] = field(default_factory=list)  # likely slips that still compile
    output_id: int | None = None  # set when elaboration ends
    class_name: str = ""  # the generated module's class, from the naming pass
    parameter_names: dict[str, str] = field(default_factory=dict)  # argument → its Python name, likewise
    origin: Any = None  # what it was compiled from (archlang.compiler.staging.Origin), for staged emission
    # what the network returns when it returns more than its last line (an `output` line, `aux`
    # heads), in order; empty: the output alone
    outputs: list[Output] = field(default_factory=list)
    training_only: set[int] = field(default_factory=set)  # ids of the nodes of auxiliary heads
    ref_names: dict[int, str] = field(default_factory=dict)  # id of a value read by `@label` → the label
    ref_edges: dict[tuple[int, int], str] = field(default_factory=dict)  # (source, reader) of a reference → label
    root: Scope = field(init=False)
    _consumers: list[list[int]] = field(default_factory=list, repr=False)
    _graph: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Scope(ScopeKind.NETWORK, self.span, label=self.name)

    def add(self, node: Node) -> Node:
        assert node.id == len(self.nodes)
        self.nodes.append(node)
        self._consumers.append([])
        for src in node.inputs:
            self._consumers[src].append(node.id)
        self._graph = None
        return node

    def truncate(self, n: int) -> None:
        """Forgets the nodes from id `n` on (a staged trial elaboration; scopes are the caller's)."""
        for node in self.nodes[n:]:
            for src in node.inputs:
                if src < n:
                    self._consumers[src].remove(node.id)
        del self.nodes[n:]
        del self._consumers[n:]
        self._graph = None

    def replace(self, changed: list[Node]) -> None:
        """Puts changed copies of nodes (same ids, same inputs) in place of the old ones, in the
        node list and in their scopes' items, in one walk over the scopes."""
        if not changed:
            return
        new = {}
        for node in changed:
            assert self.nodes[node.id].inputs == node.inputs, "a pass may not rewire the graph by replacing a node"
            self.nodes[node.id] = new[node.id] = node
        for scope in self.root.walk_scopes():
            scope.items = [new.get(i.id, i) if isinstance(i, Node) else i for i in scope.items]
        self._graph = None

    def scopes_of_nodes(self) -> dict[int, Scope]:
        """node id → the scope holding it (the input belongs to the root)."""
        found = {self.input.id: self.root}
        for scope in self.root.walk_scopes():
            for item in scope.items:
                if isinstance(item, Node):
                    found[item.id] = scope
        return found

    @property
    def graph(self) -> nx.DiGraph:
        """The networkx view: node ids carrying `node=Node`, edges carrying the input `index`.
        Built on first use (networkx costs ~10 µs an edge; elaboration does not need it)."""
        if self._graph is None:
            import networkx as nx  # ~0.2 s to import: only when someone asks for the graph

            g = nx.DiGraph()
            g.add_nodes_from((n.id, {"node": n}) for n in self.nodes)
            g.add_edges_from((src, n.id, {"index": i}) for n in self.nodes for i, src in enumerate(n.inputs))
            self._graph = g
        return self._graph

    @property
    def input(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> Node:
        """The main output: the last line's, or the first that an `output` line names for eval mode."""
        return self.nodes[-1] if self.output_id is None else self.nodes[self.output_id]

    @property
    def heads(self) -> list[Output]:
        """Every output in the order the network returns them in training mode."""
        return self.outputs or [Output(self.name, self.output.id)]

    def consumers(self, node_id: int) -> list[Node]:
        return [self.nodes[d] for d in dict.fromkeys(self._consumers[node_id])]

    def fingerprint(self) -> str:
        """A digest of everything the backends read: the arguments, and every node's op,
        attributes, shapes, role, qualified name and inputs, and every block's name and
        container.  Two compilations with equal fingerprints give the same module, report
        and diagram; `archc fmt` compares them to prove a reformatting changed nothing."""
        h = hashlib.sha256()
        h.update(repr((self.name, sorted(self.arguments.items()), self.output_id, self.outputs,
                       sorted(self.training_only))).encode())
        for n in self.nodes:
            h.update(repr((n.id, n.op, sorted(n.attrs.items(), key=repr), n.inputs, n.shape.dims,
                           n.shape.layout, n.role, n.path)).encode())
        for s in self.root.walk_scopes():
            h.update(repr((s.path, s.kind, s.container, s.def_name, len(s.items))).encode())
        return h.hexdigest()
