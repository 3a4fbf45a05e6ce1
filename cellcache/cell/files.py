"""Files in the key: declared deps, declared outs, and files a cell reads.

Digests go through a stat cache keyed by (path, size, change time, inode),
so an unchanged large file is never read twice. Implicit deps are seen
through an audit hook that is installed once and stays inert outside a
missed cell: the files the cell (and the threads it starts) open for
reading, the folders it lists and the glob patterns it matches, and the
existing files its string literals and string inputs name, which native
readers (pyarrow, h5py) open where the hook can't see.
"""
from __future__ import annotations

import functools
import glob
import os
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence, Union

import xxhash

from cellcache.errors import DepNotFound, OutNotProduced

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
    # The change time too: a rewrite that puts size and mtime back (os.utime,
    # rsync -t, a restore) still moves ctime, which no user call can set.
    changed = max(st.st_mtime_ns, st.st_ctime_ns)
    key = (str(path), st.st_size, changed, st.st_ino)
    if cache is not None:
        known = cache.cached_digest(*key)
        if known is not None:
            return known
    from cellcache.store.format import file_digest  # not at the top: the extension's load path imports this module

    value = file_digest(path)
    if cache is not None:
        try:
            cache.remember_digest(*key, value)
        except Exception:  # noqa: BLE001 - a read-only index only costs a re-read next time
            pass
    return value


class Listing:
    """A folder listing or a glob match set the cell made: an implicit dep on the names it saw."""

    DIR, GLOB = "dir ", "glob "  # how a listing is shown among the implicit files of a manifest

    def __init__(self, kind: str, target: str, recursive: bool = False) -> None:
        self.kind, self.target, self.recursive = kind, target, recursive

    def shown(self, cwd: Path) -> str:
        return self.kind + display_path(Path(self.target), cwd) + ("**" if self.recursive and self.kind == self.DIR else "")

    @classmethod
    def parse(cls, shown: str, cwd: Path) -> Listing | None:
        for kind in (cls.DIR, cls.GLOB):
            if shown.startswith(kind):
                target = shown[len(kind):]
                return cls(kind, str(_resolve(target, cwd)), recursive="**" in target)
        return None

    def digest(self) -> str:
        if self.kind == self.DIR:
            names = sorted(os.listdir(self.target))
        else:
            names = sorted(glob.glob(self.target, recursive=self.recursive))
        return xxhash.xxh3_128_hexdigest("\0".join(names).encode("utf-8", "surrogateescape"))


Dep = Union[Path, Listing]


def digests(paths: Iterable[Dep], cwd: Path, cache: StatCache | None) -> dict[str, str]:
    found = {}
    for p in paths:
        if isinstance(p, Listing):
            try:
                found[p.shown(cwd)] = p.digest()
            except OSError:
                continue  # listed, then removed by the cell: nothing to depend on
        else:
            found[display_path(p, cwd)] = digest(p, cache)
    return found


def current_digest(shown: str, cwd: Path, cache: StatCache | None) -> str | None:
    """The digest a recorded file (or listing) has now; None if it is gone."""
    try:
        listing = Listing.parse(shown, cwd)
        if listing is not None:
            return listing.digest()
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


_ROOT_ENV = ("HOME", "XDG_CACHE_HOME", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR", "NUMBA_CACHE_DIR")


def _excluded_roots(extra: Iterable[Path]) -> tuple[str, ...]:
    # Every miss opens a recorder; the roots depend only on these variables, and a realpath each costs ~5 ms a miss.
    return _excluded_roots_for(tuple(str(p) for p in extra), tuple(os.environ.get(n) for n in _ROOT_ENV))


@functools.lru_cache(maxsize=16)
def _excluded_roots_for(extra: tuple[str, ...], _env: tuple[str | None, ...]) -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/dev", "/sys", "/usr/lib", "/usr/share", "/etc"}
    home = Path.home()
    # Tool caches and settings change on their own; a cell is not about them. Only named
    # ones: the rest of ~/.cache often holds data sets (huggingface, torch hub, pooch...).
    roots |= {str(home / ".ipython"), str(home / ".jupyter"), str(home / ".local"), str(home / ".config")}
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache")
    roots |= {str(cache_home / tool) for tool in _TOOL_CACHES}
    for name in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "MPLCONFIGDIR", "NUMBA_CACHE_DIR"):
        if os.environ.get(name):
            roots.add(os.environ[name])
    roots |= {str(p) for p in extra}
    return tuple(os.path.realpath(r).rstrip("/") + "/" for r in roots if r)


_TOOL_CACHES = (
    "matplotlib", "fontconfig", "pip", "numba", "ipython", "jedi", "pypoetry", "uv", "black", "mypy", "ruff",
    "pre-commit", "mesa_shader_cache", "pycache", "typeshed", "yarn", "node-gyp", "ms-playwright", "thumbnails",
)  # fmt: skip
_LIST_EVENTS = frozenset({"os.listdir", "os.scandir"})
_GLOB_EVENTS = frozenset({"glob.glob", "glob.glob/2", "pathlib.Path.glob", "pathlib.Path.rglob"})

