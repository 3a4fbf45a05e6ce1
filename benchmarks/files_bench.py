"""File deps: ratios against baselines measured in the same run.

    python benchmarks/files_bench.py [--quick]

1. A hit whose --deps is an unchanged 2 GiB file / the same hit with no deps
   (bar: < 2x; the stat cache means the file is not read).
2. The audit hook's cost on open(): installed but inert (outside a cached
   cell), and recording (inside a missed cell), each / no hook at all. Audit
   hooks cannot be removed, so each variant runs in its own interpreter.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import cell, expect_hit, make_shell, median  # noqa: E402

HOOK_PROBE = textwrap.dedent(
    """
    import os, sys, time
    from cellcache.cell import files
    mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    recorder = None
    if mode in ("inert", "recording"):
        with files.OpenRecorder():
            pass                      # installs the hook, then leaves it inert
    if mode == "recording":
        recorder = files.OpenRecorder().__enter__()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            with open(path, "rb") as f:
                f.read(1)
        best = min(best, time.perf_counter() - start)
    print(best / n)
    """
)


def write_big(path: Path, size: int) -> None:
    block = os.urandom(1 << 24)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    size = (1 << 26) if args.quick else (2 << 30)
    repeat = 20 if args.quick else 50
    with tempfile.TemporaryDirectory(prefix="cellcache-files-bench-") as tmp_name:
        tmp = Path(tmp_name)
        home = os.getcwd()
        os.chdir(tmp)
        try:
            write_big(tmp / "big.bin", size)
            shell = make_shell(tmp / "store")
            cell(shell, "%%cached nodeps\nv = 1")
            cell(shell, "%%cached withdep -d big.bin\nv = 1")
            no_deps = median(lambda: cell(shell, "%%cached nodeps\nv = 1"), repeat)
            expect_hit(shell)
            with_dep = median(lambda: cell(shell, "%%cached withdep -d big.bin\nv = 1"), repeat)
            expect_hit(shell)
            ratio = with_dep / no_deps
            print(
                f"hit with an unchanged {size / 2**30:.2f} GiB dep / hit with no deps: {ratio:.2f}x "
                f"(bar < 2x, {'ok' if ratio < 2 else 'OVER BAR'}); {with_dep*1e3:.2f} ms vs {no_deps*1e3:.2f} ms"
            )
            probe = tmp / "probe.txt"
            probe.write_text("x")
            n = "20000" if args.quick else "100000"
            per_open = {
                mode: float(subprocess.run([sys.executable, "-c", HOOK_PROBE, mode, str(probe), n], check=True, capture_output=True, text=True).stdout)
                for mode in ("none", "inert", "recording")
            }
            for mode in ("inert", "recording"):
                print(
                    f"open()+read+close with the audit hook {mode} / no hook: {per_open[mode] / per_open['none']:.3f}x "
                    f"({per_open[mode]*1e6:.2f} us vs {per_open['none']*1e6:.2f} us per open)"
                )
        finally:
            os.chdir(home)  # the shell's atexit needs a working directory that still exists
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
