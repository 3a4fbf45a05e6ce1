"""Atomic file writes, and the one way a store file is opened for reading.

Writes: a temporary file in the target folder, then a rename.

Reads: :func:`open_regular` opens once, without following a link, and checks
what it opened through the same descriptor. A check by path followed by an
open by path (``lstat`` then ``open``) leaves a window in which a link can be
swapped in; a descriptor cannot be swapped.
"""
from __future__ import annotations

import errno
import os
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

# O_NONBLOCK: a FIFO planted under a store name must not hang the reader in open(); regular files ignore it.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


class NotRegularFile(OSError):
    """A store name that is a symbolic link, a folder or a device: refused, never followed or read."""

    def __init__(self, path: Path | str, what: str) -> None:
        super().__init__(errno.ELOOP if what == "a symbolic link" else errno.EINVAL, f"{Path(path).name} is {what}")
        self.what = what


def open_regular(path: Path | str) -> tuple[int, os.stat_result]:
    """Open a store file for reading; return the descriptor and its fstat. The caller closes it.

    FileNotFoundError if there is none; NotRegularFile for a link (O_NOFOLLOW
    refuses it, ELOOP) or anything but a regular file; OSError otherwise.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(path, "a symbolic link") from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, "not a regular file")
        if _READ_FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_fd(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from a descriptor (fewer only at its end)."""
    parts = []
    left = limit
    while left > 0 and (block := os.read(fd, min(left, 1 << 20))):
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


@contextmanager
def atomic_writer(path: Path, tmp_name: str | None = None) -> Iterator[BinaryIO]:
    """Yield a file that appears at ``path`` only if the block completes.

    The temporary file lives next to the target so the rename never crosses
    a filesystem; readers see either the old file or the whole new one.
    ``tmp_name`` names the temporary file (the store tags it with its writer,
    so gc knows whether a live process owns it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / (tmp_name or f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, tmp_name: str | None = None) -> None:
    with atomic_writer(path, tmp_name) as f:
        f.write(data)
