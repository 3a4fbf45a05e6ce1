"""Files in the key: declared deps, declared outs, and files a cell reads.

Digests go through a stat cache keyed by (path, size, mtime_ns, inode), so
an unchanged large file is never read twice. Implicit deps are seen through
an audit hook that is installed once and stays inert outside a missed cell.
"""
from __future__ import annotations

import glob
import os
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Iterable, Protocol, Sequence

from cellcache.errors import DepNotFound, OutNotProduced
from cellcache.store.format import file_digest

_GLOB_CHARS = frozenset("*?[")


class StatCache(Protocol):
    def cached_digest(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None: ...

    def remember_digest(self, path: str, size: int, mtime_ns: int, inode: int, digest: str) -> None: ...


def display_path(path: Path, cwd: Path) -> str:
    """Relative to the working directory when inside it, so entries are portable between machines."""
    try:
        return path.relative_to(cwd).as_posix()
    except ValueError:
        return path.as_posix()


def _files_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(Path(root) / name for name in files)
    return sorted(found)


def _resolve(pattern: str, cwd: Path) -> Path:
    target = Path(os.path.expanduser(pattern))
    return target if target.is_absolute() else cwd / target


def _files_at(target: Path) -> list[Path]:
    """The file itself, or every file under a folder."""
    return _files_under(target) if target.is_dir() else [target]


def expand(patterns: Sequence[str], cwd: Path) -> list[Path]:
    """Files named by paths, folders (recursively) and glob patterns; a pattern matching nothing raises."""
    result: set[Path] = set()
    for pattern in patterns:
        target = _resolve(pattern, cwd)
        matches = [Path(m) for m in glob.glob(str(target), recursive=True)] if _GLOB_CHARS & set(pattern) else [target]
        if not any(m.exists() for m in matches):
            raise DepNotFound(pattern)
        for match in matches:
            result.update(_files_at(match))
    return sorted(p.absolute() for p in result)


def digest(path: Path, cache: StatCache | None) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if cache is not None:
        known = cache.cached_digest(*key)
        if known is not None:
            return known
    value = file_digest(path)
    if cache is not None:
        try:
            cache.remember_digest(*key, value)
        except Exception:  # noqa: BLE001 - a read-only index only costs a re-read next time
            pass
    return value


def digests(paths: Iterable[Path], cwd: Path, cache: StatCache | None) -> dict[str, str]:
    return {display_path(p, cwd): digest(p, cache) for p in paths}


def current_digest(shown: str, cwd: Path, cache: StatCache | None) -> str | None:
    """The digest a recorded file has now; None if it is gone."""
    try:
        return digest(_resolve(shown, cwd), cache)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return None


def produced_outs(patterns: Sequence[str], cwd: Path) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        target = _resolve(pattern, cwd)
        if not target.exists():
            raise OutNotProduced(pattern)
        found.extend(_files_at(target))
    return found


# ---------------------------------------------------------------- implicit deps


def _excluded_roots(extra: Iterable[Path]) -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/dev", "/sys", "/usr/lib", "/usr/share", "/etc"}
    home = Path.home()
    # Tool caches and settings change on their own; a cell is not about them.
    roots |= {str(home / ".cache"), str(home / ".ipython"), str(home / ".jupyter"), str(home / ".local"), str(home / ".config")}
    for name in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        if os.environ.get(name):
            roots.add(os.environ[name])
    roots |= {str(p) for p in extra}
    return tuple(os.path.realpath(r).rstrip("/") + "/" for r in roots if r)


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class _Recording:
    def __init__(self) -> None:
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.thread = threading.get_ident()


_active: _Recording | None = None
_hook_installed = False


def _audit(event: str, args: tuple) -> None:
    # Called for every audit event in the process once installed: the inert path is one comparison.
    if event != "open" or _active is None:
        return
    recording = _active
    if threading.get_ident() != recording.thread:
        return
    path, mode, flags = args
    if isinstance(path, int) or path is None:
        return
    path = os.fsdecode(path)
    writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
    (recording.written if writes else recording.read).add(os.path.abspath(path))


class OpenRecorder:
    """Record the files a block opens for reading, in this thread, via ``sys.addaudithook``."""

    def __init__(self, exclude: Iterable[Path] = ()) -> None:
        self._exclude = _excluded_roots(exclude)
        self._recording: _Recording | None = None

    def __enter__(self) -> OpenRecorder:
        global _active, _hook_installed
        if not _hook_installed:
            sys.addaudithook(_audit)  # audit hooks cannot be removed, hence the inert global switch
            _hook_installed = True
        self._recording = _Recording()
        _active = self._recording
        return self

    def __exit__(self, *_: object) -> None:
        global _active
        _active = None

    def files_read(self) -> list[Path]:
        """Regular files read and not written by the block, outside the excluded roots."""
        assert self._recording is not None
        kept = []
        for path in sorted(self._recording.read - self._recording.written):
            real = os.path.realpath(path)
            if real.startswith(self._exclude) or path.endswith((".pyc", ".pyo")) or not os.path.isfile(path):
                continue
            kept.append(Path(path))
        return kept
