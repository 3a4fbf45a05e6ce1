"""The public surface: determinism across processes, lazy imports, describe()."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cellcache.fingerprint as fp
from cellcache.fingerprint import describe, fingerprint

from tests.fingerprint.helpers import define


# --------------------------------------------------------------------------
# Determinism across processes and PYTHONHASHSEED


SCRIPT = """
import numpy as np
import pandas as pd

SCALE = 3

def helper(x):
    return x * SCALE

def f(x, k=2):
    return helper(x) + k + len({"alpha", "beta"})

def even(n):
    return n == 0 or odd(n - 1)

def odd(n):
    return n != 0 and even(n - 1)

class Point:
    kinds = {"a", "b", "c"}
    def __init__(self, x, y):
        self.x, self.y = x, y
        self.tags = {"t1", "t2", "t3"}
    def norm(self):
        return abs(self.x) + abs(helper(self.y))

VALUES = {
    "strings": {"alpha", "beta", "gamma", "delta", "epsilon"},
    "nested": {"k": frozenset({"x", "y", "z"}), "l": [{"p", "q"}, ("r", {"s", "t"})]},
    "dict": {"a": 1, "b": [2.5, None, "c"], "d": {"e": b"f"}},
    "function": f,
    "lambda": lambda s: s.upper() in {"A", "B"},
    "class": Point,
    "instance": Point(1, 2),
    "frame": pd.DataFrame(
        {
            "s": pd.Series(["u%d" % i for i in range(100)], dtype=object),
            "t": pd.Series(["v%d" % i for i in range(100)], dtype="str"),
            "n": np.arange(100),
            "c": pd.Categorical(["a", "b"] * 50),
        }
    ),
    "array": np.arange(10.0).reshape(2, 5).T,
    "recursive_set": {even, odd},
}
"""


def digests_of(namespace: dict[str, Any]) -> dict[str, str]:
    return {name: fingerprint(value).hex() for name, value in namespace["VALUES"].items()}


def test_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    script = tmp_path / "values.py"
    script.write_text(
        SCRIPT
        + "\nimport json\nfrom cellcache.fingerprint import fingerprint\n"
        + "print(json.dumps({k: fingerprint(v).hex() for k, v in VALUES.items()}))\n"
    )
    in_process = digests_of(define(SCRIPT))
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
        )
        assert json.loads(done.stdout) == in_process, seed


IPYTHON_SCRIPT = """
import json
from IPython.core.interactiveshell import InteractiveShell
from cellcache.fingerprint import fingerprint
shell = InteractiveShell.instance()
shell.run_cell(CELL)
before = {name: fingerprint(shell.user_ns[name]).hex() for name in ("helper", "Cfg", "cfg", "f")}
shell.run_cell("def helper(x):\\n    return x * SCALE + 1\\n")
after = fingerprint(shell.user_ns["cfg"]).hex()
print(json.dumps([before, after]))
"""

IPYTHON_CELL = """
import dataclasses
SCALE = 2
def helper(x):
    return x * SCALE
@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    def run(self):
        return helper(self.lr)
cfg = Cfg()
f = lambda: cfg.run() + len({"a", "b", "c"})
"""


def test_ipython_cells_are_deterministic_across_kernels(tmp_path: Path) -> None:
    script = tmp_path / "kernel.py"
    script.write_text(f"CELL = {IPYTHON_CELL!r}\n" + IPYTHON_SCRIPT)
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "IPYTHONDIR": str(tmp_path / "ipython")}
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    before, after = runs[0]
    assert after != before["cfg"]  # a helper redefined in a later cell reaches the instance


def test_importing_fingerprint_does_not_import_numpy_or_pandas() -> None:
    # A bare package module, so that only fingerprint/ (and errors.py) run,
    # not the package's __init__ and whatever it imports.
    package_dir = os.path.dirname(os.path.dirname(fp.__file__))
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("cellcache")
        package.__path__ = [{package_dir!r}]
        sys.modules["cellcache"] = package
        import cellcache.fingerprint as f
        f.fingerprint({{"a": {{1, 2}}, "f": f.fingerprint}})
        print("numpy" in sys.modules, "pandas" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------
# describe


@dataclasses.dataclass
class _Thing:
    a: int = 1


def test_describe() -> None:
    # Scalars and short strings show their value, so a changed parameter shows old → new.
    assert describe(1) == "1"
    assert describe(1.5) == "1.5"
    assert describe(True) == "True"
    assert describe(None) == "None"
    assert describe("hello world!") == "'hello world!'"
    assert describe("x" * 41) == "str len 41"
    assert describe(10**60) == "int"
    assert describe(b"ab") == "bytes len 2"
    assert describe([1, 2, 3, 4, 5]) == "list len 5"
    assert describe({"a": 1, "b": 2, "c": 3}) == "dict len 3"
    assert describe((1,)) == "tuple len 1"
    assert describe({1, 2}) == "set len 2"
    assert describe(np.zeros((1000, 3))) == "ndarray float64 (1000, 3)"
    assert describe(len) == "builtin len"
    assert describe(_Thing()).endswith("test_package._Thing")
    assert describe(pd.DataFrame({"a": [1, 2]})) == "DataFrame 2x1"
    assert describe(pd.Index([1, 2])) == "Index int64 len 2"


def test_describe_never_raises() -> None:
    class Weird:
        def __len__(self) -> int:
            raise RuntimeError("no")

    class WeirdList(list):  # type: ignore[type-arg]
        def __len__(self) -> int:
            raise RuntimeError("no")

    assert describe(Weird()).endswith("Weird")
    assert describe(WeirdList()).endswith("WeirdList")


def test_fingerprints_match_fingerprint_one_by_one() -> None:
    import threading

    from cellcache.fingerprint import fingerprints

    values: list[object] = [np.mean, {"a": [1, 2]}, threading.Lock(), "x", np.arange(3)]
    digests = fingerprints(values)
    assert digests[2] is None  # a lock has no digest; the others are unaffected
    assert [d for i, d in enumerate(digests) if i != 2] == [fingerprint(v) for i, v in enumerate(values) if i != 2]
