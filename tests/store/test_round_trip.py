"""A value's digest is a function of its state alone: a store round trip does not change it (issue 24, point 3).

A hit sets what the store loaded in the namespace, and the next cell keys
on its digest. If the loaded object digests otherwise than the object the
run made, that cell misses on every warm run, and so does everything after
it. Each library object of ``tests/fingerprint/library_objects.py`` goes
through the store's own pickler and loader (``format.dump`` and
``format.load``, what a cell's outputs take), twice.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cellcache.errors import Unfingerprintable
from cellcache.fingerprint import fingerprint
from cellcache.store import format as fmt
from tests.fingerprint.library_objects import BUILDERS


def round_trip(value: Any, folder: Path) -> Any:
    """``value`` as a hit restores it: dumped among a cell's outputs, written as a blob, loaded."""
    buffer = io.BytesIO()
    info = fmt.dump({"value": value}, buffer)
    path = folder / info.digest
    path.write_bytes(buffer.getvalue())
    return fmt.load(path, info.loader, digest=info.digest)["value"]


def built(name: str) -> Any:
    np.random.seed(0)  # a frozen scipy distribution holds numpy's global generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return BUILDERS[name]()
        except ImportError as exc:
            pytest.skip(f"{name}: {exc}")


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_loaded_library_object_digests_as_the_one_stored(name: str, tmp_path: Path) -> None:
    value = built(name)
    try:
        stored = fingerprint(value)
    except Unfingerprintable:
        pytest.skip(f"{name} has no digest (a cell reading it runs uncached)")
    loaded = round_trip(value, tmp_path)
    assert fingerprint(loaded) == stored, f"{name}: a hit would restore a value that digests otherwise"
    again = round_trip(loaded, tmp_path)
    assert fingerprint(again) == stored, f"{name}: a value restored, stored again and restored digests otherwise"


class AttrDict(dict):
    """statsmodels' ``Dataset`` in small: its items are its attributes."""

    def __init__(self, **items: Any) -> None:
        super().__init__(items)
        self.__dict__ = self


def test_an_object_whose_dict_is_itself_comes_back_so(tmp_path: Path) -> None:
    value = AttrDict(names=["a", "b"], endog=np.arange(3.0))
    value["me"] = value
    loaded = round_trip(value, tmp_path)
    assert loaded.__dict__ is loaded and loaded["me"] is loaded
    loaded.extra = 1  # an attribute is an item, as before the round trip
    assert loaded["extra"] == 1
    del loaded["extra"]
    assert fingerprint(loaded) == fingerprint(value)


def test_views_of_one_buffer_come_back_views_of_one_buffer(tmp_path: Path) -> None:
    """lmfit's ModelResult holds ``x = data[:, 0]`` and ``y = data[:, 1]``: its digest keys that they overlap."""
    data = np.arange(20.0).reshape(10, 2)
    stamps = np.arange(6).astype("datetime64[s]").reshape(2, 3, order="F")
    value = {"x": data[:, 0], "y": data[:, 1], "column": data[:, 1].reshape(-1, 1), "back": stamps[::-1, 1], "stamps": stamps}
    loaded = round_trip(value, tmp_path)
    assert fingerprint(loaded) == fingerprint(value)
    assert fingerprint(round_trip(loaded, tmp_path)) == fingerprint(value)
    loaded["y"][3] = -1.0  # written through one, seen through the other, as before
    assert loaded["column"][3, 0] == -1.0 and loaded["x"][3] == 6.0
    assert np.array_equal(loaded["back"], stamps[::-1, 1]) and np.shares_memory(loaded["back"], loaded["stamps"])


def test_a_small_view_of_a_large_array_is_stored_alone(tmp_path: Path) -> None:
    big = np.zeros(fmt.MAP_THRESHOLD // 8 * 2)
    buffer = io.BytesIO()
    fmt.dump({"head": big[:10]}, buffer)
    assert len(buffer.getvalue()) < 4096


def test_views_of_a_mapped_array_stay_views_across_two_round_trips(tmp_path: Path) -> None:
    data = np.arange(fmt.MAP_THRESHOLD // 8 * 2, dtype=np.float64).reshape(-1, 2)
    value = [data[:, 0], data[:, 1]]
    loaded = round_trip(value, tmp_path)
    again = round_trip(loaded, tmp_path)
    assert fingerprint(loaded) == fingerprint(again) == fingerprint(value)
    again[1][0] = -1.0
    assert again[0][0] == 0.0 and again[0].base is again[1].base


def test_arrow_buffers_come_back_as_writable_as_they_were(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    made = pa.array([1, 2, None])  # buffers arrow allocated: writable
    count = fmt.MAP_THRESHOLD // 8 + 1
    small, large = (pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(bytes(8 * n))]) for n in (4, count))  # over bytes: read-only
    value = [made, small, large]
    loaded = round_trip(value, tmp_path)
    assert [array.buffers()[1].is_mutable for array in loaded] == [True, False, False]
    assert fingerprint(loaded) == fingerprint(value)


class Forgetful(dict):
    """scikit-learn's ``Bunch`` in small: its ``__setstate__`` drops the instance attributes a pickle holds."""

    def __init__(self, **items: Any) -> None:
        super().__init__(items)
        self.__dict__["_notes"] = {}

    def __setstate__(self, state: Any) -> None:
        self.__dict__["restored"] = True


def test_attributes_a_setstate_would_drop_come_back(tmp_path: Path) -> None:
    value = Forgetful(data=np.arange(3))
    value._notes["data"] = "old name"
    loaded = round_trip(value, tmp_path)
    assert np.array_equal(loaded["data"], value["data"]) and loaded._notes == {"data": "old name"}
    assert loaded.restored  # what __setstate__ sets is still set
    del loaded.__dict__["restored"]
    assert fingerprint(loaded) == fingerprint(value)