# The events auto mode's watch is given: side effects a hit would skip (see cellcache.cell.watch).
WATCHED_EVENTS = frozenset({
    "socket.connect", "socket.sendto", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
    "os.fork", "os.forkpty", "os.startfile", "os.remove", "os.rename", "os.rmdir", "shutil.rmtree",
})  # fmt: skip

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_UPDATE_FLAGS = os.O_APPEND | os.O_RDWR


class _Recording:
    def __init__(self) -> None:
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.updated: set[str] = set()  # written in place (append, read-write): the result depends on what was there
        self.listed: set[str] = set()
        self.globs: set[tuple[str, bool]] = set()
        self.thread = threading.get_ident()
        # Threads alive before the cell (the kernel's own: heartbeat, history, iopub) are not the
        # cell's; any thread started while it runs is (ThreadPoolExecutor, joblib's threading backend).
        self.foreign = {t.ident for t in threading.enumerate()} - {self.thread}
        # Auto mode's side-effect watch (cellcache.cell.watch): the other events it wants, from the same threads.
        self.watch: Callable[[str, tuple], None] | None = None


_active: _Recording | None = None
# A batch run's record of the whole notebook (cellcache.batch.trace), fed beside the cell's own.
_whole: _Recording | None = None
_hook_installed = False
# Files each local module read while it was imported (module name -> paths), seen in any cell,
# cached or not: a cell using the module depends on them even when it did not do the import.
_import_reads: dict[str, set[str]] = {}
_watching_imports = False


def _audit(event: str, args: tuple) -> None:
    # Called for every audit event in the process once installed: the inert path is one comparison.
    if _active is None:
        if _watching_imports and event == "open":
            _note_import_read(args)
        if _whole is None:
            return
    else:
        _record(_active, event, args)
    if _whole is not None:
        _record(_whole, event, args)


def _record(recording: _Recording, event: str, args: tuple) -> None:
    if event != "open":
        if event in _LIST_EVENTS or event in _GLOB_EVENTS:
            _listing(recording, event, args)
        elif recording.watch is not None and event in WATCHED_EVENTS and threading.get_ident() not in recording.foreign:
            recording.watch(event, args)
        return
    if threading.get_ident() in recording.foreign:
        return
    path, mode, flags = args
    if isinstance(path, int) or path is None:
        return
    path = os.fsdecode(path)
    writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
    (recording.written if writes else recording.read).add(os.path.abspath(path))
    if writes and (("a" in mode or ("+" in mode and "r" in mode)) if isinstance(mode, str) else bool((flags or 0) & _UPDATE_FLAGS) and not (flags or 0) & os.O_TRUNC):
        recording.updated.add(os.path.abspath(path))


def _note_import_read(args: tuple) -> None:
    path, mode, flags = args
    if isinstance(path, int) or path is None:
        return
    writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _WRITE_FLAGS)
    path = os.fsdecode(path)
    if writes or path.endswith((".py", ".pyc", ".pyo", ".so")):
        return
    frame = sys._getframe(2)
    for _ in range(64):  # the innermost module body running: the module being imported
        if frame is None:
            return
        if frame.f_code.co_name == "<module>":
            name = frame.f_globals.get("__name__")
            origin = frame.f_globals.get("__file__")
            if isinstance(name, str) and name != "__main__" and isinstance(origin, str) and _is_local(origin):
                _import_reads.setdefault(name, set()).add(os.path.abspath(path))
            return
        frame = frame.f_back


def _is_local(path: str) -> bool:
    from cellcache.fingerprint import is_local_module_file

    return is_local_module_file(path)


def watch_imports(on: bool = True) -> None:
    """Record, from now on, the files local modules read while they are imported."""
    global _watching_imports, _hook_installed
    if on and not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    _watching_imports = on


def import_reads(modules: Iterable[str]) -> list[str]:
    """Files read at import time by these modules, their submodules and their packages."""
    wanted = tuple(modules)
    found: set[str] = set()
    for name, paths in list(_import_reads.items()):
        if any(name == m or name.startswith(m + ".") or m.startswith(name + ".") for m in wanted):
            found |= paths
    return sorted(found)


# The import system lists every folder on sys.path (the notebook's too) to find a module, and
# importlib.metadata lists them to find distributions: those listings are no dependency of the cell.
_IMPORT_MACHINERY = (
    "importlib._bootstrap", "importlib.metadata", "importlib_metadata", "pkgutil", "pkg_resources", "zipimport",
)  # fmt: skip


def _by_import_system() -> bool:
    frame = sys._getframe(3)  # past _by_import_system, _listing and _audit: the code that listed
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(_IMPORT_MACHINERY):
            return True
        frame = frame.f_back
    return False


