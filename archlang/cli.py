"""The `archc` command line: argument parsing, dispatch to the API, and exit codes.

Exit codes: 0 ok, 1 compile error (a diagnostic on stderr), 2 usage error.
Neither `check` nor `build` imports torch: code generation works from the IR alone."""

from __future__ import annotations

import argparse
import json
import os
import sys

from archlang.compiler import OverrideError
from archlang.errors import ArchError

EPILOG = """examples:
  archc check specs/resnet34.arch
  archc check specs/resnet34.arch --set classes=10 --json
  archc check specs/resnet34.arch --plain          # He et al.'s plain baseline: every skip removed
  archc build specs/resnet34.arch -o build/        # build/resnet34.py, a standalone nn.Module
"""


def _colour(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


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


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="the .arch file")
    p.add_argument("--network", "-n", metavar="N", help="only this network (default: all in the file)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a network parameter, e.g. --set classes=10 (repeatable)")
    p.add_argument("--plain", action="store_true", help="remove every `skip` branch (plain baseline)")


def _compile(args):
    from archlang.api import compile_file

    return compile_file(args.file, _overrides(args.overrides), plain=args.plain, network=args.network)


def _shape(dims) -> str:
    return "x".join(str(d) for d in dims)


def cmd_check(args) -> int:
    program = _compile(args)
    if args.json:
        rows = [{"name": n.name, "input_shape": list(n.input_shape), "output_shape": list(n.output_shape),
                 "params": n.params, "projections": [p.path for p in n.projections]} for n in program]
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(n.name) for n in program), default=0)
    for net in program:
        print(f"{net.name:<{width}}  {_shape(net.input_shape)} → {_shape(net.output_shape)}  "
              f"{net.params:,} params")
        for node in net.projections:
            kind = "zero-pad shortcut" if node.op == "_pad" else "Ws projection"
            print(f"{'':<{width}}  {kind} at {node.path.rsplit('.', 1)[0]} "
                  f"({_shape(node.in_shapes[0].dims)} → {_shape(node.shape.dims)})")
        for note in net.notes:
            print(f"{'':<{width}}  note: {note}")
    return 0


def cmd_build(args) -> int:
    from pathlib import Path

    from archlang.backends.files import write_atomic

    program = _compile(args)
    out_dir = Path(args.output)
    # render everything before writing anything: a failure leaves existing outputs untouched
    outputs = [(out_dir / f"{net.name}.py", net.source(), net) for net in program]
    for path, text, net in outputs:
        write_atomic(path, text)
        print(f"wrote {path}  ({net.name}: {_shape(net.input_shape)} → {_shape(net.output_shape)}, "
              f"{net.params:,} params, {net.macs:,} MACs)")
    return 0


def _subcommand(sub, name: str, func, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=summary, description=description, epilog=f"example:\n  {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
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
                    "Compile FILE and write DIR/<network>.py for each network: a standalone file that "
                    "imports only torch and holds one nn.Module.",
                    "archc build specs/resnet34.arch -o build/")
    p.add_argument("-o", "--output", default="build", metavar="DIR", help="output folder (default: build/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    red = "\033[31m" if _colour(sys.stderr) else ""
    reset = "\033[0m" if red else ""
    try:
        return args.func(args)
    except _Usage as err:
        parser.exit(2, f"archc: error: {err}\n")
    except OverrideError as err:
        print(str(err).replace("error:", f"{red}error:{reset}", 1), file=sys.stderr)
        return 2
    except ArchError as err:
        print(str(err).replace("error:", f"{red}error:{reset}", 1), file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
