"""The `archc` command line: argument parsing, dispatch to the API, and exit codes.

Exit codes: 0 ok, 1 compile error (a diagnostic on stderr), 2 usage error.
Neither `check` nor `build` imports torch: code generation works from the IR alone.  Each command
imports what it needs inside its handler, so `--version` and `--help` load no compiler."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import textwrap

from archlang.errors import ArchError

EPILOG = """examples:
  archc check specs/resnet34.arch
  archc check specs/resnet34.arch --set classes=10 --json
  archc check specs/resnet34.arch --plain          # He et al.'s plain baseline: every skip removed
  archc build specs/resnet34.arch -o build/        # build/resnet34.py, its report and diagram
  archc report specs/resnet34.arch --depth 1       # params, MACs, memory per block, no torch needed
  archc diff specs/resnet34.arch specs/resnet34_options.arch:resnet34_a
  archc render specs/resnet34.arch -f png -o resnet34.png
  archc list specs/resnets.arch                    # networks and defs with their parameters
  archc fmt specs/ --check                         # exit 1 if a file is not in the canonical layout
  archc train specs/lenet5.arch                    # train on handwritten digits: runs/lenet5/

exit codes: 0 ok, 1 compile error (FILE:LINE:COL, the line and a caret on stderr), 2 usage error.
`archc COMMAND --help` describes each command.
"""


def _colour(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _red(text: str) -> str:
    """A diagnostic with `error:` in red on a colour terminal (never with NO_COLOR or when piped)."""
    if not _colour(sys.stderr):
        return text
    return text.replace("error:", "\033[31merror:\033[0m", 1)


def _warn(message: str) -> None:
    print(f"archc: warning: {message}", file=sys.stderr)


def _overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _Usage(f"--set takes KEY=VALUE, not '{pair}'")
        out[key.strip()] = value.strip()
    return out


class _Usage(Exception):
    pass


# the commands that also read a PyTorch model (MODULE:CALLABLE) through `archc import`
READS_MODELS = ("check", "report", "render")


def _add_common(p: argparse.ArgumentParser) -> None:
    if p.prog.rsplit(" ", 1)[-1] in READS_MODELS:
        p.add_argument("file", help="the .arch file, or MODULE:CALLABLE: a PyTorch model read as `archc import` "
                                    "reads it (this imports the Python module and runs its code)")
    else:
        p.add_argument("file", help="the .arch file")
    p.add_argument("--network", "-n", metavar="N", help="only this network (default: all in the file)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a network parameter, e.g. --set classes=10 (repeatable)")
    p.add_argument("--plain", action="store_true", help="remove every `skip` branch (plain baseline)")
    if p.prog.rsplit(" ", 1)[-1] in READS_MODELS:
        _add_model_options(p)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="CxHxW", help="a MODULE:CALLABLE's input shape (default: 3x224x224)")
    p.add_argument("--arg", dest="args", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument of a MODULE:CALLABLE, e.g. --arg num_classes=10 (repeatable)")


def _model_options(args, targets: list[str]) -> tuple[tuple[int, ...], dict]:
    """--input and --arg, which only a MODULE:CALLABLE target takes."""
    given = args.input is not None or args.args
    if given and not any(python_target(t) for t in targets):
        raise _Usage("--input and --arg are for a MODULE:CALLABLE target (a PyTorch model); an .arch file "
                     "gives its own input and parameters (--set KEY=VALUE sets these)")
    return _import_dims(args.input or "3x224x224"), _import_kwargs(args.args)


def _import_dims(text: str) -> tuple[int, ...]:
    dims = text.split("x")
    if not all(d.isdigit() and int(d) > 0 for d in dims) or len(dims) not in (1, 2, 3):
        raise _Usage(f"--input takes CxHxW (or F), not '{text}'")
    return tuple(int(d) for d in dims)


def _import_kwargs(pairs: list[str]) -> dict:
    kwargs = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().isidentifier():
            raise _Usage(f"--arg takes KEY=VALUE, not '{pair}'")
        kwargs[key.strip()] = _import_value(value.strip())
    return kwargs


def _compile(args):
    from archlang.api import compile_file

    if args.command in READS_MODELS:
        dims, kwargs = _model_options(args, [args.file])
        if python_target(args.file):
            return _warned(_imported(args.file, _overrides(args.overrides), args.plain, args.network, dims, kwargs))
    return _warned(compile_file(args.file, _overrides(args.overrides), plain=args.plain, network=args.network))


def _print_warning(text: str) -> None:
    print(text, file=sys.stderr)


def _warned(program):
    """The program, once its networks' warnings (`FILE:LINE:COL: warning: ...`) are on stderr."""
    for net in program:
        for warning in net.warnings:
            _print_warning(warning)
    return program


