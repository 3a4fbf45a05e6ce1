"""Arrays and pandas objects (fingerprint/values.py)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import cellcache.fingerprint.values as fingerprint_values
from cellcache.fingerprint import describe, fingerprint, fingerprints

from tests.fingerprint.helpers import all_distinct


# --------------------------------------------------------------------------
# Numpy


def test_big_array_one_element_change() -> None:
    array = np.arange(4_000_000, dtype=np.float64)
    before = fingerprint(array)
    array[2_345_678] += 1e-9
    assert fingerprint(array) != before
    assert describe(array) == "ndarray float64 (4000000,)"


def test_array_view_equals_copy() -> None:
    array = np.arange(1000, dtype=np.int64)
    view = array[::3]
    assert not view.flags.c_contiguous
    assert fingerprint(view) == fingerprint(view.copy())
    assert fingerprint(array[::-1]) == fingerprint(array[::-1].copy())
    assert fingerprint(view) != fingerprint(array[::2])


def test_transposed_array() -> None:
    array = np.arange(12.0).reshape(3, 4)
    transposed = array.T
    assert transposed.flags.f_contiguous and not transposed.flags.c_contiguous
    assert fingerprint(transposed) == fingerprint(np.ascontiguousarray(transposed))
    assert fingerprint(transposed) != fingerprint(array)
    assert fingerprint(array.reshape(4, 3)) != fingerprint(array)  # same bytes, other shape


def test_strided_chunks_equal_contiguous_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks exercise the bounded-copy paths (rows, and rows of rows).
    monkeypatch.setattr(fingerprint_values, "_CHUNK_BYTES", 64)
    array = np.arange(4 * 50 * 7, dtype=np.float64).reshape(4, 50, 7)
    for view in (array.T, array[:, ::2], array[::-1, :, 1], array.transpose(1, 0, 2)):
        assert fingerprint(view) == fingerprint(np.ascontiguousarray(view))
    changed = array.copy()
    changed[3, 49, 6] = -1
    assert fingerprint(changed.T) != fingerprint(array.T)


def test_array_dtypes() -> None:
    values = [1, 2, 3]
    assert fingerprint(np.array(values, dtype=np.int32)) != fingerprint(np.array(values, dtype=np.int64))
    assert fingerprint(np.array(values, dtype="<i8")) != fingerprint(np.array(values, dtype=">i8"))
    dates = np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[ns]")
    assert fingerprint(dates) == fingerprint(dates.copy())
    assert fingerprint(dates) != fingerprint(dates.astype("datetime64[s]"))
    assert fingerprint(np.array(["ab", "c"])) != fingerprint(np.array(["ab", "d"]))


def test_structured_dtype_names_count() -> None:
    a = np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")])
    b = np.zeros(3, dtype=[("x", "<i4"), ("z", "<f8")])
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint(a.copy())


def test_the_padding_of_a_structured_dtype_is_not_a_value() -> None:
    """scikit-learn's tree nodes: a u1 field last in 64-byte items leaves 7 bytes nobody writes."""
    inner = np.dtype({"names": ["flag"], "formats": ["u1"], "offsets": [1], "itemsize": 4})
    kind = np.dtype({"names": ["n", "x", "inner"], "formats": ["<i8", "u1", inner], "offsets": [0, 8, 12], "itemsize": 24})
    a = np.zeros(5, dtype=kind)
    a["n"], a["x"], a["inner"]["flag"] = np.arange(5), 7, 1
    b = a.copy()
    raw = b.view(np.uint8).reshape(5, 24)
    raw[:, 9:12], raw[:, 12], raw[:, 14:] = 0xAB, 0xCD, 0xEF  # padding only: between fields, inside the nested one, at the end
    assert np.array_equal(a, b) and not np.array_equal(a.view(np.uint8), b.view(np.uint8))
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a[::2]) == fingerprint(b[::2])  # the strided path too
    b["inner"]["flag"][3] = 2
    assert fingerprint(a) != fingerprint(b)
    b["inner"]["flag"][3], b["x"][0] = 1, 8
    assert fingerprint(a) != fingerprint(b)


def test_object_and_string_dtype_arrays() -> None:
    a = np.array(["x", {"k": 1}, None], dtype=object)
    assert fingerprint(a) == fingerprint(a.copy())
    b = a.copy()
    b[1] = {"k": 2}
    assert fingerprint(a) != fingerprint(b)
    # numpy's StringDType buffer holds pointers: it must be hashed by value.
    s1 = np.array(["a" * 40, "b"], dtype=np.dtypes.StringDType())
    s2 = np.array(["a" * 40, "b"], dtype=np.dtypes.StringDType())
    assert fingerprint(s1) == fingerprint(s2)
    s2[0] = "c" * 40
    assert fingerprint(s1) != fingerprint(s2)


