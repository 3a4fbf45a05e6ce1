"""A big miss written from a copy-on-write snapshot of the process, so the cell need not hash its outputs.

Write-behind needs the outputs as the cell left them: a later cell may
mutate them before they are written. The thread route takes their digests
when the cell ends, on the user's thread, which for 1 GiB is a 100 ms pass
over memory. Here the cell's end is a ``fork()`` instead (a few ms: the
kernel copies page tables, not pages). The child is the snapshot: it
fingerprints the outputs, writes and reads back the blob exactly as the
thread route does, reports the blob through a pipe, and exits; the parent's
writer thread commits the manifest. A page the user writes meanwhile is
copied for the parent alone, so the child can only ever store what the cell
produced.

The child starts writing only when the writer thread tells it to, so blobs
are still written one entry at a time, in the order the cells ended.

Only on Linux (fork without exec is unsafe on macOS, absent on Windows), and
only for outputs made of plain memory: numpy, pandas, pyarrow and builtin
values. Pickling anything else in a child could reach a GPU context, a
socket or a lock held by a thread the child does not have. Anything else,
or a fork the system refuses, takes the thread route.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from cellcache.store import writers

FORK_AT = 64 << 20  # below this, hashing on the user's thread costs less than a fork (~3 ms)

_PLAIN_PACKAGES = frozenset({"numpy", "pandas", "pyarrow"})
_ATOMS = (str, bytes, int, float, complex, bool, type(None))
_CONTAINER_LIMIT = 10_000  # elements a builtin container may hold and still be checked one by one


@dataclass(frozen=True)
class Child:
    """A forked writer: its pid, the pipe that starts it and the pipe it answers on."""

    pid: int
    go: int
    answer: int


def available() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def forkable(values: dict[str, Any], nbytes: int) -> bool:
    """Whether these outputs are worth a fork and safe to pickle in one."""
    if nbytes < FORK_AT or not available():
        return False
    budget = [_CONTAINER_LIMIT]
    return all(_plain(value, budget) for value in values.values())


def _plain(value: Any, budget: list[int]) -> bool:
    if isinstance(value, _ATOMS) and type(value).__module__ == "builtins" or type(value) is ModuleType:
        return True  # a module (`import numpy as np` binds one) is stored by its name
    kind = type(value)
    if kind in (list, tuple, set, frozenset, dict):
        items = [*value.keys(), *value.values()] if kind is dict else list(value)
        budget[0] -= len(items)
        return budget[0] >= 0 and all(_plain(item, budget) for item in items)
    if kind.__module__.partition(".")[0] not in _PLAIN_PACKAGES:
        return False
    # An object array holds arbitrary Python objects; pandas' object columns are strings in practice.
    return getattr(getattr(value, "dtype", None), "kind", None) != "O" or kind.__module__.startswith("pandas")


def fork(work: Callable[[], dict[str, Any]]) -> Child | None:
    """Fork a child that runs ``work`` once told to go and answers with its JSON result; None if fork fails."""
    go_read, go_write = os.pipe()
    answer_read, answer_write = os.pipe()
    # SIGINT is blocked across the fork: the child must not die of an interrupt before it ignores them, and the
    # parent's interrupt (held for those few ms) must not strand a child nobody will tell to go or reap.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork in a threaded process: this child runs no thread's code, only `work`.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:  # ENOMEM under strict overcommit, EAGAIN at a process limit: the thread route
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in (go_read, go_write, answer_read, answer_write):
            os.close(fd)
        return None
    if pid == 0:  # pragma: no cover - the child; its effects are what the tests check
        status = 1
        try:
            os.close(go_write)
            os.close(answer_read)
            _child(work, go_read, answer_write, mask)
            status = 0
        finally:
            os._exit(status)  # never back into the kernel's code, its atexit hooks or finalizers
    os.close(go_read)
    os.close(answer_write)
    child = Child(pid, go_write, answer_read)
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # an interrupt held meanwhile is raised here
    except BaseException:
        abandon(child)
        raise
    return child


def abandon(child: Child) -> None:
    """Send a child that will never be told to go away: it reads the end of its pipe, exits, and is reaped."""
    for fd in (child.go, child.answer):
        try:
            os.close(fd)
        except OSError:
            pass
    _reap(child.pid)


def _child(work: Callable[[], dict[str, Any]], go: int, answer: int, mask: Any) -> None:  # pragma: no cover - runs in the child
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel's interrupt goes to its process group
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    except ValueError:
        pass  # forked from a thread other than the main one: SIGINT stays blocked, which serves as well
    gc.disable()  # no finalizer of the parent's objects runs here
    _close_inherited(keep=(go, answer, *writers.held_fds()))  # the store's writer lock: what the child writes is owned
    sys.stdout = sys.stderr = open(1, "w", closefd=False)  # /dev/null now; ipykernel's streams need threads the child lacks
    warnings.simplefilter("ignore")
    if os.read(go, 1) != b"g":
        return  # the parent went away before this entry's turn
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 - the parent turns it into the step's one warning
        result = {"failed": f"{type(exc).__name__}: {exc}"}
    data = json.dumps(result).encode()
    while data:
        data = data[os.write(answer, data):]


def _close_inherited(keep: tuple[int, ...]) -> None:  # pragma: no cover - runs in the child
    """Let go of the kernel's sockets and files: a restarted kernel must be able to bind its ports again."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)  # one close_range(2) call where the kernel has it
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def wait(child: Child) -> dict[str, Any]:
    """Start the child, wait for its answer and for its end; the answer, or {"failed": why}."""
    chunks = []
    try:
        try:
            os.write(child.go, b"g")
        except BrokenPipeError:
            pass  # it died before its turn: its answer is missing, said below
        while chunk := os.read(child.answer, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(child.go)
        os.close(child.answer)
        status = _reap(child.pid)
    if not chunks:
        return {"failed": f"its writer process ended without an answer ({status})"}
    try:
        answer = json.loads(b"".join(chunks))
    except ValueError:
        return {"failed": f"its writer process gave a garbled answer ({status})"}
    return answer if isinstance(answer, dict) else {"failed": "its writer process gave a garbled answer"}


def _reap(pid: int) -> str:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "reaped elsewhere"  # someone else's waitpid(-1); the answer pipe still tells what happened
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