_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def python_target(spec: str) -> bool:
    """`torchvision.models:resnet50`: a Python module and callable, not an .arch file (which never
    runs code): a dotted module name, then a callable's name, and no such file exists."""
    from pathlib import Path

    module, sep, attr = spec.partition(":")
    return bool(sep and _MODULE_PATH.fullmatch(module) and _MODULE_PATH.fullmatch(attr)
                and not module.endswith(".arch") and not Path(spec).exists() and not Path(module).exists())


class _ImportedFailure(Exception):
    """archc report/render/diff of a MODULE:CALLABLE target that could not be imported."""


def _imported(target: str, overrides, plain: bool, network: str | None, dims=(3, 224, 224), kwargs=None):
    """The program of `archc import TARGET`'s text (`dims`: the input; `kwargs`: the callable's
    arguments), for check, report, render and diff."""
    try:
        from archlang.importer import from_torch, load_target
        from archlang.importer.trace import ImportFailure
    except ImportError as err:  # torch itself is missing
        raise _ImportedFailure(f"reading {target} needs PyTorch ({err}): pip install torch") from None
    from archlang.api import compile as compile_source

    name = target.rsplit(":", 1)[1].rsplit(".", 1)[-1]
    try:
        text = from_torch(load_target(target, kwargs or {}), dims, name=name, source=target)
    except ImportFailure as err:
        raise _ImportedFailure(str(err)) from None
    return compile_source(text, f"{name}.arch", overrides, plain=plain, network=network)


def _shape(dims) -> str:
    return "x".join(str(d) for d in dims)


def cmd_check(args) -> int:
    program = _compile(args)
    if args.json:
        rows = [{"name": n.name, "input_shape": list(n.input_shape), "output_shape": list(n.output_shape),
                 "params": n.params, "projections": [p.path for p in n.projections],
                 **({"outputs": [{"name": name, "shape": list(dims), "training_only": train}
                                 for name, dims, train in n.outputs]} if n.ir.outputs else {})} for n in program]
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(n.name) for n in program), default=0)
    for net in program:
        print(f"{net.name:<{width}}  {_shape(net.input_shape)} → {_shape(net.output_shape)}  "
              f"{net.params:,} params")
        if net.ir.outputs:
            shown = ", ".join(f"{name} {_shape(dims)}" + (" (training only)" if train else "")
                              for name, dims, train in net.outputs)
            print(f"{'':<{width}}  outputs: {shown}")
        for line in net.shortcut_summary():
            print(f"{'':<{width}}  {line}")
        for note in net.notes:
            print(f"{'':<{width}}  note: {note}")
    return 0


def cmd_build(args) -> int:
    from pathlib import Path

    from archlang.backends.files import check_module_names, write_set
    from archlang.errors import OutputError

    program = _compile(args)
    check_module_names(program)
    out_dir = Path(args.output)
    # render everything, then write the whole set at once: a failure leaves the previous outputs as they were
    outputs = [(net, net.build_files(out_dir, warn=_warn)) for net in program]
    try:
        write_set((path, data, net.name) for net, files in outputs for path, data in files)
    except OutputError as err:
        print(_red(f"archc: error: {err}"), file=sys.stderr)
        return 1
    for net, files in outputs:
        print(f"{net.name}: {_shape(net.input_shape)} → {_shape(net.output_shape)}, {net.params:,} params, "
              f"{net.macs:,} MACs")
        for path, _ in files:
            print(f"  wrote {path}")
    return 0


def _depth_or_all(text: str) -> int | None:
    return None if text == "all" else _depth(text)


RENDER_FORMATS = ("svg", "png", "pdf", "dot")