def test_arrays_nested_in_containers() -> None:
    array = np.arange(12.0).reshape(3, 4)
    assert fingerprint({"a": array.T}) == fingerprint({"a": np.ascontiguousarray(array.T)})
    changed = array.copy()
    changed[0, 0] = 99
    assert fingerprint([array]) != fingerprint([changed])
    assert fingerprint([array]) != fingerprint(array)
    assert fingerprint([np.float64(1.5)]) != fingerprint([1.5])


def test_out_of_band_buffers(tmp_path: Path) -> None:
    # A PickleBuffer, and an ndarray subclass (numpy hands its buffer out of band).
    assert fingerprint([pickle.PickleBuffer(b"abc")]) != fingerprint([pickle.PickleBuffer(b"abd")])
    path = tmp_path / "m.dat"
    mapped = np.memmap(path, dtype=np.float64, mode="w+", shape=(1000,))
    mapped[:] = np.arange(1000)
    before = fingerprint(mapped)
    assert fingerprint(mapped) == before
    mapped[500] = -1
    assert fingerprint(mapped) != before
    del mapped


# --------------------------------------------------------------------------
# pandas


def make_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": pd.Series([f"user_{i}" for i in range(50)], dtype=object),
            "count": np.arange(50, dtype=np.int64),
            "value": np.linspace(0, 1, 50),
            "flag": np.arange(50) % 2 == 0,
            "when": pd.date_range("2020-01-01", periods=50, freq="D"),
        },
        index=pd.RangeIndex(100, 150),
    )


def test_dataframe_equal_copies() -> None:
    frame = make_frame()
    assert fingerprint(frame) == fingerprint(frame.copy())
    assert fingerprint(frame) == fingerprint(make_frame())
    assert describe(frame) == "DataFrame 50x5"


@pytest.mark.parametrize(
    "change",
    [
        "cell_int",
        "cell_float",
        "cell_str",
        "cell_bool",
        "cell_date",
        "column_name",
        "column_order",
        "index",
        "index_type",
        "dtype",
        "attrs",
    ],
)
def test_dataframe_changes(change: str) -> None:
    frame = make_frame()
    other = frame.copy()
    if change == "cell_int":
        other.loc[120, "count"] = -1
    elif change == "cell_float":
        other.loc[149, "value"] = 0.5
    elif change == "cell_str":
        other.loc[100, "name"] = "someone"
    elif change == "cell_bool":
        other.loc[101, "flag"] = True
    elif change == "cell_date":
        other.loc[101, "when"] = pd.Timestamp("1999-01-01")
    elif change == "column_name":
        other = other.rename(columns={"value": "values"})
    elif change == "column_order":
        other = other[["count", "name", "value", "flag", "when"]]
    elif change == "index":
        other.index = pd.RangeIndex(101, 151)
    elif change == "index_type":
        other.index = pd.Index(list(range(100, 150)), dtype=np.int64)
    elif change == "dtype":
        other["count"] = other["count"].astype(np.int32)
    elif change == "attrs":
        other.attrs["source"] = "x"
    assert fingerprint(frame) != fingerprint(other)


def test_object_string_columns() -> None:
    strings = [f"s{i}" for i in range(3000)]
    obj = pd.DataFrame({"s": pd.Series(strings, dtype=object)})
    assert fingerprint(obj) == fingerprint(pd.DataFrame({"s": pd.Series(list(strings), dtype=object)}))
    changed = list(strings)
    changed[2999] = "s2999!"
    assert fingerprint(obj) != fingerprint(pd.DataFrame({"s": pd.Series(changed, dtype=object)}))
    # pandas' own string dtype holds the same values but is another dtype.
    assert fingerprint(obj) != fingerprint(pd.DataFrame({"s": pd.Series(strings, dtype="str")}))
    # Missing values are not strings.
    with_none = pd.DataFrame({"s": pd.Series(["a", None], dtype=object)})
    with_text = pd.DataFrame({"s": pd.Series(["a", "None"], dtype=object)})
    with_nan = pd.DataFrame({"s": pd.Series(["a", float("nan")], dtype=object)})
    assert all_distinct([with_none, with_text, with_nan])


def test_object_columns_with_containers_take_the_general_path() -> None:
    frame = pd.DataFrame({"o": pd.Series([[1, 2], {"a"}, "x"], dtype=object)})
    same = pd.DataFrame({"o": pd.Series([[1, 2], {"a"}, "x"], dtype=object)})
    other = pd.DataFrame({"o": pd.Series([[1, 3], {"a"}, "x"], dtype=object)})
    assert fingerprint(frame) == fingerprint(same)
    assert fingerprint(frame) != fingerprint(other)


def test_pandas_string_dtype() -> None:
    series = pd.Series(["a", "b", None], dtype="str")
    assert fingerprint(series) == fingerprint(series.copy())
    assert fingerprint(series) != fingerprint(pd.Series(["a", "c", None], dtype="str"))
    assert fingerprint(series) != fingerprint(pd.Series(["a", "b", None], dtype=pd.StringDtype(na_value=pd.NA)))