def _listing(recording: _Recording, event: str, args: tuple) -> None:
    if threading.get_ident() in recording.foreign:
        return
    if event in _LIST_EVENTS:
        path = args[0]
        if isinstance(path, int) or _by_import_system():
            return
        recording.listed.add(os.path.abspath(os.fsdecode(path if path is not None else ".")))
    elif event.startswith("pathlib"):
        recording.globs.add((os.path.abspath(os.path.join(os.fsdecode(args[0]), args[1])), event.endswith("rglob") or "**" in args[1]))
    else:
        pattern, recursive = args[0], bool(args[1])
        root = args[2] if len(args) > 2 and args[2] is not None else None
        if isinstance(pattern, (str, bytes)):
            pattern = os.fsdecode(pattern)
            recording.globs.add((os.path.abspath(os.path.join(os.fsdecode(root), pattern) if root else pattern), recursive))


class OpenRecorder:
    """Record the files a block opens for reading, in this thread, via ``sys.addaudithook``."""

    def __init__(self, exclude: Iterable[Path] = (), watch: Callable[[str, tuple], None] | None = None, whole: bool = False) -> None:
        """``whole``: a recording of everything from here on, beside the cells' own (a batch run's notebook)."""
        self._exclude = _excluded_roots(exclude)
        self._recording: _Recording | None = None
        self._watch = watch
        self._whole = whole

    def __enter__(self) -> OpenRecorder:
        global _active, _whole, _hook_installed
        if not _hook_installed:
            sys.addaudithook(_audit)  # audit hooks cannot be removed, hence the inert global switch
            _hook_installed = True
        self._recording = _Recording()
        self._recording.watch = self._watch
        if self._whole:
            _whole = self._recording
        else:
            _active = self._recording
        return self

    def __exit__(self, *_: object) -> None:
        global _active, _whole
        if self._whole:
            _whole = None
        else:
            _active = None

    def files_read(self, named: Iterable[object] = ()) -> list[Dep]:
        """Regular files read and not written by the block, outside the excluded roots; then its listings.

        ``named``: strings (and paths) the cell holds. Those that name an
        existing file it did not write count as read: a native reader opens
        them where the hook can't see.
        """
        assert self._recording is not None
        recording = self._recording
        candidates = set(recording.read)
        for value in named:
            if isinstance(value, (str, os.PathLike)):
                try:
                    if os.path.isfile(value):
                        candidates.add(os.path.abspath(value))
                except (OSError, ValueError, TypeError):
                    continue
        kept: list[Dep] = []
        # Sources of loaded modules are keyed as modules (as imported, see fingerprint.modules):
        # as files they would key the source on disk, which is not the code that runs.
        sources = {os.path.abspath(f) for m in list(sys.modules.values()) if isinstance(f := getattr(m, "__file__", None), str)}
        for path in sorted(candidates - recording.written - sources):
            if path.endswith((".pyc", ".pyo")) or self._excluded(path) or not os.path.isfile(path):
                continue
            kept.append(Path(path))
        globbed = [(pattern, recursive) for pattern, recursive in sorted(recording.globs) if not self._excluded(pattern)]
        bases = [_glob_base(pattern) for pattern, _ in globbed]
        for folder in sorted(recording.listed):
            # a glob lists the folders it walks: the match set is the dep, not every name there
            if self._excluded(folder) or not os.path.isdir(folder) or any(_within(folder, base) for base in bases):
                continue
            kept.append(Listing(Listing.DIR, folder))
        kept.extend(Listing(Listing.GLOB, pattern, recursive) for pattern, recursive in globbed)
        return kept

    def files_written(self) -> list[str]:
        """Absolute paths the block opened for writing, outside the excluded roots (tool caches, the store)."""
        assert self._recording is not None
        return sorted(p for p in self._recording.written if not self._excluded(p))

    def files_updated(self) -> list[str]:
        """Of those, the files written in place (appended to, opened read-write), not replaced."""
        assert self._recording is not None
        return sorted(p for p in self._recording.updated if not self._excluded(p))

    def excluded(self, path: str) -> bool:
        return self._excluded(path)

    def _excluded(self, path: str) -> bool:
        real = _realpath(path)
        return real.startswith(self._exclude) or real + "/" in self._exclude


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _realpath(path: str) -> str:
    """os.path.realpath, with each folder resolved once: a run's trace checks thousands of files in a few hundred folders."""
    folder, name = os.path.split(os.path.abspath(path))
    joined = os.path.join(_real_folder(folder), name)
    return os.path.realpath(joined) if os.path.islink(joined) else joined


def _glob_base(pattern: str) -> str:
    """The folder a glob pattern starts matching in: its longest prefix without magic characters."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or os.sep


def _within(folder: str, base: str) -> bool:
    return folder == base or folder.startswith(base.rstrip(os.sep) + os.sep)
