"""String columns hashed over Arrow buffers: by their values, never by their layout."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cellcache.fingerprint import fingerprint

WORDS = [f"w{i % 97}-{'é' * (i % 3)}" for i in range(5000)]


def arrow_series(chunks: list[list[str | None]], kind=pa.large_string()) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([pa.array(c, type=kind) for c in chunks])))


def test_the_str_dtype_is_hashed_by_values_not_chunks_or_offsets():
    whole = pd.Series(WORDS, dtype="str")
    assert whole.array.__class__.__name__ == "ArrowStringArray"
    chunked = pd.concat([pd.Series(WORDS[:1234], dtype="str"), pd.Series(WORDS[1234:], dtype="str")], ignore_index=True)
    assert chunked.array._pa_array.num_chunks == 2
    assert fingerprint(whole) == fingerprint(pd.Series(list(WORDS), dtype="str"))
    assert fingerprint(whole) == fingerprint(chunked)
    sliced = pd.Series(WORDS + ["tail"], dtype="str").iloc[:-1]  # a buffer slice with the same values
    assert fingerprint(whole) == fingerprint(sliced)
    offset = pd.Series(["head"] + WORDS, dtype="str").iloc[1:].reset_index(drop=True)  # a non-zero Arrow offset
    assert offset.array._pa_array.chunk(0).offset == 1
    assert fingerprint(whole) == fingerprint(offset)


def test_one_changed_character_or_null_changes_the_digest():
    base = pd.Series(WORDS, dtype="str")
    changed = list(WORDS)
    changed[4321] = changed[4321] + "!"
    assert fingerprint(base) != fingerprint(pd.Series(changed, dtype="str"))
    moved = list(WORDS)
    moved[10], moved[11] = moved[10] + moved[11][:1], moved[11][1:]  # same bytes, other boundaries
    assert fingerprint(base) != fingerprint(pd.Series(moved, dtype="str"))
    with_null = arrow_series([["a", None, "b"]])
    with_empty = arrow_series([["a", "", "b"]])
    other_null = arrow_series([["a", "b", None]])
    assert len({fingerprint(s) for s in (with_null, with_empty, other_null)}) == 3


def test_bytes_under_a_null_slot_do_not_count():
    plain = pa.array(["a", None, "b"], type=pa.large_string())
    # The same validity, but the null slot spans garbage bytes in the data buffer.
    offsets = pa.py_buffer(np.array([0, 1, 4, 5], dtype=np.int64).tobytes())
    data = pa.py_buffer(b"axyzb")
    garbage = pa.Array.from_buffers(pa.large_string(), 3, [plain.buffers()[0], offsets, data])
    assert garbage.to_pylist() == plain.to_pylist()
    wrap = lambda a: pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([a])))  # noqa: E731
    assert fingerprint(wrap(plain)) == fingerprint(wrap(garbage))


def test_string_and_large_string_storage_hash_alike():
    assert fingerprint(arrow_series([WORDS[:50]], pa.string())) == fingerprint(arrow_series([WORDS[:50]]))


class Text(str):
    pass


def test_object_string_columns_stay_exact():
    obj = pd.Series(WORDS, dtype=object)
    assert fingerprint(obj) == fingerprint(pd.Series(list(WORDS), dtype=object))
    subclassed = pd.Series([Text(w) if i == 77 else w for i, w in enumerate(WORDS)], dtype=object)
    assert fingerprint(obj) != fingerprint(subclassed)  # a str subclass is another value
    numpy_str = pd.Series([np.str_(w) if i == 3 else w for i, w in enumerate(WORDS)], dtype=object)
    assert fingerprint(obj) != fingerprint(numpy_str)
    tail_int = pd.Series(WORDS[:-1] + [5], dtype=object)
    tail_text = pd.Series(WORDS[:-1] + ["5"], dtype=object)
    assert fingerprint(tail_int) != fingerprint(tail_text)
    assert fingerprint(obj) != fingerprint(pd.Series(WORDS, dtype="str"))


@pytest.mark.parametrize("text", ["\ud800", "a\x00b"])
def test_odd_strings_still_hash(text):
    series = pd.Series([text, "x"], dtype=object)
    assert fingerprint(series) == fingerprint(pd.Series([text, "x"], dtype=object))
    assert fingerprint(series) != fingerprint(pd.Series([text + "y", "x"], dtype=object))
