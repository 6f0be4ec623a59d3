"""Reading inputs safely: an input is opened without blocking and checked to be a regular file of
bounded size before a byte is read, then read boundedly, so a FIFO, /dev/zero or a 300 MB file
never hangs archc or fills its memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class ReadError(Exception):
    """An input that cannot or must not be read; the message says why (no file name in it)."""


class TooLarge(ReadError):
    """An input over the size limit."""


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them; ReadError for anything else
    (a folder, a FIFO, a device, a file larger than `limit`).  Never blocks on the open."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)  # OSError (missing, unreadable, a link loop) goes to the caller
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ReadError("it is a folder")
        if not stat.S_ISREG(info.st_mode):
            raise ReadError(f"it is not a regular file (a {_kind(info.st_mode)})")
        if info.st_size > limit:
            raise TooLarge(f"it is larger than {limit:,} bytes ({info.st_size:,})")
        chunks, left = [], limit + 1
        while left > 0:  # the size may have grown since the fstat: read no more than the limit
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise TooLarge(f"it is larger than {limit:,} bytes")
        return data
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def arch_files_under(folder: Path) -> list[Path]:
    """Every *.arch entry under `folder`, sorted, without following links to folders (a link loop
    cannot make the walk endless).  Entries that are not regular files are listed too: reading
    them is refused with a message, rather than skipped in silence."""
    found: list[Path] = []
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        found += [Path(root) / n for n in names if n.endswith(".arch")]
    return sorted(found)
