"""Regression tests for issue 19 (hardening round 2): hostile files, paths, names, checkpoints
and signals.  Each test names the item of the issue it holds down."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import archlang
from archlang import ArchError
from archlang.cli import main
from tests.conftest import ROOT, SPECS

LENET = SPECS / "lenet5.arch"


def archc(*args: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 60,
          stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archlang", *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, timeout=timeout, stdin=stdin)


def text_of(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    return proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")


# ---- item 1: nothing archc reads may execute code (the grammar cache) ----


class _Planted:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_1_a_pickle_at_the_old_grammar_cache_path_is_never_read(tmp_path):
    cache = tmp_path / "cache" / "archlang"
    cache.mkdir(parents=True)
    os.chmod(cache, 0o777)
    marker = tmp_path / "pwned"
    planted = _Planted()
    planted.marker = marker
    from archlang.frontend.parser import digest, grammar_text

    payload = pickle.dumps(planted)
    for name in (f"grammar-{digest(grammar_text())[:16]}.lark-cache", "grammar.lark-cache"):
        (cache / name).write_bytes(payload)
    os.mkfifo(cache / "grammar-fifo.lark-cache")
    before = sorted(p.name for p in cache.iterdir())
    proc = archc("check", str(LENET), env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "HOME": str(tmp_path)},
                 timeout=30)
    assert proc.returncode == 0, text_of(proc)
    assert not marker.exists()
    assert sorted(p.name for p in cache.iterdir()) == before  # nothing read, nothing written there
    assert not (tmp_path / ".cache").exists()


def test_1_shipped_grammar_tables_were_generated_from_this_grammar():
    from archlang.frontend import tables

    assert tables.up_to_date(), "run python -m archlang.frontend.tables"
    proc = subprocess.run([sys.executable, "-m", "archlang.frontend.tables", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _corpus() -> list[tuple[str, str]]:
    files = sorted(SPECS.glob("*.arch")) + sorted((ROOT / "tests" / "errors").glob("*.arch"))
    return [(p.name, p.read_bytes().decode("utf-8", "replace")) for p in files]


def test_1_the_shipped_tables_parse_exactly_as_the_grammar_does(monkeypatch):
    """The parser from grammar_tables.json and one analysed from grammar.lark give the same AST, or
    the same diagnostic, for every spec and every bad input of the error corpus."""
    from lark import Lark

    from archlang.frontend import parser
    from archlang.frontend.lexer import Layout

    assert parser.read_tables() is not None
    shipped = parser._lark()
    analysed = Lark(parser.grammar_text(), postlex=Layout(), **parser.TABLE_OPTIONS)
    assert shipped is not analysed

    def outcomes() -> list[tuple[str, str]]:
        out = []
        for name, text in _corpus():
            try:
                out.append(("ok", repr(parser.parse(text, name))))
            except ArchError as err:
                out.append(("error", str(err)))
        return out

    first = outcomes()
    monkeypatch.setattr(parser, "_lark", lambda: analysed)
    second = outcomes()
    assert first == second
    assert sum(kind == "error" for kind, _ in first) > 10 and sum(kind == "ok" for kind, _ in first) > 10


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


MESSY = "network n:\n  input 4\n  relu\n"
TIDY = "network n:\n    input 4\n    relu\n"

# ---- item 2: fmt keeps links, permissions and owners ----


def test_2_fmt_writes_through_a_symlink_and_keeps_the_mode(tmp_path, capsys):
    target = tmp_path / "real" / "net.arch"
    target.parent.mkdir()
    target.write_text(MESSY)
    os.chmod(target, 0o640)
    link = tmp_path / "link.arch"
    link.symlink_to(target)
    code, _, err = run_main(["fmt", link], capsys)
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text() == TIDY
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["net.arch"]  # no temporary left


def test_2_fmt_keeps_a_read_only_file_read_only(tmp_path, capsys, monkeypatch):
    path = tmp_path / "ro.arch"
    path.write_text(MESSY)
    os.chmod(path, 0o444)
    real_access = os.access
    # as root every file is writable: make this one read-only for the test's user either way
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == path and mode & os.W_OK
                        else real_access(p, mode, **kw))
    code, _, err = run_main(["fmt", path], capsys)
    assert code == 1 and "read-only" in err and "Traceback" not in err
    assert path.read_text() == MESSY and stat.S_IMODE(path.stat().st_mode) == 0o444


def test_2_fmt_keeps_the_owner_where_it_may(tmp_path, capsys):
    if os.getuid() != 0:
        pytest.skip("only root can give a file to another user")
    path = tmp_path / "theirs.arch"
    path.write_text(MESSY)
    os.chown(path, 12345, 12345)
    code, _, err = run_main(["fmt", path], capsys)
    assert code == 0, err
    assert (path.stat().st_uid, path.stat().st_gid) == (12345, 12345) and path.read_text() == TIDY


# ---- item 4: build never overwrites what it did not write, never shadows a module ----


def _net(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}_spec.arch"
    path.write_text(f"network {name}(classes=10):\n    input 4\n    dense classes\n")
    return path


@pytest.mark.parametrize("name, foreign", [("setup", "setup.py"), ("conftest", "conftest.py"),
                                           ("package", "package.json")])
def test_4_build_never_overwrites_a_file_it_did_not_write(tmp_path, capsys, name, foreign):
    out = tmp_path / "out"
    out.mkdir()
    (out / foreign).write_text("precious\n")
    code, stdout, err = run_main(["build", _net(tmp_path, name), "-o", out], capsys)
    assert code == 1 and "was not written by archc" in err and "Traceback" not in err
    assert (out / foreign).read_text() == "precious\n"
    assert sorted(p.name for p in out.iterdir()) == [foreign]  # nothing of the set was written
    assert stdout == ""


def test_4_build_overwrites_its_own_outputs(tmp_path, capsys):
    from archlang.backends.files import is_ours

    spec, out = _net(tmp_path, "setup"), tmp_path / "out"
    assert run_main(["build", spec, "-o", out], capsys)[0] == 0
    written = sorted(p.name for p in out.iterdir())
    assert {"setup.py", "setup.json", "setup.report.md"} <= set(written)
    assert all(is_ours(out / n, "setup") for n in written)
    assert not is_ours(out / "setup.py", "other")
    spec.write_text(spec.read_text().replace("classes=10", "classes=7"))
    code, _, err = run_main(["build", spec, "-o", out], capsys)
    assert code == 0, err
    assert "classes = 7" in (out / "setup.py").read_text() or "7" in (out / "setup.json").read_text()
    assert json.loads((out / "setup.json").read_text())["arguments"] == {"classes": 7}


def test_4_build_refuses_a_symlink_in_the_way(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("keep\n")
    (out / "setup.py").symlink_to(elsewhere)
    code, _, err = run_main(["build", _net(tmp_path, "setup"), "-o", out], capsys)
    assert code == 1 and "symbolic link" in err
    assert (out / "setup.py").is_symlink() and elsewhere.read_text() == "keep\n"


@pytest.mark.parametrize("name", ["torch", "math", "typing", "numpy"])
def test_4_a_network_named_after_an_imported_module_is_not_built(tmp_path, capsys, name):
    code, _, err = run_main(["build", _net(tmp_path, name), "-o", tmp_path / "out"], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"{tmp_path / f'{name}_spec.arch'}:1:1: error: a network named '{name}' cannot be written")
    assert f"hint: rename the network, e.g. {name}_net" in err
    assert not (tmp_path / "out").exists()


# ---- item 5: a build is atomic as a whole ----


def _build_once(tmp_path: Path, capsys) -> tuple[Path, Path, dict[str, bytes]]:
    spec, out = _net(tmp_path, "net"), tmp_path / "out"
    assert run_main(["build", spec, "-o", out], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    spec.write_text(spec.read_text().replace("classes=10", "classes=3"))
    return spec, out, before


@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_5_a_full_disk_leaves_the_previous_build_intact(tmp_path, capsys, monkeypatch, failing_call):
    from archlang.backends import files

    spec, out, before = _build_once(tmp_path, capsys)
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == failing_call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", fsync)
    code, stdout, err = run_main(["build", spec, "-o", out], capsys)
    assert code == 1 and "No space left on device" in err and err.startswith("archc: error: ")
    assert "Traceback" not in err and stdout == ""
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # every old file, nothing staged


def test_5_a_failed_rename_puts_the_previous_set_back(tmp_path, capsys, monkeypatch):
    from archlang.backends import files

    spec, out, before = _build_once(tmp_path, capsys)
    real = os.replace
    moved = []

    def replace(src, dst):
        if Path(dst).parent == out and not Path(src).name.startswith(".old."):
            moved.append(dst)
            if len(moved) == 3:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    code, _, err = run_main(["build", spec, "-o", out], capsys)
    assert code == 1 and "Input/output error" in err
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ---- item 7: render png/pdf to stdout ----


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs graphviz's dot")
@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-")])
def test_7_render_to_stdout_writes_the_bytes_themselves(tmp_path, fmt, magic):
    piped = archc("render", str(LENET), "-f", fmt, "-o", "-")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith(magic)
    to_file = archc("render", str(LENET), "-f", fmt, "-o", str(tmp_path / f"x.{fmt}"))
    assert to_file.returncode == 0
    if fmt == "png":  # a pdf carries its creation time
        assert piped.stdout == (tmp_path / "x.png").read_bytes()
    else:
        assert abs(len(piped.stdout) - (tmp_path / "x.pdf").stat().st_size) < 64


# ---- item 8: the quoted line is the parser's line ----


@pytest.mark.parametrize("separator", ["\f", "\x85", "\u2028", "\u2029", "\x1c", "\r", "\v"])
def test_8_diagnostics_quote_the_line_the_parser_counts(separator):
    source = f"# a comment with {separator} inside\nnetwork n:\n    input 4\n    rleu\n"
    with pytest.raises(ArchError) as info:
        archlang.compile(source, "sep.arch")
    text = str(info.value)
    assert text.splitlines()[:3] == ["sep.arch:4:5: error: unknown op or def 'rleu'", "   4 |     rleu",
                                     "     |     ^~~~"]


def test_8_crlf_lines_are_quoted_without_their_cr():
    with pytest.raises(ArchError) as info:
        archlang.compile("network n:\r\n    input 4\r\n    rleu\r\n", "crlf.arch")
    assert "   3 |     rleu\n" in str(info.value)


# ---- item 9: limits everywhere ----


UNUSED = "network n(unused=1, k=2):\n    input 4\n    dense k\n"


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 10**13, 1e13, -(10**13), False, "x"])
def test_9_api_overrides_of_unused_parameters_are_checked(value):
    net = archlang.compile(UNUSED, "u.arch")["n"]
    with pytest.raises(ArchError) as info:
        net.with_arguments(unused=value)
    assert "--set unused:" in info.value.message


def test_9_api_overrides_within_the_limit_still_work():
    net = archlang.compile(UNUSED, "u.arch")["n"]
    assert net.with_arguments(unused=10**12).arguments["unused"] == 10**12
    assert net.with_arguments(k=5).output_shape == (5,)


@pytest.mark.parametrize("value", ["inf", "1e13", "10000000000000", "-1e400", "nan"])
def test_9_cli_overrides_of_unused_parameters_are_checked(tmp_path, capsys, value):
    path = tmp_path / "u.arch"
    path.write_text(UNUSED)
    code, _, err = run_main(["check", path, "--set", f"unused={value}"], capsys)
    assert code == 2 and err.startswith(f"{path}:1:9: error: --set unused: ")


# ---- item 10: bad output paths, huge literals, link loops: a clean error ----


def test_10_bad_output_paths_give_a_clean_error(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for argv in (["build", LENET, "-o", a_file], ["build", LENET, "-o", a_file / "under"],
                 ["render", LENET, "-f", "dot", "-o", a_file / "x.dot"]):
        code, _, err = run_main(argv, capsys)
        assert code == 1, argv
        assert err.startswith("archc: error: cannot write into ") and "a file" in err, err
    assert a_file.read_text() == "x"


def test_10_an_unwritable_output_folder_gives_a_clean_error(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == locked
                        else real_access(p, mode, **kw))
    code, _, err = run_main(["build", LENET, "-o", locked], capsys)
    assert code == 1 and err == f"archc: error: cannot write into {locked}: permission denied\n"


def test_10_train_out_naming_a_file_is_a_clean_error(tmp_path, capsys):
    pytest.importorskip("torch")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out in (a_file, a_file / "run"):
        code, _, err = run_main(["train", LENET, "--epochs", "1", "--out", out], capsys)
        assert code == 1 and err.startswith("archc: error: --out") and "Traceback" not in err, err
    assert a_file.read_text() == "x"


@pytest.mark.parametrize("where", ["dense {n}", "input {n}", "input 3x{n}x4", "relu x{n}", "set padding = {n}"])
def test_10_integer_literals_past_pythons_limit_are_located_errors(tmp_path, capsys, where):
    line = where.format(n="7" * 5000)
    if where.startswith("set"):
        source = f"{line}\nnetwork n:\n    input 4\n    relu\n"
    elif where.startswith("input"):
        source = f"network n:\n    {line}\n    relu\n"
    else:
        source = f"network n:\n    input 4\n    {line}\n"
    path = tmp_path / "big.arch"
    path.write_text(source)
    for command in ("check", "fmt"):
        code, _, err = run_main([command, path], capsys)
        assert code == 1 and "Traceback" not in err
        assert "this number has 5,000 digits; values are at most 1,000,000,000,000" in err.splitlines()[0]


def test_10_symlink_loops_are_located_errors(tmp_path, capsys):
    (tmp_path / "a.arch").symlink_to("b.arch")
    (tmp_path / "b.arch").symlink_to("a.arch")
    (tmp_path / "main.arch").write_text('use "a.arch"\nnetwork n:\n    input 4\n    relu\n')
    code, _, err = run_main(["check", tmp_path / "a.arch"], capsys)
    assert code == 1 and err.startswith(f"{tmp_path / 'a.arch'}:1:1: error: cannot read ")
    assert "symbolic links" in err
    code, _, err = run_main(["check", tmp_path / "main.arch"], capsys)
    assert code == 1 and err.startswith(f"{tmp_path / 'main.arch'}:1:1: error: cannot read ")
    assert '   1 | use "a.arch"' in err


# ---- item 12: file kinds and sizes are checked before reading ----


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_12_a_fifo_is_refused_without_blocking(tmp_path):
    _fifo(tmp_path / "pipe.arch")
    (tmp_path / "uses.arch").write_text('use "pipe.arch"\nnetwork n:\n    input 4\n    relu\n')
    (tmp_path / "tree").mkdir()
    _fifo(tmp_path / "tree" / "p.arch")
    shutil.copy(LENET, tmp_path / "tree" / "lenet5.arch")
    for args in (["check", "pipe.arch"], ["check", "uses.arch"], ["fmt", "tree"], ["fmt", "pipe.arch"]):
        proc = archc(*args, cwd=tmp_path, timeout=30)
        out, err = text_of(proc)
        assert proc.returncode == 1, (args, err)
        assert "it is not a regular file (a FIFO)" in err and "Traceback" not in err
    assert "1 unchanged, 1 with errors" in text_of(archc("fmt", "tree", cwd=tmp_path, timeout=30))[1]


def test_12_a_link_to_dev_zero_is_refused_at_once(tmp_path):
    (tmp_path / "zero.arch").symlink_to("/dev/zero")
    start = time.perf_counter()
    proc = archc("check", "zero.arch", cwd=tmp_path, timeout=30)
    assert proc.returncode == 1
    assert "it is not a regular file (a character device)" in text_of(proc)[1]
    assert time.perf_counter() - start < 10


def test_12_a_huge_file_is_refused_before_it_is_read(tmp_path, capsys):
    huge = tmp_path / "huge.arch"
    with open(huge, "wb") as f:
        f.truncate(300 * 10**6)  # sparse: costs no disk
    start = time.perf_counter()
    code, _, err = run_main(["check", huge], capsys)
    assert code == 1 and err.startswith(f"{huge}:1:1: error: '{huge}' is larger than 1,000,000 characters")
    assert time.perf_counter() - start < 2


def test_12_reads_are_bounded_even_if_the_file_grows(tmp_path, monkeypatch):
    from archlang.frontend import reading

    path = tmp_path / "grows.arch"
    path.write_bytes(b"# small\n")
    real_read = os.read
    monkeypatch.setattr(reading.os, "read", lambda fd, n: b"#" * n if n else real_read(fd, n))
    with pytest.raises(reading.TooLarge):
        reading.read_bounded(path, 1000)


def test_12_the_fmt_walk_does_not_follow_folder_links(tmp_path):
    from archlang.frontend.reading import arch_files_under

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.arch").write_text(TIDY)
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    assert arch_files_under(tmp_path) == [tmp_path / "a" / "x.arch"]


# ---- item 3 and 11: archc train ----

TINY = """network tiny(classes=10):
    input 1x8x8
    conv3x3 4 same > relu
    gap
    dense classes