def cmd_render(args) -> int:
    from pathlib import Path

    from archlang.backends.diagram import RenderError
    from archlang.backends.files import write_output
    from archlang.errors import OutputError

    if args.output == "":
        raise _Usage("-o needs a file or folder (or - for stdout)")
    program = _compile(args)
    nets = list(program)
    target = Path(args.output) if args.output and args.output != "-" else None
    into_dir = target is not None and (target.is_dir() or args.output.endswith(("/", "\\")))
    if len(nets) > 1 and args.output and not into_dir:
        raise _Usage(f"{args.file} has {len(nets)} networks: -o must be a folder, or pick one with --network")
    suffix = target.suffix.lower().lstrip(".") if target is not None and not into_dir else ""
    if args.format is None:  # the output file's suffix chooses (`-o net.png`), else svg
        args.format = suffix if suffix in RENDER_FORMATS else "svg"
    elif suffix in RENDER_FORMATS and suffix != args.format:
        raise _Usage(f"-f {args.format} does not fit the output file {args.output}: drop -f, or name it "
                     f"{target.with_suffix('.' + args.format).name}")
    if args.dpi is not None and args.format != "png":
        raise _Usage(f"--dpi sets a PNG's resolution; {args.format} output has none (-f png, or -o FILE.png)")
    outputs = []
    try:
        for net in nets:
            drawing = {"depth": args.depth, "direction": args.direction, "style": args.style}
            data = net.dot(**drawing) if args.format == "dot" else net.render(args.format, dpi=args.dpi, **drawing)
            name = f"{net.name}.{args.format}"
            path = None if args.output == "-" else (target / name if into_dir else target or Path(name))
            outputs.append((path, data, None if args.output and not into_dir else net.name))
    except RenderError as err:
        print(f"archc: error: {err}", file=sys.stderr)
        return 1
    for path, data, chosen_for in outputs:
        if path is None and isinstance(data, bytes):  # png, pdf: the bytes themselves
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        elif path is None:
            sys.stdout.write(data)
        else:
            try:
                write_output(path, data, chosen_for)
            except OutputError as err:
                print(_red(f"archc: error: {err}"), file=sys.stderr)
                return 1
            print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from archlang.backends.report import reports_to_text

    reports = [net.report(args.depth, batch=args.batch, dtype=args.dtype, optimizer=args.optimizer)
               for net in _compile(args)]
    print(reports_to_text(reports, args.format), end="")  # json: a list, one object per network, as check's
    return 0


def _pick(spec: str, network: str | None, overrides, plain: bool, model=((3, 224, 224), None)):
    from pathlib import Path

    from archlang.api import compile_file

    path, name = spec, network
    given = _overrides(overrides)
    shown = "".join(f", {k}={v}" for k, v in given.items()) + (", plain" if plain else "")
    if python_target(spec):
        program = _imported(spec, given, plain, network, *model)
        net = next(iter(program))
        return net, f"{net.name} ({spec}{shown})"
    if ":" in spec and not Path(spec).exists():
        path, name = spec.rsplit(":", 1)
    program = _warned(compile_file(path, given, plain=plain, network=name))
    if len(program) > 1:
        names = ", ".join(n.name for n in program)
        raise _Usage(f"{path} has several networks ({names}): pick one with {path}:NAME or --network")
    net = next(iter(program))
    return net, f"{net.name} ({path}{shown})"


def cmd_diff(args) -> int:
    from archlang.backends.report import diff_dict, diff_text

    model = _model_options(args, [args.a, args.b])
    a, label_a = _pick(args.a, args.network, args.overrides + args.overrides_a, args.plain, model)
    b, label_b = _pick(args.b, args.network, args.overrides + args.overrides_b, args.plain or args.plain_b, model)
    ra, rb = a.report(args.depth), b.report(args.depth)
    if args.json:
        print(json.dumps(diff_dict(ra, rb, label_a, label_b), indent=2))
    else:
        print(diff_text(ra, rb, label_a, label_b, show_all=args.all), end="")
    return 0


def _arch_files(paths: list[str]) -> list:
    from pathlib import Path

    from archlang.frontend.reading import arch_files_under

    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = arch_files_under(path)
            if not found:
                raise _Usage(f"{name}: no .arch files in this folder")
            files += found
        else:
            files.append(path)
    return files


