"""The Python API: compile text or files into a Program of Networks.

This is the layer above the compiler and the backends: a Network wraps the compiled IR and
reaches the backends (PyTorch source, report, diagram) lazily, so `check` never imports torch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from archlang.compiler import compile_units, load_file, load_source
from archlang.compiler.ir import NetworkIR, Node
from archlang.compiler.ops import node_cost


class Network:
    """One compiled network: shapes, counts, and the IR graph."""

    def __init__(self, ir: NetworkIR, plain: bool = False, filename: str = "<string>",
                 rebuild: Callable[[dict[str, Any]], Network] | None = None):
        self.ir = ir
        self.plain = plain
        self.filename = filename
        self._rebuild = rebuild
        self._totals: dict[str, int] | None = None

    def with_arguments(self, /, **arguments) -> Network:
        """This network compiled again with other parameter values (`--set` in the CLI)."""
        unknown = sorted(set(arguments) - set(self.ir.arguments))
        if unknown:
            raise TypeError(f"network {self.name} has no parameter {unknown[0]!r} "
                            f"(parameters: {', '.join(self.ir.arguments) or 'none'})")
        if all(self.ir.arguments[k] == v for k, v in arguments.items()):
            return self
        if self._rebuild is None:
            raise ValueError(f"network {self.name} cannot be recompiled: it was built without its source")
        return self._rebuild({**self.ir.arguments, **arguments})

    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.ir.arguments)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.ir.input.shape.dims

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.ir.output.shape.dims

    @property
    def outputs(self) -> list[tuple[str, tuple[int, ...], bool]]:
        """(name, shape, training only) of every output, in the order the module returns them in
        training mode; in eval mode it returns those that are not training only (one: a tensor)."""
        return [(o.name, self.ir.nodes[o.node].shape.dims, o.training_only) for o in self.ir.heads]

    @property
    def graph(self):
        return self.ir.graph

    @property
    def nodes(self) -> list[Node]:
        return self.ir.nodes

    def _total(self, rule: str) -> int:
        if self._totals is None:  # one pass over the nodes serves every count
            sums = dict.fromkeys(("params", "buffers", "macs", "other_ops"), 0)
            training = self.ir.training_only
            for n in self.ir.nodes:
                c = node_cost(n)
                sums["params"] += c.params
                sums["buffers"] += c.buffers
                if n.id not in training:  # the work of auxiliary heads is done in training only
                    sums["macs"] += c.macs
                    sums["other_ops"] += c.other_ops
            self._totals = sums
        return self._totals[rule]

    @property
    def params(self) -> int:
        """Trainable parameters, as sum(p.numel() for p in module.parameters())."""
        return self._total("params")

    @property
    def buffers(self) -> int:
        return self._total("buffers")

    @property
    def macs(self) -> int:
        """Multiply-accumulates of conv and dense at batch 1, bias excluded (torchvision's convention),
        of the eval path: auxiliary heads are left out (the report gives theirs)."""
        return self._total("macs")

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def other_ops(self) -> int:
        """Elementwise work outside the MACs (bias adds, BN, activations, pools, residual adds)."""
        return self._total("other_ops")

    @property
    def activation_bytes(self) -> int:
        """float32 outputs of every layer at batch 1 (see the report's convention)."""
        return self.report().total.activation_bytes

    @property
    def projections(self) -> list[Node]:
        """The inserted shortcuts, one node each: the conv or linear of a Ws projection, or
        the zero-pad shortcut."""
        return [s.items[0] for s in self.ir.root.walk_scopes() if s.is_shortcut]

    def shortcut_summary(self) -> list[str]:
        """`Ws projection at layer2.0.ws (64x56x56 → 128x28x28)`, one line per inserted shortcut."""
        from archlang.backends.describe import shortcut_kind

        lines = []
        for scope in self.ir.root.walk_scopes():
            if scope.is_shortcut:
                nodes = list(scope.walk_nodes())
                lines.append(f"{shortcut_kind(nodes)} at {scope.path} ({nodes[0].in_shapes[0]} → {nodes[-1].shape})")
        return lines

    @property
    def notes(self) -> list[str]:
        return list(self.ir.notes)

    @property
    def warnings(self) -> list[str]:
        """Likely slips that still compile (an input written HxWxC), each rendered as
        `FILE:LINE:COL: warning: message`, the line, a caret and a hint."""
        return [str(w) for w in self.ir.warnings]

    def report(self, depth: int | None = None, *, batch: int | None = None, dtype: str | None = None,
               optimizer: str | None = None):
        """The static cost report (per layer, or rolled up by block at `depth`): print it, or call
        .to_json(), .to_markdown(), .to_csv(), .to_dict().  Given any of `batch`, `dtype` (fp32,
        bf16, fp16) and `optimizer` (sgd, momentum, adam, adamw), it adds the memory of a training
        step (defaults: batch 1, fp32, sgd): `.training`, and each row's bytes saved for backward."""
        from archlang.backends.memory import TrainingSetup
        from archlang.backends.report import build_report

        training = None
        if (batch, dtype, optimizer) != (None, None, None):
            training = TrainingSetup(batch or 1, dtype or "fp32", optimizer or "sgd")
        return build_report(self.ir, depth, training)

    def dot(self, depth: int | None = 2, direction: str = "TB", style: str = "full") -> str:
        """The diagram as DOT text: blocks deeper than `depth` collapsed (None: every layer);
        `direction` TB (top to bottom) or LR; `style` full or compact (a shape on an edge only
        where it changes, tighter spacing)."""
        from archlang.backends.diagram import build_dot

        return build_dot(self.ir, depth, direction, style)

    def render(self, fmt: str = "svg", depth: int | None = 2, direction: str = "TB", style: str = "full",
               dpi: int | None = None) -> bytes:
        """The diagram rendered by graphviz's `dot` (svg, png or pdf); `dpi` sets a PNG's resolution."""
        from archlang.backends.diagram import render

        return render(self.dot(depth, direction, style), fmt, dpi=dpi)

    def _repr_svg_(self) -> str | None:
        """Notebooks show a compiled network as its diagram (nothing when `dot` is missing)."""
        from archlang.backends.diagram import RenderError

        try:
            return self.render("svg").decode("utf-8")
        except RenderError:
            return None

    def source(self) -> str:
        """The standalone PyTorch file for this network (what `archc build` writes)."""
        from archlang import __version__
        from archlang.backends.pytorch import emit_module

        return emit_module(self.ir, Path(self.filename).name, __version__)

    def build_files(self, out_dir: str | Path,
                    warn: Callable[[str], None] | None = None) -> list[tuple[Path, str | bytes]]:
        """Every file `archc build` writes for this network, rendered in memory: the module,
        the report as Markdown and JSON, and the diagram.  Without graphviz's `dot` the diagram
        is left out (and `warn` told why): the module and report do not need it."""
        from archlang.backends.diagram import RenderError

        out_dir = Path(out_dir)
        report = self.report()
        files: list[tuple[Path, str | bytes]] = [
            (out_dir / f"{self.name}.py", self.source()),
            (out_dir / f"{self.name}.report.md", report.to_markdown()),
            (out_dir / f"{self.name}.json", report.to_json())]
        try:
            files.append((out_dir / f"{self.name}.svg", self.render("svg")))
        except RenderError as err:
            if warn is not None:
                warn(f"{out_dir / self.name}.svg not written: {err}")
        return files

    def to_torch(self, /, **arguments):
        """An instance of the generated nn.Module, executed from exactly `source()`.

        Other parameter values (`to_torch(classes=10)`) compile the network again with them,
        so every shape is checked for those values too."""
        from archlang.backends.loading import load_module

        net = self.with_arguments(**arguments)
        module = load_module(net.source(), f"<archlang {net.name}>", net.name)
        return getattr(module, net.ir.class_name)()

    def __repr__(self) -> str:
        shape_in = "x".join(map(str, self.input_shape))
        shape_out = "x".join(map(str, self.output_shape))
        return f"<Network {self.name} {shape_in} -> {shape_out}, {self.params:,} params>"


class Program:
    """Every network of a compiled file, by name (in file order)."""

    def __init__(self, networks: dict[str, Network], filename: str):
        self.networks = networks
        self.filename = filename

    def __getitem__(self, name: str) -> Network:
        return self.networks[name]

    def __iter__(self):
        return iter(self.networks.values())

    def __len__(self) -> int:
        return len(self.networks)


def compile(source: str, filename: str = "<string>", overrides: dict[str, Any] | None = None,  # noqa: A001
            plain: bool = False, network: str | None = None, base: str | Path | None = None) -> Program:
    """Compile .arch source text.  `use` paths resolve against `base` (default: the cwd)."""
    unit = load_source(source, filename, Path(base) if base else None)
    return program_of(unit, filename, overrides, plain, network)


def compile_file(path: str | Path, overrides: dict[str, Any] | None = None, plain: bool = False,
                 network: str | None = None) -> Program:
    return program_of(load_file(path), str(path), overrides, plain, network)


def program_of(unit, filename: str, overrides=None, plain: bool = False, network: str | None = None) -> Program:
    """Compile an already loaded file (`archlang.compiler.load_file`) into its Program."""
    def rebuild_one(name: str):
        return lambda arguments: program_of(unit, filename, arguments, plain, name)[name]

    irs = compile_units(unit, filename, overrides, plain=plain, only=network)
    return Program({name: Network(ir, plain, filename, rebuild_one(name)) for name, ir in irs.items()}, filename)


def list_file(path: str | Path, overrides: dict[str, Any] | None = None, plain: bool = False,
              network: str | None = None,
              warn: Callable[[str], None] | None = None) -> dict[str, list[dict[str, Any]]]:
    """What `archc list` shows: the file's networks (signature with defaults, arguments, shapes,
    params, MACs, where defined) and the defs visible in it (`used`: brought in by `use`).
    `warn` is told each network's warnings."""
    from archlang.frontend.ast import value_text

    def signature(name: str, params) -> str:
        parts = [p.name + (f"={value_text(p.default)}" if p.default is not None else "") for p in params]
        return f"{name}({', '.join(parts)})" if parts else name

    def origin(node) -> str:
        return f"{node.span.filename}:{node.span.line}"

    unit = load_file(path)
    networks = []
    if unit.file.networks:  # a file of defs alone (for `use`) is listed too
        asts = {a.name: a for a in unit.file.networks}
        for net in program_of(unit, str(path), overrides, plain, network):
            for warning in net.warnings if warn is not None else ():
                warn(warning)
            a = asts[net.name]
            networks.append({"name": net.name, "signature": signature(a.name, a.params), "arguments": net.arguments,
                             "input_shape": list(net.input_shape), "output_shape": list(net.output_shape),
                             "params": net.params, "macs": net.macs, "at": origin(a)})
    here = Path(path).resolve()
    defs = [{"name": name, "signature": signature(name, d.params), "at": origin(d),
             "used": Path(d.span.filename).resolve() != here} for name, (d, _home) in unit.defs.items()]
    return {"networks": networks, "defs": defs}