"""
TINY_BN = """network tinybn(classes=10):
    input 1x8x8
    conv3x3 4 same > relu
    gap > bn
    dense classes
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    path = tmp_path / "tiny.arch"
    path.write_text(TINY)
    return path


def test_3_train_refuses_an_out_folder_holding_other_files(tiny, tmp_path, capsys):
    out = tmp_path / "here"
    out.mkdir()
    for name in ("model.pt", "metrics.json", "tiny.py", "notes.txt"):
        (out / name).write_text("mine\n")
    code, _, err = run_main(["train", tiny, "--epochs", "1", "--out", out], capsys)
    assert code == 1 and "already holds files" in err and "pick another --out" in err
    assert all((out / n).read_text() == "mine\n" for n in ("model.pt", "metrics.json", "tiny.py", "notes.txt"))
    code, _, err = run_main(["train", tiny, "--epochs", "1", "--out", out, "--resume"], capsys)
    assert code == 1 and "no checkpoint to resume" in err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt", "notes.txt", "tiny.py"]


def test_3_train_into_a_new_or_empty_folder(tiny, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "run"):
        code, _, err = run_main(["train", tiny, "--epochs", "1", "--out", out], capsys)
        assert code == 0, err
        assert (out / "checkpoint.pt").is_file()


def test_11_a_decompression_bomb_is_a_clean_error(tmp_path, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    from archlang.train import data as train_data

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (64, 64)).save(tmp_path / cls / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4,096 pixels is over twice the limit
    with pytest.raises(train_data.DataError, match="decompression bomb"):
        train_data.load(str(tmp_path), (1, 8, 8), 2)


def test_11_a_last_batch_of_one_image_is_dropped_for_batch_norm(tmp_path, capsys):
    pytest.importorskip("sklearn")
    spec = tmp_path / "bn.arch"
    spec.write_text(TINY_BN)
    # digits: 1,438 training images = 3 x 479 + 1
    code, _, err = run_main(["train", spec, "--epochs", "1", "--batch-size", "479", "--out", tmp_path / "r"],
                            capsys)
    assert code == 0, err
    assert "note: the last batch of each epoch would hold 1 image" in err and "(1,437 of 1,438 images" in err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["steps"] == 3
    # without batch norm nothing is dropped
    spec.write_text(TINY)
    code, _, err = run_main(["train", spec, "--epochs", "1", "--batch-size", "479", "--out", tmp_path / "s"],
                            capsys)
    assert code == 0 and "note:" not in err
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["steps"] == 4


def _damage(ck: dict, how: str) -> dict:
    import torch

    ck = dict(ck)
    if how.startswith("drop:"):
        del ck[how[5:]]
    elif how.startswith("set:"):
        key, _, value = how[4:].partition("=")
        ck[key] = eval(value, {"torch": torch})  # noqa: S307 - the test's own literals
    elif how == "settings-missing-lr":
        ck["settings"] = {k: v for k, v in ck["settings"].items() if k != "lr"}
    elif how == "history-record-missing":
        ck["history"] = [{"epoch": 1}]
    elif how == "rng-python-garbage":
        ck["rng"] = {**ck["rng"], "python": (3, (1, 2), None)}
    elif how == "rng-torch-float":
        ck["rng"] = {**ck["rng"], "torch": torch.zeros(3)}
    elif how == "optimizer-groups":
        ck["optimizer"] = {"state": {}, "param_groups": []}
    elif how == "model-key-missing":
        ck["model"] = dict(list(ck["model"].items())[1:])
    return ck


DAMAGES = ["set:epoch=-3", "set:epoch='1'", "set:step=-1", "set:step=10**6", "set:global_step=None",
           "set:elapsed=float('nan')", "set:running=torch.zeros(2)", "set:running=[0.0, 0.0, 0.0]",
           "set:history={}", "set:arguments=[]", "set:settings=None", "drop:rng", "drop:model",
           "drop:optimizer", "drop:scaler", "drop:history", "settings-missing-lr", "history-record-missing",
           "rng-python-garbage", "rng-torch-float", "optimizer-groups", "model-key-missing", "set:scaler=[]"]


def test_11_damaged_checkpoints_are_refused_with_the_field_at_fault(tiny, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    assert run_main(["train", tiny, "--epochs", "1", "--out", run], capsys)[0] == 0
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    for how in DAMAGES:
        torch.save(_damage(good, how), run / "checkpoint.pt")
        code, _, err = run_main(["train", tiny, "--epochs", "2", "--out", run, "--resume"], capsys)
        assert code == 1, (how, err)
        expected = "do not fit tiny" if how == "model-key-missing" else "is damaged, so the run cannot continue from it"
        assert expected in err, (how, err)
        assert "Traceback" not in err
    torch.save(good, run / "checkpoint.pt")
    code, _, err = run_main(["train", tiny, "--epochs", "2", "--out", run, "--resume"], capsys)
    assert code == 0, err


def test_11_ctrl_c_outside_the_loop_is_a_clean_stop(tiny, tmp_path, capsys, monkeypatch):
    import archlang.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(archlang.train, "run", interrupted)
    code, _, err = run_main(["train", tiny, "--out", tmp_path / "r"], capsys)
    assert (code, err) == (130, "archc: interrupted; no checkpoint was saved\n")


def test_11_ctrl_c_during_start_up_prints_no_traceback(tiny, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "archlang", "train", str(tiny), "--out", str(tmp_path / "r")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)  # importing torch and reading the digits take longer than this
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"archc: interrupted" in err


def test_11_a_resumed_run_names_the_process_count_it_needs(tiny, tmp_path, capsys):
    import torch

    run = tmp_path / "run"
    assert run_main(["train", tiny, "--epochs", "1", "--out", run], capsys)[0] == 0
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    ck["settings"]["world_size"] = 2
    torch.save(ck, run / "checkpoint.pt")
    code, _, err = run_main(["train", tiny, "--epochs", "2", "--out", run, "--resume"], capsys)
    assert code == 1
    assert "was started with --nproc 2" in err and "resume it with --nproc 2" in err and "drop" not in err


# ---- item 14 ----


def test_14_a_byte_order_mark_is_accepted_and_fmt_removes_it(tmp_path, capsys):
    path = tmp_path / "bom.arch"
    path.write_bytes(b"\xef\xbb\xbf" + TIDY.encode())
    assert run_main(["check", path], capsys)[0] == 0
    code, _, err = run_main(["fmt", path], capsys)
    assert code == 0 and "reformatted" in err
    assert path.read_bytes() == TIDY.encode()


UNCALLED = """def block(w):
    conv3x3 w same > bn > {body}

network n(k=0):
    input 3x8x8
    (conv3x3 8 same > {zero})x(k)
    relu
"""


@pytest.mark.parametrize("body, zero, message", [
    ("rleu", "relu", "unknown op or def 'rleu'"),
    ("relu > dense wdth", "relu", "'wdth' is neither a parameter in scope nor a flag of dense"),
    ("relu > dense w*wdth", "relu", "unknown name 'wdth'"),
    ("conv3x3 w smae", "relu", "'smae' is neither a parameter in scope nor a flag of conv3x3"),
    ("conv3x3 w strid=2", "relu", "conv3x3 has no argument 'strid'"),
    ("relu", "bn > rleu", "unknown op or def 'rleu'"),
    ("relu", "block(kk)", "unknown name 'kk'"),
    ("relu", "block v=2", "block(w) has no parameter 'v'"),
    ("relu", "conv3x3 in.chan", "'in' has c, h and w, not 'chan'"),
    ("relu", "relu | skip pda", "skip takes one flag: pad, project or optional"),
    ("relu", "dense 3 x(nn)", "unknown name 'nn'"),
])
def test_14_names_are_resolved_in_uncalled_defs_and_zero_repeats(body, zero, message):
    with pytest.raises(ArchError) as info:
        archlang.compile(UNCALLED.format(body=body, zero=zero), "u.arch")
    assert info.value.message == message


def test_14_resolution_accepts_what_compiles():
    source = UNCALLED.format(body="conv3x3 w same stride=1 > relu | skip pad", zero="block(in.c) > dense 3 x(k)")
    assert archlang.compile(source, "u.arch")["n"].output_shape == (3, 8, 8)
    for spec in sorted(SPECS.glob("*.arch")):
        archlang.compile_file(spec)  # every spec still compiles


def test_14_resolution_reaches_defs_of_used_files(tmp_path):
    (tmp_path / "lib.arch").write_text("def unused = rleu\n")
    (tmp_path / "main.arch").write_text('use "lib.arch"\nnetwork n:\n    input 4\n    relu\n')
    with pytest.raises(ArchError) as info:
        archlang.compile_file(tmp_path / "main.arch")
    assert (info.value.filename, info.value.line, info.value.message) == (
        str(tmp_path / "lib.arch"), 1, "unknown op or def 'rleu'")


def test_14_fmt_joins_a_repeat_count_written_on_the_next_line():
    from archlang.frontend.format import format_source, same_ast

    source = "network n:\n    input 4\n    (relu ×\n        2)\n    (relu ×  # two\n     (1+1))\n"
    out = format_source(source)
    assert "×" not in out
    assert out == "network n:\n    input 4\n    (relu x2)\n    (relu x(  # two\n            1+1))\n"
    assert same_ast(source, out)
    assert format_source(out) == out


@pytest.mark.parametrize("text", ["٣", "1_0", "１０", "0x10", "inf", "nan", "1e400", "", " 3", "3.", "1" * 5000])
def test_14_set_takes_ascii_digits_only(text):
    from archlang.compiler import parse_override

    if text == "3.":  # Python spelling, ASCII: accepted
        assert parse_override(text) == 3.0
        return
    with pytest.raises(ValueError):
        parse_override(text)


@pytest.mark.parametrize("text, value", [("10", 10), ("-2", -2), ("0.5", 0.5), ("1e-3", 0.001), (".5", 0.5)])
def test_14_set_still_reads_numbers(text, value):
    from archlang.compiler import parse_override

    assert parse_override(text) == value and type(parse_override(text)) is type(value)


def test_14_render_to_an_empty_path_is_a_usage_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(["render", LENET, "-f", "dot", "-o", ""], capsys)
    assert code == 2 and "-o needs a file or folder" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n, text", [(999, "999"), (61_706, "61.71 k"), (999_999, "1.00 M"),
                                     (3_600_000_000, "3.60 G"), (10**12, "1.00 T"), (2 * 10**15, "2.00 P"),
                                     (999_999_999_989_999_992_832, "1.00e+21"), (10**30, "1.00e+30")])
def test_14_large_counts_print_sensibly(n, text):
    from archlang.backends.report import _si

    assert _si(n) == text


def test_render_never_overwrites_a_file_it_did_not_write_under_a_name_it_chose(tmp_path):
    """Found by the CLI fuzz: `render` into a folder, or to ./<net>.<fmt>, replaced foreign files."""
    spec = str(ROOT / "specs" / "lenet5.arch")

    def render(*args):
        return subprocess.run([sys.executable, "-m", "archlang", "render", spec, *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    for fmt in ("svg", "png", "pdf", "dot"):
        (tmp_path / f"lenet5.{fmt}").write_text("precious")
        done = render("-f", fmt)
        assert done.returncode == 1 and "was not written by archc" in done.stderr
        assert (tmp_path / f"lenet5.{fmt}").read_text() == "precious"
        (tmp_path / f"lenet5.{fmt}").unlink()
        assert render("-f", fmt).returncode == 0 and render("-f", fmt).returncode == 0  # its own file: replaced
    (tmp_path / "mine.svg").write_text("named on purpose")
    assert render("-o", "mine.svg").returncode == 0  # a file named with -o is the user's choice
    assert (tmp_path / "mine.svg").read_text().startswith("<?xml")
