"""The compiled object-column route: byte for byte the pickler's stream, the pickler's verdict, the same digests."""
from __future__ import annotations

import decimal
import enum
import itertools
import os
import pickle
import random
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cellcache.fingerprint.values as fingerprint_values
from cellcache.fingerprint import fingerprint, pointers

if pointers._atoms is None and not os.environ.get("CI"):
    # CI compiles it (a failed build there fails these tests); a machine without a compiler skips them.
    pytest.skip("cellcache.fingerprint._atoms was not compiled here (no C compiler?)", allow_module_level=True)
_atoms = pointers._atoms


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: Any) -> None:
        self.data += chunk


def pickled(items: list[Any]) -> bytes:
    """What the pickler's route hashes: a fast-mode protocol-5 pickle of the list, written to a file."""
    sink = _Sink()
    pickler = pickle.Pickler(sink, protocol=5)
    pickler.fast = True
    pickler.dump(items)
    return bytes(sink.data)


def column(items: list[Any]) -> Any:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def streamed(items: list[Any]) -> bytes | None:
    array = column(items)
    sink = bytearray()
    result = _atoms.stream(array.__array_interface__["data"][0], len(array), sink.extend)
    if result is None:
        return None
    assert len(result[1]) == len(items) and all(a is b for a, b in zip(result[1], items))
    return bytes(sink)


_INTS = [0, 1, -1, 127, 128, 255, 256, -256, 65535, 65536, -65537, 2**31 - 1, -(2**31), 2**31, -(2**31) - 1,
         2**32, 2**40, -(2**40), 2**62, 2**63 - 1, -(2**63), -(2**63) + 1, 2**55 + 7, -(2**47) - 3]
_FLOATS = [0.0, -0.0, 1.5, float("nan"), float("inf"), -float("inf"), 1e-310, 1e300]


def _item(rng: random.Random) -> Any:
    kind = rng.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice(_INTS + [rng.randrange(-(2**63), 2**63)])
    if kind == 3:
        return rng.choice(_FLOATS + [rng.uniform(-1e9, 1e9)])
    if kind == 4:  # ASCII across every header width and the 64 KiB payload line
        return "x" * rng.choice([0, 1, 254, 255, 256, 1000, 65535, 65536, 70000])
    if kind == 5:
        return "é☃\U0001f600" * rng.randrange(0, 30)
    if kind == 6:
        return "\ud800 lone surrogate"
    if kind == 7:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 255, 256, 66000])))
    return f"user_{rng.randrange(10**6)}"