def cmd_fmt(args) -> int:
    import difflib

    from archlang.backends.files import rewrite
    from archlang.errors import OutputError
    from archlang.formatting import format_file

    failed = changed = 0
    files = _arch_files(args.files)
    results = []
    for path in files:
        try:
            results.append(format_file(path))
        except ArchError as err:
            print(_red(str(err)), file=sys.stderr)
            failed += 1
    for r in results:
        if not r.changed:
            continue
        changed += 1
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(
                r.original.splitlines(keepends=True), r.text.splitlines(keepends=True),
                f"{r.path} (now)", f"{r.path} (formatted)"))
        if args.check:
            print(f"would reformat {r.path}", file=sys.stderr)
        elif not args.diff:
            try:
                rewrite(r.path, r.text)
            except OutputError as err:
                print(f"archc: error: {err}", file=sys.stderr)
                changed, failed = changed - 1, failed + 1
                continue
            print(f"reformatted {r.path}", file=sys.stderr)
    verb = "would be reformatted" if args.check or args.diff else "reformatted"
    summary = [f"{changed} file{'s' * (changed != 1)} {verb}", f"{len(results) - changed} unchanged"]
    if failed:
        summary.append(f"{failed} with errors")
    print(", ".join(summary), file=sys.stderr)
    return 1 if failed or (args.check and changed) else 0


def cmd_list(args) -> int:
    from archlang.api import list_file

    listing = list_file(args.file, _overrides(args.overrides), plain=args.plain, network=args.network,
                        warn=_print_warning)
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    rows = [(n["signature"], f"{_shape(n['input_shape'])} → {_shape(n['output_shape'])}", f"{n['params']:,} params",
             f"{n['macs']:,} MACs") for n in listing["networks"]]
    if rows:
        print("networks:")
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
    if listing["defs"]:
        print("defs:")
        width = max(len(d["signature"]) for d in listing["defs"])
        for d in listing["defs"]:
            print(f"  {d['signature']:<{width}}  {d['at']}{'  (used)' if d['used'] else ''}")
    return 0


