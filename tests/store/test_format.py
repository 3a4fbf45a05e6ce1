"""The blob format: aligned layout, copy-on-write restores, content checked before unpickling."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from cellcache.errors import CacheWarning, EntryCorrupt
from cellcache.fingerprint import mapped
from cellcache.store import format as fmt
from tests.conftest import run

BIG = mapped.MAP_THRESHOLD // 8 * 2  # float64 elements of an array twice the mapping threshold


def write_blob(folder: Path, value) -> tuple[Path, fmt.BlobInfo]:
    buffer = io.BytesIO()
    info = fmt.dump(value, buffer)
    path = folder / info.digest
    path.write_bytes(buffer.getvalue())
    return path, info


def load(path: Path, info: fmt.BlobInfo, **kwargs):
    return fmt.load(path, info.loader, digest=info.digest, **kwargs)


@pytest.fixture
def network_fs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seam: statfs reports NFS for every path (the real call is tested below)."""
    monkeypatch.setattr(fmt, "statfs_type", lambda path: 0x6969)
    monkeypatch.setattr(fmt, "_mappable_devices", {})


def test_large_arrays_come_back_as_plain_arrays_mapped_from_the_blob(tmp_path):
    big = np.random.default_rng(0).random(BIG)
    path, info = write_blob(tmp_path, {"big": big, "small": np.arange(5)})
    restored = load(path, info)
    assert type(restored["big"]) is np.ndarray and not isinstance(restored["big"], np.memmap)
    assert np.array_equal(restored["big"], big)
    assert mapped.mapping_of(restored["big"]) is not None
    assert mapped.mapping_of(restored["small"]) is None and restored["small"].flags.owndata
    assert restored["big"].flags.writeable


def test_large_arrays_start_on_a_page_boundary_in_the_blob(tmp_path):
    marker = np.full(BIG, 7.25)
    path, _ = write_blob(tmp_path, {"pad": "x" * 1234, "a": marker})
    data = path.read_bytes()
    start = data.find(marker[:64].tobytes())
    assert start > 0 and start % mapped.PAGE == 0


def test_two_restores_are_independent_and_writes_never_reach_the_blob(tmp_path):
    big = np.arange(BIG, dtype=np.float64)
    path, info = write_blob(tmp_path, big)
    one, two = load(path, info), load(path, info)
    one[0], one[-1] = -1.0, -2.0
    assert two[0] == 0.0 and two[-1] == BIG - 1
    assert fmt.file_digest(path) == info.digest
    assert load(path, info)[0] == 0.0


def test_deleting_the_blob_leaves_a_mapped_value_intact(tmp_path):
    big = np.arange(BIG, dtype=np.float64)
    path, info = write_blob(tmp_path, big)
    restored = load(path, info)
    path.unlink()  # what gc does
    assert np.array_equal(restored, big)
    restored += 1
    assert restored[10] == 11.0


def test_mapped_restores_hold_no_file_descriptor(tmp_path):
    import gc

    path, info = write_blob(tmp_path, np.ones(BIG))
    # Files an earlier test left to the garbage collector would close mid-count: collect them first, and none during.
    gc.collect()
    gc.disable()
    try:
        before = len(os.listdir("/proc/self/fd"))
        kept = [load(path, info) for _ in range(20)]
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        gc.enable()
    assert all(mapped.mapping_of(a) is not None for a in kept)


@pytest.mark.parametrize("size", [10, BIG], ids=["read", "mapped"])
def test_a_flipped_byte_is_entry_corrupt(tmp_path, size):
    path, info = write_blob(tmp_path, {"a": np.arange(size, dtype=np.float64)})
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(EntryCorrupt, match="does not match its digest"):
        load(path, info)


def test_a_planted_pickle_is_refused_before_it_runs(tmp_path):
    path, info = write_blob(tmp_path, {"x": 1})
    canary = tmp_path / "ran"
    path.write_bytes(pickle.dumps(_Planted(str(canary))))
    with pytest.raises(EntryCorrupt):
        load(path, info)
    assert not canary.exists()


class _Planted:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_unverified_load_trusts_the_disk(tmp_path):
    # verify_local = false: nothing hashes the blob, so a flipped array byte is served as stored.
    big = np.zeros(BIG)
    path, info = write_blob(tmp_path, big)
    data = bytearray(path.read_bytes())
    data[-16] = 0x40
    path.write_bytes(data)
    with pytest.raises(EntryCorrupt):
        load(path, info)
    restored = load(path, info, verify=False)
    assert mapped.mapping_of(restored) is not None and restored[-2] != 0.0


