"""Writing outputs safely (reading inputs safely is archlang.frontend.reading).

Every file is written to a temporary beside it, flushed to disk and renamed, so a failed
write never leaves a half-written or clobbered output.  `archc build` writes its files as one set
(`write_set`): all are staged first, then moved in; on any failure the previous set is intact.
It never overwrites a file archc did not write (`is_ours`), and never names a file after a module
the generated code would then import in its place (`shadowed_module`).  `archc fmt` rewrites a file
in place keeping its mode and owner, through a symbolic link to its target (`rewrite`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from archlang.errors import OutputError

# ---- writing one file ----


def _oserror(path: Path, err: OSError, doing: str = "write") -> OutputError:
    return OutputError(f"cannot {doing} {path}: {err.strerror or err}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_temp(folder: Path, name: str, data: str | bytes, mode: int | None) -> Path:
    """A new temporary file in `folder` holding `data`, flushed to disk; removed on failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, (0o666 & ~_umask()) if mode is None else mode)  # mkstemp creates 0600
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the renames are done
    finally:
        os.close(fd)


def make_folder(folder: Path) -> None:
    """Creates `folder` (and its parents); OutputError when it is a file, lies under a file, or
    cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write into {folder}: it is a file, not a folder") from None
    except NotADirectoryError:
        raise OutputError(f"cannot write into {folder}: part of that path is a file, not a folder") from None
    except OSError as err:
        raise _oserror(folder, err, "create") from None
    if not folder.is_dir():
        raise OutputError(f"cannot write into {folder}: it is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {folder}: permission denied")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Writes one file: a temporary beside it, flushed, then renamed over it.  Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, data, None)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_output(path: Path, data: str | bytes, network: str | None = None) -> None:
    """write_atomic for an output of the command line: OutputError instead of OSError.  With
    `network`, the file name was chosen by archc (a default name, or one in a folder given
    with -o), and a file already there is replaced only if archc wrote it."""
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder")
    if network is not None and os.path.lexists(path) and (path.is_symlink() or not is_ours(path, network)):
        raise OutputError(f"{path} exists and was not written by archc: not overwriting it "
                          "(move it away, or name the output file with -o)")
    make_folder(path.parent)
    try:
        write_atomic(path, data)
    except OSError as err:
        raise _oserror(path, err) from None


def rewrite(path: Path, data: str) -> Path:
    """Replaces the text of an existing file (`archc fmt`) atomically, keeping its permissions and,
    where this user may set it, its owner.  A symbolic link is followed: its target is rewritten
    and the link stays.  A file this user may not write is refused.  Returns the file written."""
    target = Path(os.path.realpath(path))
    try:
        info = os.stat(target)
    except OSError as err:
        raise _oserror(path, err, "rewrite") from None
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"cannot rewrite {path}: it is not a regular file")
    if not os.access(target, os.W_OK):
        raise OutputError(f"cannot rewrite {path}: it is read-only for you (left unchanged)")
    try:
        tmp = _write_temp(target.parent, target.name, data, stat.S_IMODE(info.st_mode))
    except OSError as err:
        raise _oserror(path, err, "rewrite") from None
    try:
        if hasattr(os, "chown"):
            try:
                os.chown(tmp, info.st_uid, info.st_gid)
            except PermissionError:
                pass  # only root may give a file away; the group may still fail: keep ours
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _oserror(path, err, "rewrite") from None
    _fsync_dir(target.parent)
    return target


# ---- what build may overwrite, and what it may name a file ----

# What the generated module imports (torch) and what importing torch imports in its turn: a file
# named after one of these beside the generated module would be imported in its place.
_IMPORTED = frozenset({"torch", "numpy", "typing_extensions", "sympy", "networkx", "jinja2", "fsspec",
                       "filelock", "mpmath", "triton", "setuptools", "pkg_resources"})


def shadowed_module(stem: str) -> str | None:
    """The module a generated `<stem>.py` would shadow, or None."""
    if stem in _IMPORTED or stem in sys.stdlib_module_names:
        return stem
    return None


def check_module_names(networks) -> None:
    """An ArchError at the first network whose generated `<name>.py` would shadow a module."""
    from archlang.errors import ArchError

    for net in networks:
        module = shadowed_module(net.name)
        if module is not None:
            raise ArchError(f"a network named '{net.name}' cannot be written as {net.name}.py: that file would "
                            f"shadow the module '{module}' that Python imports for the generated code",
                            net.ir.span, hint=f"rename the network, e.g. {net.name}_net")


_OURS_HEAD = 4096


def is_ours(path: Path, network: str) -> bool:
    """Whether `path` holds a file archc build wrote for `network` (a header tells; the report
    JSON and the diagram have none of their own, so their first lines are recognised)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_OURS_HEAD).decode("utf-8", "replace")
    except OSError:
        return False
    name = re.escape(network)
    if path.suffix == ".py":
        return re.match(rf'"""{name}: generated by archc ', head) is not None
    if path.name.endswith(".report.md"):
        return re.match(rf"# {name}\n\n- params ", head) is not None
    if path.suffix == ".json":
        return re.match(rf'\{{\n  "network": {re.escape(json.dumps(network))},\n', head) is not None
    if path.suffix == ".svg":
        return "<!-- Generated by graphviz" in head and re.search(rf"<!-- Title: {name} Pages: ", head) is not None
    if path.suffix == ".dot":
        return re.match(rf'(// .*\n)*digraph "?{name}"? {{', head) is not None
    if path.suffix == ".pdf":  # dot's PDF and PNG carry no name: any PDF or PNG image passes
        return head.startswith("%PDF-")
    if path.suffix == ".png":
        return head.startswith("\ufffdPNG")
    return False


