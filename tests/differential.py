"""The differential check of one program (tests/test_differential.py, tests/fuzz.py --differential):
the IR's figures against the generated PyTorch module, through the public API only.

`check(text)` returns the list of findings for a program that compiles (empty: all agree):
    - `net.source()` builds the module (`net.to_torch()`), and two compilations give byte-identical source;
    - a forward pass on a random batch of 2 gives the IR's output shape (and in training mode, for a
      network with auxiliary heads, every output's);
    - `sum(p.numel())` of the module = `net.params`;
    - `FlopCounterMode`'s total / 2 at batch 1 = `net.macs`;
    - the `archc fmt` layout of the program compiles to the same networks (same report dicts), and
      formatting it again changes nothing;
    - the same with `plain=True` for programs with a skip.
Each finding has a `kind` (the failure class: `build`, `forward`, `params`, `macs`, `shape`, ...), a
one-line `where` (the exception and the line it was raised from) and a `detail`.
`minimise(text, kind)` shrinks a failing program to a smaller one with a finding of the same kind."""

from __future__ import annotations

import re
import traceback
import zlib
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import archlang
from archlang.frontend.format import format_source

NUMBERS = ("params", "macs", "shape")  # wrong numbers: the most serious class


@dataclass(frozen=True)
class Finding:
    kind: str
    network: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.network}: {self.where}" + (f"\n    {self.detail}" if self.detail else "")


def _where(err: BaseException) -> str:
    """The exception and the innermost frame that raised it ('TypeError ... at <archlang n>:12: self[0].conv = ...')."""
    frames = traceback.extract_tb(err.__traceback__)
    frame = frames[-1] if frames else None
    text = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160]
    if frame is not None:
        text += f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        if frame.line:
            text += f": {frame.line.strip()[:100]}"
    return text


def check_network(net, text: str, *, batch: int = 2) -> list[Finding]:
    found: list[Finding] = []
    name = net.name

    def add(kind, where, detail=""):
        found.append(Finding(kind, name, where, detail))

    try:
        source = net.source()
    except Exception as err:  # noqa: BLE001
        add("source", _where(err))
        return found
    try:
        model = net.to_torch()
    except RecursionError as err:
        add("build", f"RecursionError at {_where(err).rsplit(' at ', 1)[-1]}")
        return found
    except Exception as err:  # noqa: BLE001
        add("build", _where(err))
        return found
    try:
        model.eval()
        params = sum(p.numel() for p in model.parameters())
    except Exception as err:  # noqa: BLE001 - a module whose own machinery is broken
        add("module", _where(err))
        return found
    if params != net.params:
        add("params", f"module has {params:,} parameters, the IR {net.params:,}")
    try:
        with torch.no_grad():
            y = model(torch.randn(batch, *net.input_shape))
        counter = FlopCounterMode(display=False)
        # attention on its plain path: the fused ones hide their matmuls from the counter
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.no_grad(), counter, sdpa_kernel(SDPBackend.MATH):
                model(torch.randn(1, *net.input_shape))
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
    except Exception as err:  # noqa: BLE001
        add("forward", _where(err))
        return found
    # in eval mode the outputs that are not heads: one is a tensor, several (an `output` line) a tuple
    main = [(batch, *dims) for _, dims, aux in net.outputs if not aux] if net.ir.outputs else []
    if len(main) > 1:
        got = [tuple(t.shape) for t in y] if isinstance(y, tuple) else [tuple(getattr(y, "shape", ()))]
        if got != main:
            add("shape", f"eval-mode outputs {got}, the IR {main}")
    elif not isinstance(y, torch.Tensor) or tuple(y.shape) != (batch, *net.output_shape):
        add("shape", f"output {tuple(getattr(y, 'shape', ()))}, the IR {(batch, *net.output_shape)}")
    if net.ir.outputs:  # auxiliary heads: in training mode every output, in the order the IR lists them
        try:
            with torch.no_grad():
                ys = model.train()(torch.randn(batch, *net.input_shape))
            model.eval()
        except Exception as err:  # noqa: BLE001
            add("forward", f"in training mode: {_where(err)}")
            return found
        want = [(batch, *dims) for _, dims, _ in net.outputs]
        got = [tuple(t.shape) for t in ys] if isinstance(ys, tuple) else [tuple(getattr(ys, "shape", ()))]
        if got != want:
            add("shape", f"training-mode outputs {got}, the IR {want}")
    macs = counter.get_total_flops() // 2
    if macs != net.macs:
        add("macs", f"FlopCounterMode/2 = {macs:,}, the IR {net.macs:,}")
    missing = _unnamed_layers(net, model)
    if missing:
        add("names", "report layers with parameters that are no module of that name",
            f"{len(missing)} layers, e.g. {', '.join(missing[:3])}; the module has "
            f"{', '.join(n for n, _ in model.named_modules() if n)[:300]}")
    again = archlang.compile(text, "gen.arch", overrides=net.arguments, network=name)[name].source()
    if again != source:
        add("determinism", "two compilations give different source")
    if net.arguments and "rebuild it with archc build --set" not in source:
        detail = check_constructor(net, type(model), zlib.crc32(text.encode()) & 0xFFFF)
        if detail:
            add("constructor", "the constructor with other values differs from recompiling", detail)
    return found


