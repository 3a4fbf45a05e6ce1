"""A remote that is slow but alive is used, not dropped (issue 23.6); a dead or silent one is still found at once
(``test_faults``).

The server is moto behind a throttling proxy on 127.0.0.1: each response starts
later than the configured timeout and then trickles, the way a loaded machine
serves a blob. The connect timeout stays short; the read timeout follows
progress, so a transfer that keeps moving is not declared dead.
"""
from __future__ import annotations

import cellcache

import socket
import threading
import time
from pathlib import Path

import pytest

from cellcache.cell import reasons
from .test_tiered import ci_pushes, env_for, run_cell

CELL = "%%cached gen\nx = bytes(range(256)) * (n * 1024)\n"  # n = 3: a 768 KB value


class ThrottlingProxy:
    """Forwards TCP to ``target``; every response waits ``first`` seconds, then comes in ``piece``-byte pieces ``gap`` apart."""

    def __init__(self, target: int, first: float, piece: int, gap: float) -> None:
        self.target, self.first, self.piece, self.gap = target, first, piece, gap
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.moved = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            asked = threading.Event()  # a request went up: the next bytes down start a response
            threading.Thread(target=self._pipe, args=(client, upstream, False, asked), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True, asked), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, slow: bool, asked: threading.Event) -> None:
        try:
            while data := src.recv(1 << 16):
                if not slow:
                    asked.set()
                else:
                    if asked.is_set():
                        asked.clear()
                        time.sleep(self.first)
                    for at in range(0, len(data), self.piece):
                        dst.sendall(data[at : at + self.piece])
                        self.moved += len(data[at : at + self.piece])
                        time.sleep(self.gap)
                if not slow:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.server.close()


@pytest.mark.timeout(120)
def test_a_slow_but_alive_server_is_used(make_shell, tmp_path: Path, s3, signer, monkeypatch) -> None:
    ci_pushes(make_shell, tmp_path, s3, signer)
    sh = make_shell(tmp_path / "ci-big", **env_for(s3, signer, trusted=[signer]))
    sh.user_ns["n"] = 3
    run, _ = run_cell(sh, CELL)
    from cellcache.remote import commands as remote_ops
    from cellcache.config import resolve

    assert len(remote_ops.push(resolve(), cellcache.api.session(sh).store.local).pushed) == 1
    # Every answer starts 1.6 s late with a 1 s timeout, then moves 128 KB every 0.5 s: slow, never stalled for long.
    proxy = ThrottlingProxy(s3.port, first=1.6, piece=128 << 10, gap=0.5)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
        laptop = make_shell(tmp_path / "laptop-store", **env_for(s3, trusted=[signer], CELLCACHE_REMOTE_TIMEOUT="1s"))
        laptop.user_ns["n"] = 3
        started = time.monotonic()
        run, caught = run_cell(laptop, CELL)
        took = time.monotonic() - started
    finally:
        proxy.close()
    print(f"\nslow remote: {run.status} in {took:.1f} s, {proxy.moved} bytes through the proxy; warnings: {caught}")
    assert caught == [], "a slow but alive remote was declared unavailable"
    assert run.status == "hit" and run.reason.startswith(reasons.HIT_REMOTE)
    assert laptop.user_ns["x"] == bytes(range(256)) * 3072
    assert proxy.moved > 700_000