def write_set(files: Iterable[tuple[Path, str | bytes, str]]) -> None:
    """Writes (path, data, network) files as one set into their folders.

    Every file is first staged (written and flushed) in a private folder beside its target;
    only when all are staged are they renamed into place, each replaced file kept aside until
    the last rename is done.  Any failure (a full disk, a foreign file in the way) raises
    OutputError with every previous file intact and nothing staged left behind."""
    files = list(files)
    for path, _data, network in files:
        if not os.path.lexists(path):
            continue
        if path.is_symlink():
            what = "is a symbolic link"
        elif path.is_dir():
            what = "is a folder"
        elif not path.is_file() or not is_ours(path, network):
            what = "exists and was not written by archc"
        else:
            continue
        raise OutputError(f"{path} {what}: not overwriting it (move it away, or build into another folder with -o)")
    folders = sorted({path.parent for path, _, _ in files})
    for folder in folders:
        make_folder(folder)
    staging: dict[Path, Path] = {}
    try:
        for folder in folders:
            staging[folder] = Path(tempfile.mkdtemp(prefix=".archc-build-", dir=folder))
        staged = []
        for path, data, _ in files:
            staged.append((path, _write_temp(staging[path.parent], path.name, data, None)))
    except OSError as err:
        for tmp in staging.values():
            shutil.rmtree(tmp, ignore_errors=True)
        where = next(iter(folders), Path("."))
        raise _oserror(where, err) from None
    moved: list[tuple[Path, Path | None]] = []  # (target, where its old file is kept)
    try:
        for path, tmp in staged:
            kept = None
            if os.path.lexists(path):
                kept = staging[path.parent] / f".old.{path.name}"
                os.replace(path, kept)
            moved.append((path, kept))
            os.replace(tmp, path)
    except OSError as err:
        for path, kept in reversed(moved):  # put the previous set back
            try:
                if kept is not None:
                    os.replace(kept, path)
                elif os.path.lexists(path):
                    os.unlink(path)
            except OSError:
                pass
        raise _oserror(path, err) from None
    finally:
        for folder, tmp in staging.items():
            _fsync_dir(folder)
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["OutputError", "check_module_names", "is_ours", "make_folder", "rewrite", "shadowed_module",
           "write_atomic", "write_output", "write_set"]