def _positive(kind, why: str | None = None):
    """An argparse type: a number above 0 (`why`: the message for one that is not)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {'whole ' if kind is int else ''}number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(why or f"'{text}' must be above 0")
        return value
    return parse


_depth = _positive(int, "the depth is at least 1 (1: labelled blocks, 2: blocks in a stage, ...)")
_batch = _positive(int, "the batch size is at least 1")


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"'{text}' must be 0 or above")
    return value


def cmd_train(args) -> int:
    from pathlib import Path

    program = _compile(args)
    nets = list(program)
    if len(nets) > 1:
        names = ", ".join(n.name for n in nets)
        raise _Usage(f"{args.file} has several networks ({names}): pick one with --network")
    net = nets[0]
    try:
        from archlang.train import DataError, Settings, TrainError, run
    except ImportError as err:  # torch itself is missing
        print(f"archc: error: archc train needs PyTorch ({err}): pip install torch", file=sys.stderr)
        return 1
    if args.milestones is not None:
        from archlang.train.schedule import parse_milestones

        if args.schedule != "step":
            raise _Usage("--milestones belongs to --schedule step")
        try:
            parse_milestones(args.milestones)
        except ValueError as err:
            raise _Usage(f"--milestones: {err}") from None
        args.milestones = ",".join(t.strip() for t in args.milestones.split(","))
    given = {k: v for k, v in {"data": args.data, "epochs": args.epochs, "batch_size": args.batch_size,
                               "lr": args.lr, "seed": args.seed, "amp": args.amp, "optimizer": args.optimizer,
                               "weight_decay": args.weight_decay, "schedule": args.schedule,
                               "milestones": args.milestones}.items() if v is not None}
    settings = Settings(device=args.device, compile=args.compile, explicit=set(given), **given)
    out = Path(args.out) if args.out else Path("runs") / net.name
    try:
        return run(net, settings, out, args.resume, args.nproc)
    except (DataError, TrainError) as err:
        print(f"archc: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the loop took it over, or a second Ctrl-C inside it
        saved = (f"{out}/checkpoint.pt holds the last saved state (--resume continues from it)"
                 if (out / "checkpoint.pt").is_file() else "no checkpoint was saved")
        print(f"archc: interrupted; {saved}", file=sys.stderr)
        return 130


def _import_value(text: str):
    import ast as python_ast

    try:
        return python_ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string


def cmd_import(args) -> int:
    from pathlib import Path

    if args.target.endswith(".arch") or ":" not in args.target:
        raise _Usage(f"archc import takes MODULE:CALLABLE (a Python module, whose code it runs), not "
                     f"'{args.target}'")
    dims = _import_dims(args.input)
    kwargs = _import_kwargs(args.args)
    try:
        from archlang.importer import from_torch, load_target
        from archlang.importer.trace import ImportFailure
    except ImportError as err:  # torch itself is missing
        print(f"archc: error: archc import needs PyTorch ({err}): pip install torch", file=sys.stderr)
        return 1
    module_name, _, attr = args.target.partition(":")
    name = args.name or attr.rsplit(".", 1)[-1]
    try:
        model = load_target(args.target, kwargs)
        text = from_torch(model, dims, name=name if name.isidentifier() else None,
                          source=args.target)
    except ImportFailure as err:
        print(_red(f"archc: error: {err}"), file=sys.stderr)
        return 1
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    from archlang.backends.files import write_output
    from archlang.errors import OutputError

    try:
        write_output(Path(args.output), text)
    except OutputError as err:
        print(_red(f"archc: error: {err}"), file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(text.splitlines())} lines)", file=sys.stderr)
    return 0


def _subcommand(sub, name: str, func, summary: str, description: str, example: str,
                common: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=textwrap.fill(description, 88),
                       epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    if common:
        _add_common(p)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from archlang import __version__

    parser = argparse.ArgumentParser(
        prog="archc", description="Compile .arch neural-network architectures.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = _subcommand(sub, "check", cmd_check, "compile and print each network's shapes and parameter count",
                    "Compile FILE, checking every shape, and print each network's input → output shape, "
                    "parameter count and inserted projections.",
                    "archc check specs/resnet34.arch --set classes=10")
    p.add_argument("--json", action="store_true", help="print a JSON list of networks")

    p = _subcommand(sub, "build", cmd_build, "write a standalone PyTorch module per network",
                    "Compile FILE and write, for each network, DIR/<network>.py (a standalone file that "
                    "imports only torch and holds one nn.Module), DIR/<network>.report.md (the cost "
                    "report, every layer), DIR/<network>.json (the same report as JSON) and "
                    "DIR/<network>.svg (the diagram, as `archc render` draws it at depth 2; left out, with "
                    "a warning, when graphviz's `dot` program is missing).",
                    "archc build specs/resnet34.arch -o build/")
    p.add_argument("-o", "--output", default="build", metavar="DIR", help="output folder (default: build/)")

    p = _subcommand(sub, "report", cmd_report, "print parameters, MACs, FLOPs and memory per layer or block",
                    "Compile FILE and print a static cost report per layer (or rolled up by block with "
                    "--depth): output shape, parameters, MACs, other elementwise ops and activation memory, "
                    "with totals and the counting convention. Computed from the IR: torch is not needed.",
                    "archc report specs/resnet34.arch --depth 1")
    p.add_argument("--depth", type=_depth, metavar="D",
                   help="roll layers up into their blocks at this depth (1: labelled blocks; default: every layer)")
    train = p.add_argument_group("training step memory",
                                 "any of these adds the memory of one training step of the model cast with\n"
                                 ".to(DTYPE): parameters, gradients, optimizer state, activations saved for\n"
                                 "backward (per layer or block, and in all)")
    train.add_argument("--batch", type=_batch, metavar="B", help="the batch size (default: 1)")
    train.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), metavar="DTYPE",
                       help="fp32, bf16 or fp16 (default: fp32)")
    train.add_argument("--optimizer", choices=("sgd", "momentum", "adam", "adamw"), metavar="NAME",
                       help="sgd (no state), momentum (one buffer a parameter), adam or adamw (two) (default: sgd)")
    fmt = p.add_mutually_exclusive_group()
    fmt.set_defaults(format="text")
    for flag in ("json", "markdown", "csv"):
        fmt.add_argument(f"--{flag}", dest="format", action="store_const", const=flag,
                         help=f"print {'a JSON list, one object per network' if flag == 'json' else flag}")

    p = _subcommand(sub, "render", cmd_render, "draw each network as a diagram (svg, png, pdf or DOT)",
                    "Compile FILE and draw each network with graphviz: blocks above --depth are frames, "
                    "blocks at it single nodes (a run of identical blocks one node with a ×N badge), "
                    "inserted Ws projections dashed in orange, tensor shapes on the edges. svg, png and "
                    "pdf need graphviz's `dot` program; -f dot does not.",
                    "archc render specs/resnet34.arch -f png --depth 1 -o resnet34.png")
    p.add_argument("-f", "--format", choices=RENDER_FORMATS, default=None,
                   help="output format (default: the -o file's suffix, else svg)")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="output file, or folder for several networks; - for stdout (default: ./<network>.<format>)")
    p.add_argument("--depth", type=_depth_or_all, default=2, metavar="D",
                   help="draw blocks down to this depth; `all` draws every layer (default: 2)")
    p.add_argument("--direction", choices=("TB", "LR"), default="TB",
                   help="top to bottom (default) or left to right")
    p.add_argument("--style", choices=("full", "compact"), default="full",
                   help="compact: a tensor shape on an edge only where it changes, boxes closer together "
                        "(default: full, every edge)")
    p.add_argument("--dpi", type=_positive(int), metavar="N", help="a PNG's resolution (default: 96)")

    p = _subcommand(sub, "diff", cmd_diff, "compare two networks block by block (shapes, params, MACs)",
                    "Compile A and B and print, per block, where their output shapes, parameters and MACs "
                    "differ. A and B are FILE or FILE:NETWORK.",
                    "archc diff specs/resnet34_options.arch:resnet34_a specs/resnet34.arch:resnet34",
                    common=False)
    p.add_argument("a", metavar="A", help="FILE, FILE:NETWORK or MODULE:CALLABLE (a PyTorch model, imported)")
    p.add_argument("b", metavar="B", help="FILE, FILE:NETWORK or MODULE:CALLABLE (a PyTorch model, imported)")
    p.add_argument("--network", "-n", metavar="N", help="the network to take from both files")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter in both networks (repeatable)")
    p.add_argument("--set-a", dest="overrides_a", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter in A only (repeatable; after --set): "
                        "diff f.arch f.arch --set-a k=8 --set-b k=10")
    p.add_argument("--set-b", dest="overrides_b", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter in B only (repeatable; after --set)")
    p.add_argument("--plain", action="store_true", help="remove every `skip` branch from both")
    p.add_argument("--plain-b", action="store_true", help="remove every `skip` branch from B only "
                   "(a network against its plain twin)")
    _add_model_options(p)
    p.add_argument("--depth", type=_depth, default=2, metavar="D",
                   help="compare blocks at this depth (default: 2, the blocks of a stage)")
    p.add_argument("--all", action="store_true", help="list unchanged blocks too")
    p.add_argument("--json", action="store_true", help="print the aligned rows as JSON")

    p = _subcommand(sub, "fmt", cmd_fmt, "rewrite .arch files in the canonical layout",
                    "Rewrite each FILE (or every .arch file under a folder) in the canonical layout: "
                    "4-space blocks, one space around > and |, aligned labels and trailing comments, "
                    "ASCII repeats (x2, x(n-1)). Comments and blank-line groups are kept. A file is "
                    "written (atomically) only if the result parses to the same program and compiles to "
                    "the same network. --check writes nothing and exits 1 when a file would change.",
                    "archc fmt specs/ --check", common=False)
    p.add_argument("files", nargs="+", metavar="FILE", help=".arch files or folders")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would be reformatted")
    p.add_argument("--diff", action="store_true", help="write nothing; print what would change as a unified diff")

    p = _subcommand(sub, "list", cmd_list, "list a file's networks and defs with their parameters",
                    "List the networks of FILE (parameters with defaults, input → output shape, parameter "
                    "and MAC counts) and the defs visible in it (its own and those it uses).",
                    "archc list specs/resnets.arch")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = _subcommand(sub, "train", cmd_train, "train a network (digits, an image folder, or synthetic data)",
                    "Compile FILE and train its network with cross-entropy (AdamW, or SGD with momentum; a "
                    "constant, step or cosine learning rate): a progress line per epoch, then RUN/metrics.json, "
                    "RUN/metrics.png, the last weights RUN/model.pt and the best epoch's RUN/best.pt, the "
                    "module RUN/<network>.py and RUN/checkpoint.pt (every epoch, and on Ctrl-C). --resume "
                    "continues a run exactly where it stopped, with its settings and epochs. --nproc P trains "
                    "with P processes (DDP through torch.distributed.run: gloo on CPU, nccl on GPU). Needs torch "
                    "and the `train` extra "
                    "(scikit-learn, Pillow, matplotlib).",
                    "archc train specs/lenet5.arch --epochs 20")
    p.add_argument("--data", metavar="SRC",
                   help="digits (scikit-learn's 1,797 handwritten digits, the default), synthetic (random, for "
                        "speed tests), or a folder of class folders (or of train/ and val/ holding them)")
    p.add_argument("--epochs", type=_positive(int), metavar="E",
                   help="epochs to train (default: 20; on --resume, the run's own)")
    p.add_argument("--batch-size", type=_positive(int), metavar="B", help="images per step and process (default: 64)")
    p.add_argument("--optimizer", choices=("adamw", "sgd"),
                   help="adamw (the default) or sgd (momentum 0.9, as He et al.)")
    p.add_argument("--lr", type=_positive(float), metavar="LR",
                   help="the (initial) learning rate (default: 0.001 for adamw, 0.1 for sgd)")
    p.add_argument("--weight-decay", type=_not_negative, metavar="WD",
                   help="weight decay (default: 0.01 for adamw, 0.0001 for sgd)")
    p.add_argument("--schedule", choices=("constant", "step", "cosine"),
                   help="the learning rate over the run: constant (the default), step (divided by 10 at each "
                        "milestone) or cosine (down to 0), set at every step")
    p.add_argument("--milestones", metavar="M,M",
                   help="where --schedule step divides the rate: shares of the run (50%%,75%%, the default) "
                        "or epochs (10,15)")
    p.add_argument("--seed", type=int, metavar="S", help="seed for the initial weights and the order (default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where to train (default: auto, a GPU when there is one)")
    p.add_argument("--amp", choices=("off", "bf16", "fp16"), help="mixed precision (default: off)")
    p.add_argument("--compile", action="store_true", help="train the torch.compile'd module")
    p.add_argument("--nproc", type=_positive(int), default=1, metavar="P",
                   help="processes to train with, DDP through torch.distributed.run (default: 1)")
    p.add_argument("--out", metavar="DIR", help="the run's folder (default: runs/<network>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")

    p = _subcommand(sub, "import", cmd_import, "write an existing PyTorch model as an .arch file",
                    "Build the model MODULE:CALLABLE names (on the meta device where it can: no weights "
                    "are allocated), trace it with torch.fx and write it as .arch text: repeated blocks as "
                    "defs with parameters, runs as xN, residual adds as `| skip`, labels from the model's "
                    "attribute names. The text compiles to the model's parameters and output shape, or "
                    "nothing is written. Importing MODULE runs its Python code: import only code you "
                    "trust. Needs torch.",
                    "archc import torchvision.models:resnet50 -o resnet50.arch", common=False)
    p.add_argument("target", metavar="MODULE:CALLABLE", help="a Python callable returning an nn.Module "
                   "(never an .arch file)")
    p.add_argument("--input", default="3x224x224", metavar="CxHxW", help="the input shape (default: 3x224x224)")
    p.add_argument("-o", "--output", metavar="FILE", help="the .arch file to write (default: stdout)")
    p.add_argument("--arg", dest="args", action="append", default=[], metavar="KEY=VALUE",
                   help="a keyword argument for CALLABLE, a Python literal or a word (repeatable)")
    p.add_argument("--name", metavar="N", help="the network's name (default: CALLABLE's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except _Usage as err:
        parser.exit(2, f"archc: error: {err}\n")
    except ArchError as err:
        from archlang.compiler import OverrideError  # loaded already: it raised the error

        print(_red(str(err)), file=sys.stderr)
        return 2 if isinstance(err, OverrideError) else 1
    except _ImportedFailure as err:
        print(_red(f"archc: error: {err}"), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C (or one still pending) ends nothing half-way
        print("archc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