def test_extension_arrays() -> None:
    cat = pd.Series(pd.Categorical(["a", "b", "a"]))
    assert fingerprint(cat) == fingerprint(cat.copy())
    assert fingerprint(cat) != fingerprint(pd.Series(pd.Categorical(["a", "b", "b"])))
    # Same codes, other categories.
    assert fingerprint(cat) != fingerprint(pd.Series(pd.Categorical(["a", "c", "a"])))
    assert fingerprint(cat) != fingerprint(pd.Series(pd.Categorical(["a", "b", "a"], ordered=True)))

    ints = pd.Series([1, None, 3], dtype="Int64")
    assert fingerprint(ints) == fingerprint(pd.Series([1, None, 3], dtype="Int64"))
    assert fingerprint(ints) != fingerprint(pd.Series([1, 0, 3], dtype="Int64"))
    assert fingerprint(ints) != fingerprint(pd.Series([1, None, 3], dtype="Float64"))
    # What lies under the mask does not count.
    assert fingerprint(pd.Series([5, None], dtype="Int64") + 1) == fingerprint(pd.Series([6, None], dtype="Int64"))

    utc = pd.Series(pd.date_range("2020-01-01", periods=3, tz="UTC"))
    assert fingerprint(utc) == fingerprint(utc.copy())
    assert fingerprint(utc) != fingerprint(utc.dt.tz_convert("Europe/Paris"))

    periods = pd.Series(pd.period_range("2020-01", periods=3, freq="M"))
    assert fingerprint(periods) != fingerprint(pd.Series(pd.period_range("2020-02", periods=3, freq="M")))

    intervals = pd.Series(pd.interval_range(0, 3))
    assert fingerprint(intervals) != fingerprint(pd.Series(pd.interval_range(0, 3, closed="left")))


def test_series_and_index() -> None:
    series = pd.Series([1.0, 2.0], index=["a", "b"], name="s")
    assert fingerprint(series) == fingerprint(series.copy())
    assert fingerprint(series) != fingerprint(series.rename("t"))
    assert fingerprint(series) != fingerprint(pd.Series([1.0, 2.0], index=["a", "c"], name="s"))
    assert fingerprint(series) != fingerprint(series.to_frame())
    assert describe(series) == "Series float64 len 2"

    multi = pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    assert fingerprint(multi) == fingerprint(multi.copy())
    assert fingerprint(multi) != fingerprint(pd.MultiIndex.from_tuples([("a", 1), ("b", 3)], names=["k", "n"]))
    assert fingerprint(multi) != fingerprint(multi.set_names(["k", "m"]))
    days = pd.date_range("2020-01-01", periods=3, freq="D")
    assert fingerprint(days) != fingerprint(pd.DatetimeIndex(list(days), freq=None))


def test_pandas_nested_in_containers() -> None:
    frame = make_frame()
    other = frame.copy()
    other.iloc[0, 1] = 12345
    assert fingerprint({"df": frame}) == fingerprint({"df": frame.copy()})
    assert fingerprint({"df": frame}) != fingerprint({"df": other})


# --------------------------------------------------------------------------
# ndarray subclasses carry their instance attributes


class Quantity(np.ndarray):
    def __new__(cls, values: Any, unit: str) -> "Quantity":
        obj = np.asarray(values).view(cls)
        obj.unit = unit
        return obj


def test_ndarray_subclass_attributes_are_keyed() -> None:
    metres = Quantity([1.0, 2.0], "m")
    assert fingerprint(metres) == fingerprint(Quantity([1.0, 2.0], "m"))
    assert fingerprint(metres) != fingerprint(Quantity([1.0, 2.0], "s"))
    assert fingerprint(metres) != fingerprint(Quantity([1.0, 3.0], "m"))
    assert fingerprint(metres) != fingerprint(np.array([1.0, 2.0]))
    assert fingerprint({"q": metres}) != fingerprint({"q": Quantity([1.0, 2.0], "s")})


def test_masked_arrays_and_maps_are_keyed_by_values() -> None:
    assert fingerprint(np.ma.masked_array([1, 2], [0, 1])) != fingerprint(np.ma.masked_array([1, 2], [1, 0]))
    assert fingerprint(np.ma.masked_array([1, 2], [0, 1])) == fingerprint(np.ma.masked_array([1, 2], [0, 1]))


def test_memmap_is_keyed_by_its_values(tmp_path: Path) -> None:
    mapped = np.memmap(tmp_path / "m.dat", dtype="f8", mode="w+", shape=(4,))
    before = fingerprint(mapped)
    mapped[1] = 5.0
    assert fingerprint(mapped) != before


def test_an_array_met_twice_is_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = fingerprint_values._array_digest
    monkeypatch.setattr(fingerprint_values, "_array_digest", lambda a: calls.append(1) or original(a))
    array = np.arange(10.0)
    digest = fingerprint([array, {"again": array}])
    assert len(calls) == 1
    # One array twice is not two equal arrays: writing through one changes the other.
    assert digest != fingerprint([array, {"again": array.copy()}])
    calls.clear()
    fingerprints([array, {"again": array}])  # two values, one walk: still hashed once
    assert len(calls) == 1
