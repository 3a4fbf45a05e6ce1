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
import functools
import io
import marshal
import mmap
import os
import pickle
import sys
import types
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from cellcache.errors import EntryCorrupt

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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Arrays and Arrow buffers at least this big are page aligned in the blob and restored mapped.
MAP_THRESHOLD = 1 << 20
PAGE = mmap.PAGESIZE
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


def _defined_in_notebook(obj: Any) -> bool:
    return getattr(obj, "__module__", None) == "__main__"


def _rebuild_function(
    code: bytes, name: str, qualname: str, defaults: Any, kwdefaults: Any, closure: tuple, attrs: dict
) -> types.FunctionType:
    # The notebook's namespace is __main__'s, in a kernel as in a script: a restored function
    # reads the live globals, exactly as the function the cell defined did.
    namespace = vars(sys.modules["__main__"])
    cells = tuple(types.CellType(v) for v in closure)
    fn = types.FunctionType(marshal.loads(code), namespace, name, defaults, cells or None)
    fn.__qualname__, fn.__kwdefaults__ = qualname, kwdefaults
    fn.__dict__.update(attrs)
    return fn


def _live_or_rebuilt(qualname: str, digest: bytes, rebuild: Any, args: tuple) -> Any:
    """The notebook's live function or class of that name if it still has the code it was stored with; else a copy.

    After Restart & Run All, or a re-run of the class's cell, the live class
    is a new object with the same code: restoring by reference to it keeps
    ``isinstance`` and ``==`` working against objects made by later cells.
    A changed or missing definition gets the stored copy, by value.
    """
    from cellcache.fingerprint import fingerprint

    live: Any = sys.modules["__main__"]
    for part in qualname.split("."):
        live = getattr(live, part, None)
    if live is not None:
        try:
            if fingerprint(live) == digest:
                return live
        except Exception:  # noqa: BLE001 - no digest for the live object: the stored copy is the safe answer
            pass
    return rebuild(*args)


def _by_reference(obj: Any, rebuild: Any, args: tuple) -> tuple[Any, tuple]:
    """A reduce value: by reference to ``__main__`` when ``obj`` is the live object there, by value otherwise."""
    from cellcache.fingerprint import fingerprint

    live: Any = sys.modules.get("__main__")
    for part in obj.__qualname__.split("."):
        live = getattr(live, part, None)
    if live is obj:
        try:
            return _live_or_rebuilt, (obj.__qualname__, fingerprint(obj), rebuild, args)
        except Exception:  # noqa: BLE001 - no digest: by value only
            pass
    return rebuild, args


def _cached_property(func: Any, attrname: str | None, doc: str | None) -> Any:
    prop = functools.cached_property(func)
    prop.attrname, prop.__doc__ = attrname, doc
    return prop


def _class_by_value(cls: type) -> bytes:
    buffer = io.BytesIO()
    _joblib()._ClassPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(cls)
    return buffer.getvalue()


def _rebuild_subclass(cls: type, data: Any, attrs: dict) -> Any:
    """An ndarray subclass with its instance attributes, which numpy's own pickling drops."""
    array = data.view(cls)
    array.__dict__.update(attrs)
    return array


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

_libc: Any = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mmap.restype = ctypes.c_void_p
        _libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
        _libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _libc.statfs.argtypes = (ctypes.c_char_p, ctypes.c_void_p)
    except (OSError, AttributeError):  # pragma: no cover - a libc without these: read instead
        _libc = None


def statfs_type(path: Path) -> int | None:
    """The filesystem's magic number (``statfs(2)`` ``f_type``), or None where it can't be asked."""
    if _libc is None:
        return None
    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc.statfs(os.fsencode(path), buf) != 0:
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


_MAPPINGS: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _map_private(fd: int, size: int) -> Any:
    """A copy-on-write mapping of the whole file, unmapped when the last view of it goes.

    Through libc rather than the mmap module: an ``mmap.mmap`` keeps a duplicate of
    the file descriptor open as long as it lives, so a notebook holding many restored
    arrays would run out of descriptors. The mapping itself needs no descriptor.
    """
    address = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    region = (ctypes.c_ubyte * size).from_address(address)
    weakref.finalize(region, _libc.munmap, address, size)
    _MAPPINGS[address] = region
    return region


def mapping_of(array: Any) -> tuple[int, int] | None:
    """(start, end) addresses of the cellcache mapping an array's data lies in, or None."""
    base = array
    while base is not None and not isinstance(base, ctypes.Array):
        base = getattr(base, "base", None)
    if base is None:
        return None
    start = ctypes.addressof(base)
    if _MAPPINGS.get(start) is not base:
        return None
    return start, start + ctypes.sizeof(base)


def _drop_pages(region: Any) -> None:
    # The hash faulted every page in as our resident memory; the page cache keeps them, we don't
    # need to. Untouched private pages are the file's, so dropping them loses nothing.
    _libc.madvise(ctypes.addressof(region), ctypes.sizeof(region), mmap.MADV_DONTNEED)


class _BufferReader:
    """A read-only file over a buffer (the mapping, or the bytes read): what the unpicklers need."""

    def __init__(self, buffer: Any) -> None:
        self.owner = buffer
        self.view = memoryview(buffer).cast("B")
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.view) if n is None or n < 0 else min(self.pos + n, len(self.view))
        data = self.view[self.pos : end].tobytes()
        self.pos = end
        return data

    def readinto(self, target: Any) -> int:
        out = memoryview(target).cast("B")
        n = min(len(out), len(self.view) - self.pos)
        out[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n

    def readline(self) -> bytes:
        end = bytes(self.view[self.pos : self.pos + 4096]).find(b"\n")
        if end < 0:
            return self.read()
        return self.read(end + 1)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.pos = offset if whence == os.SEEK_SET else self.pos + offset if whence == os.SEEK_CUR else len(self.view) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


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
            mapped and loader == JOBLIB and size >= MAP_THRESHOLD and _libc is not None and can_map(path.parent, info.st_dev)
        )
        if mapping:
            buffer: Any = _map_private(fd, size)
            if verify:
                _check(memoryview(buffer).cast("B"), expected, path, chunks)
                _drop_pages(buffer)
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
            return pickle.loads(buffer)
        return _joblib().BundleUnpickler(str(path), _BufferReader(buffer), mapping).load()
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
    for name, value in values.items():
        try:
            _joblib().BundlePickler(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        except Exception as exc:
            return name, exc
    return None
