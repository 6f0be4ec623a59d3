"""The IR: typed tensor shapes and nodes (pydantic), a network's graph (networkx) and its
block scopes.  Built by archlang.compiler.elaborate; read by passes and backends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from archlang.errors import Span

if TYPE_CHECKING:
    import networkx as nx


class TensorType(BaseModel):
    """The shape of one sample: (C, H, W) or a feature vector (F,).  Batch is implicit."""

    model_config = ConfigDict(frozen=True)
    dims: tuple[int, ...]

    @property
    def is_vector(self) -> bool:
        return len(self.dims) == 1

    @property
    def c(self) -> int:
        return self.dims[0]

    @property
    def h(self) -> int:
        return self.dims[1]

    @property
    def w(self) -> int:
        return self.dims[2]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    def __str__(self) -> str:
        return "x".join(str(d) for d in self.dims)


def shape(*dims: int) -> TensorType:
    return TensorType(dims=tuple(dims))


class Node(BaseModel):
    """One operation in the graph.  `attrs` are fully resolved (no 'auto', no 'same')."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: int
    op: str
    attrs: dict[str, Any]
    inputs: list[int]
    in_shapes: list[TensorType]
    shape: TensorType
    span: Span
    scope: Any = None  # the Scope it belongs to
    role: str = "layer"  # layer | input | merge | ws | implicit
    name: str = ""  # leaf name inside its scope, given by the naming pass
    path: str = ""  # dotted path from the network root, e.g. layer2.0.conv1
    note: str | None = None


class Scope:
    """A named block: a label, a def call, a Ws projection or a branch of a concat.

    `items` keeps nodes and child scopes in creation order, which is also the order in which
    the PyTorch backend registers modules.
    """

    __slots__ = ("kind", "def_name", "label", "span", "parent", "items", "name", "path", "repeat")

    def __init__(self, kind: str, span: Span, parent: Scope | None = None,
                 def_name: str | None = None, label: str | None = None):
        self.kind = kind  # network | label | call | ws | branch
        self.def_name = def_name
        self.label = label
        self.span = span
        self.parent = parent
        self.items: list[Node | Scope] = []
        self.name = label or ""
        self.path = ""
        self.repeat: int | None = None

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

    def __repr__(self) -> str:
        return f"Scope({self.kind} {self.path or self.name!r}, {len(self.items)} items)"


class NetworkIR:
    """A compiled network: its graph of Nodes in creation (= topological) order, its scopes,
    and the argument values it was compiled with."""

    def __init__(self, name: str, arguments: dict[str, Any], span: Span, settings: dict[str, str]):
        self.name = name
        self.arguments = arguments
        self.span = span
        self.settings = settings  # file-level settings of the network's file
        self.nodes: list[Node] = []
        self._consumers: list[list[int]] = []
        self._graph: nx.DiGraph | None = None
        self.root = Scope("network", span, label=name)
        self.notes: list[str] = []
        self.output_id: int | None = None  # set when elaboration ends

    def add(self, node: Node) -> Node:
        assert node.id == len(self.nodes)
        self.nodes.append(node)
        self._consumers.append([])
        for src in node.inputs:
            self._consumers[src].append(node.id)
        self._graph = None
        return node

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
        return self.nodes[-1] if self.output_id is None else self.nodes[self.output_id]

    def consumers(self, node_id: int) -> list[Node]:
        return [self.nodes[d] for d in dict.fromkeys(self._consumers[node_id])]