def test_statfs_reports_the_real_filesystem_type(tmp_path):
    expected = int(subprocess.run(["stat", "-f", "-c", "%t", str(tmp_path)], capture_output=True, text=True, check=True).stdout, 16)
    assert fmt.statfs_type(tmp_path) == expected
    assert fmt.can_map(tmp_path, os.stat(tmp_path).st_dev) == (expected not in fmt.NETWORK_FS_TYPES)


def test_a_network_filesystem_store_reads_instead_of_mapping(tmp_path, network_fs):
    big = np.arange(BIG, dtype=np.float64)
    path, info = write_blob(tmp_path, {"a": big, "b": big})
    restored = load(path, info)
    assert mapped.mapping_of(restored["a"]) is None
    assert restored["a"] is restored["b"] and np.array_equal(restored["a"], big)
    restored["a"][0] = 5.0
    assert fmt.file_digest(path) == info.digest
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(EntryCorrupt):
        load(path, info)


def test_non_native_dtypes_come_back_exactly(tmp_path):
    values = {
        "be": np.arange(BIG, dtype=">f8"),
        "be_small": np.arange(10, dtype=">i4"),
        "le": np.arange(10, dtype="<u2"),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    }
    restored = load(*write_blob(tmp_path, values))
    for name, value in values.items():
        assert restored[name].dtype == value.dtype, name
        assert np.array_equal(restored[name], value)
    assert restored["fortran"].flags.f_contiguous


class Tagged(np.ndarray):
    pass


@pytest.mark.parametrize("size", [10, BIG])
def test_ndarray_subclasses_keep_their_instance_attributes(tmp_path, size):
    value = np.arange(size, dtype=np.float64).view(Tagged)
    value.unit = "m"
    restored = load(*write_blob(tmp_path, value))
    assert type(restored) is Tagged and restored.unit == "m"
    assert np.array_equal(restored, value)


def test_numeric_pandas_blocks_and_arrow_strings_are_mapped(tmp_path):
    n = 300_000
    frame = pd.DataFrame({"x": np.arange(n, dtype=np.float64), "s": pd.Series([f"user_{i}" for i in range(n)], dtype="str")})
    assert frame["s"].array.__class__.__name__ == "ArrowStringArray"
    restored = load(*write_blob(tmp_path, frame))
    pd.testing.assert_frame_equal(restored, frame)
    assert mapped.mapping_of(restored["x"].to_numpy()) is not None
    chunk = restored["s"].array._pa_array.chunks[0]
    start, end = mapped.mapping_of(restored["x"].to_numpy())
    data = chunk.buffers()[-1]
    assert start <= data.address < end  # the strings' bytes lie in the blob's mapping too
    restored.loc[0, "x"] = -1.0
    assert frame.loc[0, "x"] == 0.0


class Label(str):
    pass


