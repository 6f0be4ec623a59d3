"""The command line as a user sees it: every command's --help, and the summaries that check,
build, list, render and fmt print, against golden files; exit codes; --set errors; colour."""

from __future__ import annotations

import pytest

from archlang.cli import build_parser, main
from tests.conftest import ROOT

GOLDEN = ROOT / "tests" / "golden" / "cli"
COMMANDS = ["check", "build", "report", "render", "diff", "fmt", "list", "train", "import"]


@pytest.fixture(autouse=True)
def _steady_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps help to the terminal width
    monkeypatch.chdir(ROOT)


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_golden(command, capsys, golden):
    code, out, _ = _run([command, "--help"] if command else ["--help"], capsys)
    assert code == 0
    golden(GOLDEN / f"help_{command or 'archc'}.txt", out)


def test_every_command_has_a_golden_help():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


def test_summaries_golden(tmp_path, capsys, golden):
    out_dir = tmp_path / "out"
    runs = {  # name: argv, in the order shown
        "check": ["check", "specs/resnet34_options.arch"],
        "build": ["build", "specs/lenet5.arch", "-o", str(out_dir)],
        "list": ["list", "specs/resnets.arch"],
        "render": ["render", "specs/lenet5.arch", "-f", "dot", "-o", str(out_dir / "lenet5.dot")],
        "fmt": ["fmt", "--check", "specs"],
    }
    text = ""
    for argv in runs.values():
        code, out, err = _run(argv, capsys)
        assert code == 0, err
        text += f"$ archc {' '.join(argv)}\n{out}{err}\n"
    golden(GOLDEN / "summaries.txt", text.replace(str(tmp_path), "TMP"))


def test_version(capsys):
    code, out, _ = _run(["--version"], capsys)
    assert code == 0 and out.startswith("archc 0.")


@pytest.mark.parametrize("argv, code, message", [
    (["check", "specs/lenet5.arch", "--set", "clases=5"], 2,
     "--set clases: no network here has a parameter 'clases'"),
    (["check", "specs/lenet5.arch", "--set", "classes=five"], 2, "--set classes: 'five' is not a number"),
    (["check", "specs/lenet5.arch", "--set", "classes"], 2, "--set takes KEY=VALUE"),
    (["report", "specs/lenet5.arch", "--depth", "0"], 2, "the depth is at least 1"),
    (["check", "specs/missing.arch"], 1, "no such file: 'specs/missing.arch'"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
])
def test_exit_codes(argv, code, message, capsys):
    got, out, err = _run(argv, capsys)
    assert got == code
    assert message in err and "Traceback" not in err


def test_set_error_names_the_valid_parameters(capsys):
    _, _, err = _run(["check", "specs/resnets.arch", "--set", "clases=10"], capsys)
    assert "hint: did you mean classes? (parameters: classes)" in err


def test_colour_only_on_a_terminal_without_no_color(capsys, monkeypatch, tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network n:\n    input 4\n    rleu\n")

    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    for no_color, coloured in ((None, True), ("1", False)):
        if no_color:
            monkeypatch.setenv("NO_COLOR", no_color)
        else:
            monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        tty = Tty()
        monkeypatch.setattr("sys.stderr", tty)
        assert main(["check", str(bad)]) == 1
        assert ("\033[31merror:" in tty.text) is coloured
        assert "unknown op or def 'rleu'" in tty.text
    monkeypatch.undo()
    assert main(["check", str(bad)]) == 1
    assert "\033[" not in capsys.readouterr().err  # piped (as under pytest): never colour


@pytest.mark.parametrize("path", sorted((ROOT / "specs" / "torchvision").glob("*.arch")), ids=lambda p: p.stem)
def test_every_command_reads_every_torchvision_spec(path, tmp_path, capsys):
    """check, list (which prints defaults such as `s=max(1, in.c//4)`), report --json and
    render -f dot run on every file of specs/torchvision/ and exit 0."""
    for argv in (["check", str(path)], ["list", str(path)], ["report", str(path), "--json"],
                 ["render", str(path), "-f", "dot", "-o", str(tmp_path) + "/"]):
        assert main(argv) == 0, argv
    listing = capsys.readouterr().out
    if path.stem == "efficientnet":
        assert "max(1, in.c//4)" in listing


# what each command may load: --version and --help no compiler at all, check no heavy library
STARTUP_CASES = {
    "--version": (["--version"], ("archlang.compiler", "archlang.api", "lark")),
    "--help": (["--help"], ("archlang.compiler", "archlang.api", "lark")),
    "check --help": (["check", "--help"], ("archlang.compiler", "archlang.api", "lark")),
    "check": (["check", "specs/lenet5.arch"], ()),
    "report": (["report", "specs/lenet5.arch"], ()),
}
HEAVY = ("torch", "networkx", "pydantic", "graphviz", "numpy")


@pytest.mark.parametrize("case", list(STARTUP_CASES))
def test_startup_imports_only_what_the_command_needs(case):
    """Start-up is import time: a fresh interpreter runs the command as `python -m archlang` does,
    then lists the modules it loaded (docs/benchmarks.md has the timings)."""
    import json
    import subprocess
    import sys

    argv, also_absent = STARTUP_CASES[case]
    code = ("import contextlib, io, json, runpy, sys\n"
            f"sys.argv = ['archc', *{argv!r}]\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        runpy.run_module('archlang', run_name='__main__')\n"
            "    except SystemExit as exit_:\n"
            "        rc = exit_.code\n"
            "print(json.dumps([rc, sorted(sys.modules)]))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rc, modules = json.loads(proc.stdout)
    assert rc == 0
    loaded = {name for name in modules if name.split(".")[0] in HEAVY or name in also_absent}
    assert not loaded, f"archc {case} imported {sorted(loaded)}"


def test_a_warning_goes_to_stderr_with_its_place_and_leaves_the_exit_code(tmp_path, capsys):
    import json

    path = tmp_path / "hwc.arch"
    path.write_text("network hwc:\n    input 224x224x3\n    conv3x3 64 /2\n")
    warning = (f"{path}:2:11: warning: input 224x224x3 reads as 224 channels of 224x3\n"
               "   2 |     input 224x224x3\n"
               "     |           ^~~~~~~~~\n"
               "  hint: input is CxHxW: did you mean 3x224x224?\n")
    for argv in (["check", str(path)], ["list", str(path)], ["report", str(path)],
                 ["diff", str(path), str(path), "--plain-b"]):
        code, out, err = _run(argv, capsys)
        assert code == 0 and warning in err and "warning:" not in out, argv
    code, out, err = _run(["check", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["output_shape"] == [64, 111, 1] and err == warning
    path.write_text("network chw:\n    input 3x224x224\n    conv3x3 64 /2\n    input_like = conv1x1 16\n")
    assert _run(["check", str(path)], capsys)[2] == ""  # CxHxW: nothing to say