def check_constructor(net, generated, seed: int, tries: int = 8) -> str | None:
    """The generated class called with random other values (valid ones: recompiling accepts
    them) builds what recompiling builds: state_dict keys and shapes, and outputs with the same
    weights.  Returns what differs, or None."""
    from tests.programs import random_overrides

    for k in range(tries):
        overrides = random_overrides(net, seed * 10 + k)
        try:
            other = net.with_arguments(**overrides)
        except archlang.ArchError:
            continue
        try:
            expected = other.to_torch().eval()
            got = generated(**{net.ir.parameter_names[p]: v for p, v in overrides.items()}).eval()
            shapes = [(n, tuple(t.shape)) for n, t in expected.state_dict().items()]
            if [(n, tuple(t.shape)) for n, t in got.state_dict().items()] != shapes:
                return f"{overrides}: state_dict keys or shapes differ"
            got.load_state_dict(expected.state_dict())
            x = torch.randn(2, *other.input_shape)
            with torch.no_grad():
                torch.testing.assert_close(got(x), expected(x))
        except Exception as err:  # noqa: BLE001
            return f"{overrides}: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
        return None
    return None


def _unnamed_layers(net, model) -> list[str]:
    """The report's layers with parameters that are not a module (or, for a layer scale, an
    nn.Parameter) of the same dotted name holding as many parameters (a segment may take trailing
    underscores: `class` → `class_`)."""
    modules = {}
    for name, m in model.named_modules():
        modules[name] = sum(p.numel() for p in m.parameters())  # a layer may hold children (attention)
    for name, p in model.named_parameters():
        modules.setdefault(name, p.numel())
    missing = []
    for layer in net.report().to_dict()["layers"]:
        if layer["kind"] != "layer" or not layer["params"]:
            continue
        parts = layer["name"].split(".")
        ok = any(_same_path(parts, name.split(".")) and count == layer["params"] for name, count in modules.items())
        if not ok:
            missing.append(layer["name"])
    return missing


def _same_path(report: list[str], module: list[str]) -> bool:
    return len(report) == len(module) and all(m == r or (m.startswith(r) and set(m[len(r):]) == {"_"})
                                              for r, m in zip(report, module, strict=True))


def check(text: str, *, plain: bool = True) -> list[Finding]:
    program = archlang.compile(text, "gen.arch")
    found: list[Finding] = []
    for net in program:
        found += check_network(net, text)
    if plain and "skip" in text:
        for net in archlang.compile(text, "gen.arch", plain=True):
            found += [Finding(f.kind, f"{f.network} (plain)", f.where, f.detail) for f in check_network(net, text)
                      if f.kind != "determinism"]
    found += check_fmt(text, program)
    return found


def check_fmt(text: str, program) -> list[Finding]:
    try:
        formatted = format_source(text)
    except Exception as err:  # noqa: BLE001
        return [Finding("fmt", "-", _where(err), "")]
    try:
        again = archlang.compile(formatted, "gen.arch")
    except archlang.ArchError as err:
        return [Finding("fmt", "-", "the formatted program does not compile", str(err).splitlines()[0])]
    before = [(n.name, n.report().to_dict()) for n in program]
    after = [(n.name, n.report().to_dict()) for n in again]
    if before != after:
        return [Finding("fmt", "-", "the formatted program compiles to other networks", "")]
    if format_source(formatted) != formatted:
        return [Finding("fmt", "-", "formatting is not idempotent", "")]
    return []


# ---- shrinking ----


def _still(text: str, kind: str) -> bool:
    try:
        return any(f.kind == kind for f in check(text, plain="plain" in kind))
    except archlang.ArchError:
        return False
    except Exception:  # noqa: BLE001 - a checker crash is not the same finding
        return False


def minimise(text: str, kind: str, *, budget: int = 200) -> str:
    """Delete lines (network lines, def lines, whole defs and networks, settings), then simplify
    expressions and names, while the program still compiles and still has a finding of `kind`."""
    lines = text.splitlines()
    tries = 0
    changed = True
    while changed and tries < budget:
        changed = False
        i = len(lines) - 1
        while i >= 0 and tries < budget:
            line = lines[i]
            if not line.strip() or line.lstrip().startswith(("input ", "network ")):
                i -= 1
                continue
            # a whole block (def or network) when i is its header, else the line
            end = i + 1
            if not line.startswith(" "):
                while end < len(lines) and lines[end].startswith(" "):
                    end += 1
            candidate = lines[:i] + lines[end:]
            tries += 1
            if _still("\n".join(candidate) + "\n", kind):
                lines, changed = candidate, True
            i -= 1
        # simplify: drop `> term` pieces of a line
        for i, line in enumerate(lines):
            parts = line.split(" > ")
            j = len(parts) - 1
            while j >= 1 and tries < budget:
                candidate_line = " > ".join(parts[:j] + parts[j + 1:])
                tries += 1
                if "(" not in parts[j] and ")" not in parts[j] and "[" not in parts[j] and "]" not in parts[j] \
                        and _still("\n".join(lines[:i] + [candidate_line] + lines[i + 1:]) + "\n", kind):
                    parts = parts[:j] + parts[j + 1:]
                    lines[i] = " > ".join(parts)
                    changed = True
                j -= 1
    text = "\n".join(line for line in lines) + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)