@pytest.mark.parametrize("seed", range(40))
def test_stream_is_the_picklers_byte_for_byte(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([0, 1, 2, 999, 1000, 1001, 2001, rng.randrange(1, 12_000)])
    items = [_item(rng) for _ in range(n)]
    assert streamed(items) == pickled(items)


def test_frames_of_many_short_strings() -> None:
    items = [f"row {i}" for i in range(300_000)]  # many 64 KiB frames, each committed between items
    assert streamed(items) == pickled(items)


class _Str(str):
    pass


class _Color(enum.IntEnum):
    RED = 1


# What a stream can hold without naming a class: the atoms and the containers pickle has opcodes for.
_UNNAMED = [[1], (1,), {"a": 1}, {1}, frozenset({1})]
# Items whose stream names a class, so a restore never watches them; infer_dtype takes some for atoms.
_NAMED = [_Str("sub"), _Color.RED, 1j, decimal.Decimal("1"), np.float64(1.0), np.int64(1), pd.NA,
          pd.Timestamp("2020-01-01"), bytearray(b"x"), object()]


@pytest.mark.parametrize("odd", [2**64, -(2**64), *_UNNAMED, *_NAMED], ids=lambda value: type(value).__name__)
def test_anything_but_an_exact_atom_declines(odd: Any) -> None:
    for items in ([odd], ["a"] * 1500 + [odd], [odd] + ["a"] * 10):
        assert streamed(items) is None


def _kinds_checked(odd: Any) -> list[bool]:
    atoms = ["a", b"b", 1, 2**70, -(2**64), 1.5, float("nan"), True, None] * 300
    arrays = [column(atoms), column([]), column(["a"] * 1500 + [odd]), column([odd] + ["a"] * 10), column([odd])]
    return [pointers._all_atoms(array) for array in arrays]


@pytest.mark.parametrize("odd", [None, *_UNNAMED], ids=lambda value: type(value).__name__)
def test_the_kinds_check_of_a_watched_column_agrees_with_pandas_and_python(odd: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``exact`` answers ``unchanged_atoms``' first question: every item an exact atom (big ints too, unlike the stream)."""
    compiled = _kinds_checked(odd)
    assert compiled == [True, True] + [odd is None] * 3
    monkeypatch.setattr(pointers, "_atoms", None)
    assert _kinds_checked(odd) == compiled


@pytest.mark.parametrize("odd", _NAMED, ids=lambda value: type(value).__name__)
def test_the_compiled_kinds_check_refuses_every_class_not_only_containers(odd: Any) -> None:
    assert _kinds_checked(odd) == [True, True, False, False, False]


def test_an_array_changed_while_streaming_declines() -> None:
    """``write`` can let go of the GIL; if another thread replaces an item meanwhile, the stream isn't the array's."""
    items = [f"s{i}" * 50 for i in range(5000)]
    array = column(items)

    def write(chunk: Any) -> None:
        array[10] = "replaced"

    assert _atoms.stream(array.__array_interface__["data"][0], len(array), write) is None
    # The pickler's route then hashes the array as it is: the same digest as a fresh copy of it.
    assert fingerprint(pd.Series(array, dtype=object)) == fingerprint(pd.Series(list(array), dtype=object))


_KINDS = {"none": [None], "bool": [True, False], "int": [1, -5], "float": [1.5], "nan": [float("nan")],
          "str": ["a"], "bytes": [b"x"]}


def _combinations() -> list[tuple[str, ...]]:
    names = list(_KINDS)
    return [combo for r in range(0, len(names) + 1) for combo in itertools.combinations(names, r)]


@pytest.mark.parametrize("combo", _combinations(), ids="+".join)
def test_digest_equals_the_picklers_route_for_every_mix_of_kinds(combo: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    """The verdict read off the kinds met is infer_dtype's, so a key doesn't depend on whether ``_atoms`` was compiled."""
    values = [v for name in combo for v in _KINDS[name]]
    items = (values * (3000 // max(len(values), 1) + 1))[:3000] if values else []
    random.Random(len(combo)).shuffle(items)
    array = column(items)
    series = pd.Series(array, dtype=object, copy=False)
    assert series.dtype == object
    assert fingerprint_values._atoms_digest(array.shape, array) is not None  # the compiled route was taken
    compiled = fingerprint(series)
    pointers.forget()
    monkeypatch.setattr(fingerprint_values, "_atoms", None)
    assert fingerprint(series) == compiled


def test_two_dimensional_and_chunked_columns_match_the_picklers_route(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fingerprint_values, "_CHUNK_ITEMS", 1000)  # several chunks, as 1M-item ones in a big column
    frame = pd.DataFrame({"a": [f"a{i}" for i in range(2500)], "b": [f"b{i % 7}" for i in range(2500)]}, dtype=object)
    block = frame.to_numpy()  # a 2-D object array, as pandas keeps a frame's object block
    compiled = fingerprint([frame, block, block.T])
    pointers.forget()
    monkeypatch.setattr(fingerprint_values, "_atoms", None)
    assert fingerprint([frame, block, block.T]) == compiled


def test_a_compiled_column_is_remembered_and_any_write_is_seen() -> None:
    pointers.forget()
    series = pd.Series([f"user_{i}" for i in range(pointers.MIN_ITEMS)], dtype=object)
    first = fingerprint(series)
    assert pointers.known_digest(series.to_numpy()) is not None
    assert fingerprint(series) == first
    series.iloc[3] = "edited"
    assert fingerprint(series) != first
    assert fingerprint(series) == fingerprint(series.copy(deep=True))


_WITHOUT_ATOMS = """
import sys
sys.modules["cellcache.fingerprint._atoms"] = None  # as on a machine where it wasn't compiled
import pandas as pd
from cellcache.fingerprint import fingerprint, pointers, values
assert pointers._atoms is None and values._atoms is None
print(fingerprint(pd.DataFrame({"a": [f"s{i}" for i in range(70_000)], "b": [1, 2.5, None, True, b"x"] * 14_000})).hex())
"""


def test_a_kernel_without_the_compiled_routine_makes_the_same_key() -> None:
    """Imported in a fresh process with the module missing, cellcache falls back and keys stay equal."""
    frame = pd.DataFrame({"a": [f"s{i}" for i in range(70_000)], "b": [1, 2.5, None, True, b"x"] * 14_000})
    done = subprocess.run([sys.executable, "-c", _WITHOUT_ATOMS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == fingerprint(frame).hex()
