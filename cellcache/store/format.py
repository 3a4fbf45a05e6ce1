"""How values become bytes: joblib pickles, hashed while they are written.

This is the *format* axis (as in marimo's loaders); where the bytes live is
the store's business.

A blob is one joblib pickle stream. Arrays (and large Arrow buffers) are
written raw after their wrapper; those above ``MAP_THRESHOLD`` start on a page
boundary, so a restore can hand them out as views of a private (copy-on-write)
mapping of the blob instead of reading them into fresh memory::

    [pickle frames][wrapper][pad][array bytes, page aligned][pickle frames]...

Every load checks the bytes against the blob's xxh3 address before anything
is unpickled (issue 13.1). A mapped blob is hashed through the mapping (page
cache, then its page table entries are dropped again, so nothing stays
resident); a read one is hashed as it is read. ``verify=False`` (the user's
``verify_local = false``) skips the check, which makes a mapped hit O(1).
"""
from __future__ import annotations

import ctypes
import importlib
import io
import os
import pickle
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from cellcache.errors import EntryCorrupt
# The registry of mappings is the fingerprint's too: it tells an unwritten mapped array from a changed one.
from cellcache.fingerprint.mapped import MAP_THRESHOLD, drop_pages, libc, map_private
from cellcache.store.reducers import RENAMED, BufferReader, Unpickler

_JOBLIB_NAMES = frozenset({"PageAlignedArrayWrapper", "BundlePickler", "BundleUnpickler", "_ClassPickler", "_array_from"})



def _joblib() -> types.ModuleType:
    """The pickler and unpickler, built on joblib's: imported at the first dump or load, not with the extension.

    joblib (with numpy and its process pools) is most of what importing cellcache
    would cost, and a notebook may load the extension long before it stores an array.
    """
    from cellcache.store import _joblib_format

    return _joblib_format


def __getattr__(name: str) -> Any:
    # Blobs name the wrapper as cellcache.store.format.PageAlignedArrayWrapper: found here, on first use.
    if name in _JOBLIB_NAMES:
        return getattr(_joblib(), name)
    moved = RENAMED.get((__name__, name))
    if moved is not None:  # a class pickled by value (cloudpickle, not our unpickler) names the old place
        return getattr(importlib.import_module(moved[0]), moved[1])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# A blob bigger than this also gets the digest of each CHUNK of it, in its signed manifest, so a restore
# checks its chunks on every core (one xxh3 stream is bound by one core, not by memory). Part of the
# manifest's format: another size would misread every chunk list written before.
CHUNK = 16 << 20


class HashingWriter(io.RawIOBase):
    """A write-only file that digests everything passing through it."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self._hasher = xxhash.xxh3_128()
        self.size = 0
        self._chunk = xxhash.xxh3_128()
        self._chunks: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        self._hasher.update(view)
        self._target.write(view)
        rest = view
        while rest.nbytes:
            take = min(CHUNK - (self.size % CHUNK), rest.nbytes)
            self._chunk.update(rest[:take])
            self.size += take
            rest = rest[take:]
            if self.size % CHUNK == 0:
                self._chunks.append(self._chunk.hexdigest())
                self._chunk.reset()
        return view.nbytes

    def chunks(self) -> tuple[str, ...]:
        """The digest of each CHUNK of what was written, the last one short; () for a blob of one chunk."""
        if self.size <= CHUNK:
            return ()
        return (*self._chunks, self._chunk.hexdigest()) if self.size % CHUNK else tuple(self._chunks)

    def tell(self) -> int:
        # joblib aligns array data on the write position, which keeps blobs memory-mappable.
        return self.size

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()


# How a blob is read back: the loader axis, next to the store's place axis.
JOBLIB = "joblib"  # holds numpy arrays in joblib's layout (array bytes after their wrapper)
PICKLE = "pickle"  # no arrays: a plain pickle stream, which the C unpickler reads much faster


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    loader: str = JOBLIB
    chunks: tuple[str, ...] = ()  # the digest of each CHUNK, for a blob of more than one


def dump(value: Any, target: BinaryIO) -> BlobInfo:
    """Write ``value`` as a joblib pickle (readable by ``joblib.load``)."""
    writer = HashingWriter(target)
    pickler = _joblib().BundlePickler(writer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dump(value)
    return BlobInfo(writer.hexdigest(), writer.size, JOBLIB if pickler.arrays_written else PICKLE, writer.chunks())


# mapping ----------------------------------------------------------------------

# Filesystems where another machine can change or unlink a file under a mapping (which then
# faults with SIGBUS): NFS, SMB/CIFS, FUSE, Ceph, AFS, 9p, Coda, Lustre, GFS2, OCFS2.
NETWORK_FS_TYPES = frozenset(
    {0x6969, 0x517B, 0xFF534D42, 0xFE534D42, 0x65735546, 0x00C36400, 0x5346414F, 0x01021997, 0x73757245,
     0x0BD00BD0, 0x01161970, 0x7461636F, 0x564C}
)

def statfs_type(path: Path) -> int | None:
    """The filesystem's magic number (``statfs(2)`` ``f_type``), or None where it can't be asked."""
    if libc is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if libc.statfs(os.fsencode(path), buf) != 0:
        return None
    # f_type is the first field, a signed word; the magic numbers are unsigned 32-bit.
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


_mappable_devices: dict[int, bool] = {}


def can_map(path: Path, device: int) -> bool:
    """Map only where the bytes can't vanish under us: a local filesystem on Linux."""
    known = _mappable_devices.get(device)
    if known is None:
        kind = statfs_type(path)
        known = _mappable_devices[device] = kind is not None and kind not in NETWORK_FS_TYPES
    return known