def filled(items: list[object], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An object array holding exactly ``items`` (np.array would unpack tuples and lists)."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array if shape is None else array.reshape(shape)


def _object_arrays() -> dict[str, np.ndarray]:
    looped = np.empty(3, dtype=object)
    looped[:] = ["a", None, None]
    looped[1] = looped  # an array that is one of its own items
    return {
        "strings": filled([f"s{i}" for i in range(1000)]),
        "atoms": filled(["a", b"b", 1, 2**80, 1.5, float("nan"), True, None]),
        "containers": filled([(1, 2), [3, [4]], {"k": {5}}, frozenset({6}), bytearray(b"x")]),
        "arrays": filled([np.arange(3), np.array(["x", None], dtype=object), np.float64(2.5)]),
        "classes": filled([Label("tag"), pd.NA, pd.Timestamp("2024-01-01"), np.int64(7)]),
        "looped": looped,
        "two_d": filled(list(range(6)), (2, 3)),
        "fortran": np.asfortranarray(filled(list("abcdef"), (2, 3))),
        "shared": filled([looped[0]] * 4),
    }


def test_object_arrays_of_every_kind_come_back_equal(tmp_path):
    values = _object_arrays()
    restored = load(*write_blob(tmp_path, {**values, "nested": [values["strings"], {"in": values["containers"]}]}))
    for name, value in values.items():
        again = restored[name]
        assert type(again) is np.ndarray and again.dtype == object and again.shape == value.shape, name
        if name == "looped":
            assert again[1] is again and again[0] == "a"
            continue
        assert again.flags.f_contiguous == value.flags.f_contiguous, name
        for mine, theirs in zip(again.ravel(order="A"), value.ravel(order="A")):
            assert type(mine) is type(theirs), (name, mine)
            if isinstance(mine, np.ndarray):
                assert np.array_equal(mine, theirs), name
            elif not (mine is pd.NA or (isinstance(mine, float) and mine != mine)):
                assert mine == theirs, (name, mine)
    assert all(item is restored["shared"][0] for item in restored["shared"])  # one object, as stored
    assert restored["nested"][0] is restored["strings"]  # an alias stays one array
    assert type(restored["classes"][0]) is Label


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix's own
def test_object_arrays_inside_other_classes_come_back_equal(tmp_path):
    items = np.array(["a", None, 3, ("t",)], dtype=object)
    masked = np.ma.masked_array(items, mask=[0, 1, 0, 0])
    matrix = np.asmatrix(np.array([["a", 1], [None, 2.5]], dtype=object))
    restored = load(*write_blob(tmp_path, {"masked": masked, "matrix": matrix}))
    assert type(restored["masked"]) is np.ma.MaskedArray and list(restored["masked"].mask) == [False, True, False, False]
    assert restored["masked"].data.tolist() == items.tolist()
    assert type(restored["matrix"]) is np.matrix and restored["matrix"].tolist() == matrix.tolist()


def test_object_columns_of_a_frame_come_back_equal(tmp_path):
    n = 5000
    frame = pd.DataFrame(
        {
            "name": pd.Series([f"user_{i % 97}" for i in range(n)], dtype=object),
            "mixed": pd.Series([i if i % 3 else str(i) for i in range(n)], dtype=object),
            "x": np.arange(n, dtype=np.float64),
        }
    )
    restored = load(*write_blob(tmp_path, frame))
    pd.testing.assert_frame_equal(restored, frame)


def test_joblib_load_still_reads_blobs(tmp_path):
    values = {"big": np.arange(BIG, dtype=np.float64), "small": np.arange(3), "text": "x"}
    path, _ = write_blob(tmp_path, values)
    again = joblib.load(path)
    assert np.array_equal(again["big"], values["big"]) and again["text"] == "x"


# through the shell --------------------------------------------------------------


@pytest.mark.parametrize("rows", [50, BIG])  # stored at once, and written behind
def test_object_outputs_are_stored_and_hit(shell, rows):
    import cellcache

    body = (
        "%%cached objects\nimport numpy as np, pandas as pd\n"
        f"people = pd.DataFrame({{'name': pd.Series([f'p{{i}}' for i in range({rows})], dtype=object), 'n': np.arange({rows})}})\n"
        "tags = np.array([('a', 1), None, 'b'], dtype=object)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run(shell, body)
        cellcache.flush()
        made = shell.user_ns.pop("people"), shell.user_ns.pop("tags")
        run(shell, body)
    assert cellcache.last_run().hit
    pd.testing.assert_frame_equal(shell.user_ns["people"], made[0])
    assert list(shell.user_ns["tags"]) == list(made[1])


# Outputs of the kinds notebooks make, each big enough to be written behind where it can be.
OUTPUT_KINDS = {
    "categorical": "pd.Series(pd.Categorical(['a', 'b', 'a'] * 1000))",
    "nullable": "pd.Series([1, None, 3] * 1000, dtype='Int64')",
    "tz_aware": "pd.Series(pd.date_range('2024', periods=3000, freq='h', tz='Europe/Paris'))",
    "period": "pd.Series(pd.period_range('2024-01', periods=300, freq='M'))",
    "interval": "pd.Series(pd.interval_range(0, 300))",
    "multiindex": "pd.DataFrame({'v': range(600)}, index=pd.MultiIndex.from_product([range(300), ['a', 'b']]))",
    "object_index": "pd.Series(range(3), index=['x', ('t', 1), 3])",
    "sparse": "pd.Series(pd.arrays.SparseArray([0, 0, 1.5] * 1000))",
    "masked": "np.ma.masked_array(np.arange(10.0), mask=[0, 1] * 5)",
    "structured_objects": f"np.array([(i, str(i)) for i in range({BIG})], dtype=[('n', 'i8'), ('o', 'O')])",
    "object_2d": f"np.array([[str(i), i] for i in range({BIG})], dtype=object)",
    "object_bools": f"pd.DataFrame({{'a': pd.Series([True, None] * {BIG // 2}, dtype=object), 'b': np.arange({BIG}.0)}})",
    "nested": "{'a': pd.DataFrame({'x': [1]}), 'b': [np.arange(3), np.array(['q'], dtype=object)]}",
    "arrow_ints": f"pd.Series(range({BIG}), dtype='int64[pyarrow]')",
    "decimals": f"pd.Series([__import__('decimal').Decimal('1.1')] * {BIG}, dtype=object)",
}


@pytest.mark.parametrize("expr", OUTPUT_KINDS.values(), ids=OUTPUT_KINDS.keys())
def test_every_kind_of_output_is_stored_and_hits_equal(shell, expr):
    import cellcache

    body = f"%%cached kind\nimport numpy as np, pandas as pd\nvalue = {expr}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        run(shell, body)
        cellcache.flush()
        made = shell.user_ns.pop("value")
        run(shell, body)
    assert cellcache.last_run().hit
    assert_same(shell.user_ns["value"], made)


def assert_same(again, made) -> None:
    """Equal in value, dtype, index and type (pickle bytes differ by caches a value grows)."""
    assert type(again) is type(made)
    if isinstance(made, pd.DataFrame):
        pd.testing.assert_frame_equal(again, made)
    elif isinstance(made, pd.Series):
        pd.testing.assert_series_equal(again, made)
    elif isinstance(made, np.ma.MaskedArray):
        assert np.array_equal(again.data, made.data) and np.array_equal(again.mask, made.mask)
        assert again.fill_value == made.fill_value
    elif isinstance(made, np.ndarray):
        assert again.dtype == made.dtype and again.shape == made.shape and again.tolist() == made.tolist()
    elif isinstance(made, (dict, list)):
        pairs = zip(again.values(), made.values()) if isinstance(made, dict) else zip(again, made)
        assert len(again) == len(made) and (not isinstance(made, dict) or list(again) == list(made))
        for mine, theirs in pairs:
            assert_same(mine, theirs)
    else:
        assert again == made


def corrupt_every_blob(store: Path) -> int:
    flipped = 0
    for blob in (store / "blobs").glob("*/*"):
        if blob.is_file() and blob.parent.name != "tmp":
            data = bytearray(blob.read_bytes())
            data[len(data) // 2] = 0x40  # inside the array's bytes
            blob.write_bytes(data)
            flipped += 1
    return flipped


def test_a_corrupt_blob_is_a_miss_with_one_warning(shell, store_dir):
    run(shell, f"%%cached big\nimport numpy as np\nz = np.zeros({BIG})")
    shell.run_line_magic("cellcache", "flush")
    assert corrupt_every_blob(store_dir) == 1
    del shell.user_ns["z"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(shell, f"%%cached big\nimport numpy as np\nz = np.zeros({BIG})")
    import cellcache

    assert not cellcache.last_run().hit
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1
    assert not shell.user_ns["z"].any()


def test_verify_local_false_serves_the_mapped_blob_unchecked(shell, store_dir, workdir, monkeypatch):
    (workdir / "pyproject.toml").write_text("[tool.cellcache]\nverify_local = false\n")
    from cellcache import config

    assert config.resolve(workdir).verify_local is False
    monkeypatch.setenv("CELLCACHE_VERIFY_LOCAL", "0")
    shell.run_line_magic("unload_ext", "cellcache")
    shell.run_line_magic("load_ext", "cellcache")
    run(shell, f"%%cached big\nimport numpy as np\nz = np.zeros({BIG})")
    shell.run_line_magic("cellcache", "flush")
    corrupt_every_blob(store_dir)
    del shell.user_ns["z"]
    run(shell, f"%%cached big\nimport numpy as np\nz = np.zeros({BIG})")
    import cellcache

    assert cellcache.last_run().hit
    assert shell.user_ns["z"].any()  # served as stored: the user chose to trust the disk


def test_big_endian_outputs_hit_downstream(shell):
    cells = [
        "%%cached make\nimport numpy as np\nbe = np.arange(10, dtype='>i8')",
        "%%cached use\ntotal = int(be.sum())",
    ]
    for source in cells:
        run(shell, source)
    shell.user_ns.pop("be")
    import cellcache

    for source in cells:
        run(shell, source)
        assert cellcache.last_run().hit, source
    assert shell.user_ns["be"].dtype == np.dtype(">i8")


def test_importing_cellcache_leaves_joblib_and_numpy_for_the_first_blob(tmp_path):
    # The extension loads in every kernel; the pickler (joblib, numpy, process pools) waits for a first dump or load.
    code = (
        "import sys, cellcache\n"
        "print(sorted(m for m in ('joblib', 'numpy', 'cloudpickle') if m in sys.modules))\n"
        "from cellcache.store import format as fmt\n"
        "fmt.PageAlignedArrayWrapper\n"
        "print('joblib' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]


def test_blobs_name_the_array_wrapper_where_they_always_found_it(tmp_path):
    path = tmp_path / "blob"
    with open(path, "wb") as f:
        fmt.dump({"a": np.arange(mapped.MAP_THRESHOLD // 8 * 2, dtype=np.float64)}, f)
    data = path.read_bytes()
    assert b"cellcache.store.format" in data and b"PageAlignedArrayWrapper" in data
    assert b"_joblib_format" not in data  # a blob written now loads in any release that reads the old name
    assert np.array_equal(fmt.load(path, digest=fmt.file_digest(path))["a"], np.arange(mapped.MAP_THRESHOLD // 8 * 2, dtype=np.float64))