def load(
    path: Path,
    loader: str = JOBLIB,
    digest: str | None = None,
    verify: bool = True,
    mapped: bool = True,
    chunks: tuple[str, ...] = (),
    size: int | None = None,
) -> Any:
    """Load a blob written by ``dump``, checking its bytes against ``digest`` (or its ``chunks``) first.

    ``digest`` defaults to the file's name, which is its content address in the
    store; ``chunks``, from a signed manifest, are checked instead where given,
    in parallel. A mismatch raises ``EntryCorrupt`` before a byte is unpickled.
    Large blobs on a local filesystem are mapped copy-on-write (``mapped``);
    elsewhere they are read.
    """
    from cellcache.store.atomic import NotRegularFile, open_regular

    expected = digest if digest is not None else path.name
    expected_size = size
    try:
        # Opened once, no link followed; the size is checked through this descriptor, and the bytes read through it.
        fd, info = open_regular(path)
    except (FileNotFoundError, NotADirectoryError):
        raise
    except NotRegularFile as exc:
        raise EntryCorrupt(f"blob {path.name} is {exc.what}; links and special files planted in the store are not followed") from exc
    except OSError as exc:
        raise EntryCorrupt(f"blob {path.name} cannot be opened: {exc}") from exc
    try:
        size = info.st_size
        if expected_size is not None and size != expected_size:
            raise EntryCorrupt(f"blob {path.name} content does not match its digest ({size} bytes, expected {expected_size})")
        mapping = (
            mapped and loader == JOBLIB and size >= MAP_THRESHOLD and libc is not None and can_map(path.parent, info.st_dev)
        )
        if mapping:
            buffer: Any = map_private(fd, size)
            if verify:
                _check(memoryview(buffer).cast("B"), expected, path, chunks)
                drop_pages(buffer)
        else:
            buffer = bytearray(size)
            view = memoryview(buffer)
            filled = 0
            while filled < size and (n := os.readv(fd, [view[filled:]])):
                filled += n
            if filled != size:
                raise EntryCorrupt(f"blob {path.name} ends after {filled} of {size} bytes")
            if verify:
                _check(view, expected, path, chunks)
    finally:
        os.close(fd)
    try:
        if loader == PICKLE:
            return Unpickler(BufferReader(buffer)).load()
        return _joblib().BundleUnpickler(str(path), BufferReader(buffer), mapping).load()
    except EntryCorrupt:
        raise
    except Exception as exc:  # unpickling a damaged file can raise almost anything
        raise EntryCorrupt(f"blob {path.name} cannot be read: {type(exc).__name__}: {exc}") from exc


def _check(view: memoryview, expected: str, path: Path, chunks: tuple[str, ...] = ()) -> None:
    if chunks:
        if len(chunks) != -(-len(view) // CHUNK) or _chunk_digests(view) != list(chunks):
            raise EntryCorrupt(f"blob {path.name} does not match its chunk digests (its content was altered or damaged)")
        return
    hasher = xxhash.xxh3_128()
    for start in range(0, len(view), CHUNK):
        hasher.update(view[start : start + CHUNK])
    if hasher.hexdigest() != expected:
        raise EntryCorrupt(f"blob {path.name} does not match its digest (its content was altered or damaged)")


_POOL: list[Any] = []  # the chunk checkers' threads, made on first use
if hasattr(os, "register_at_fork"):
    # A forked child (a write-behind snapshot) has none of its parent's threads: it makes its own pool.
    os.register_at_fork(after_in_child=_POOL.clear)


def _chunk_digests(view: memoryview) -> list[str]:
    """The digest of each CHUNK of ``view``, on a thread per core (xxhash lets go of the GIL)."""
    parts = [view[start : start + CHUNK] for start in range(0, len(view), CHUNK)]
    workers = min(len(parts), os.cpu_count() or 1, 8)
    if workers < 2:
        return [xxhash.xxh3_128_hexdigest(part) for part in parts]
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8), thread_name_prefix="cellcache-check"))
    return list(_POOL[0].map(xxhash.xxh3_128_hexdigest, parts))


def file_digest(path: Path, chunk: int = 1 << 24) -> str:
    hasher = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            hasher.update(block)
    return hasher.hexdigest()


def first_unpicklable(values: dict[str, Any]) -> tuple[str, Exception] | None:
    """Name the value that stops the bundle from pickling (only called after a failure)."""
    return next(iter(unpicklable(values).items()), None)


class _Sink(io.RawIOBase):
    """Counts what a pickler writes and keeps none of it: a trial dump of a big value costs no memory."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # type: ignore[override]
        return memoryview(data).nbytes


def unpicklable(values: dict[str, Any]) -> dict[str, Exception]:
    """Every value that can't be pickled, with why (only called after a failure: it dumps each value again)."""
    found = {}
    for name, value in values.items():
        try:
            _joblib().BundlePickler(_Sink(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        except Exception as exc:  # noqa: BLE001 - anything a reducer raises means "not this one"
            found[name] = exc
    return found
