"""An array a hit mapped, and never wrote to, is not hashed again; any write makes it hashed."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import cellcache
from cellcache.fingerprint import mapped
from cellcache.fingerprint import fingerprint
from tests.conftest import run

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/pagemap is Linux's")

N = mapped.MAP_THRESHOLD // 8 * 4
MAKE = f"%%cached make\nimport numpy as np\nbig = np.random.default_rng(0).random({N})"
USE = "%%cached use\ntotal = float(big.sum())"


def restored(shell) -> np.ndarray:
    """Run MAKE to a stored miss, then again as a hit: ``big`` is now a mapping of its blob."""
    run(shell, MAKE)
    cellcache.flush()
    shell.user_ns.pop("big")
    run(shell, MAKE)
    assert cellcache.last_run().hit
    big = shell.user_ns["big"]
    assert mapped.mapping_of(big) is not None
    return big


def test_the_page_flags_tell_a_written_page_from_the_files(shell):
    big = restored(shell)
    start, length = big.ctypes.data, big.nbytes
    assert mapped.pages_unwritten(start, length)
    float(big.sum())  # reading faults the file's pages in: still the file's
    assert mapped.pages_unwritten(start, length)
    big[N // 2] = big[N // 2]  # the same bytes written back: the page is a private copy now
    assert not mapped.pages_unwritten(start, length)
    assert mapped.pages_unwritten(start, N // 2 * 8 - mapped.PAGE)  # the pages before it are untouched


def test_anonymous_memory_is_never_taken_for_the_file(shell):
    written = np.ones(N)
    assert not mapped.pages_unwritten(written.ctypes.data, written.nbytes)
    assert mapped.unchanged_digest(written) is None


def test_an_unwritten_restored_input_takes_the_manifest_digest(shell):
    big = restored(shell)
    known = mapped.unchanged_digest(big)
    assert known is not None and known == fingerprint(big.copy())
    assert fingerprint(big) == known
    assert mapped.unchanged_digest(big[: N // 2]) is None  # a view it can't trace is hashed


def test_a_layout_change_in_place_is_not_unchanged(shell):
    big = restored(shell)
    big.shape = (2, N // 2)
    assert mapped.unchanged_digest(big) is None


def test_writing_one_element_of_a_restored_array_misses_downstream(shell):
    run(shell, MAKE)
    run(shell, USE)
    cellcache.flush()
    for name in ("big", "total"):
        shell.user_ns.pop(name)
    run(shell, MAKE)  # Restart & Run All: both hit, the second without hashing its input
    run(shell, USE)
    assert cellcache.last_run().hit
    run(shell, "big[7] += 1.0")
    run(shell, USE)
    assert not cellcache.last_run().hit
    assert shell.user_ns["total"] == pytest.approx(float(shell.user_ns["big"].sum()))


def test_a_value_written_back_unchanged_is_hashed_and_still_hits(shell):
    run(shell, MAKE)
    run(shell, USE)
    cellcache.flush()
    shell.user_ns.pop("big")
    run(shell, MAKE)
    run(shell, "big[7] = big[7]")
    assert mapped.unchanged_digest(shell.user_ns["big"]) is None
    run(shell, USE)
    assert cellcache.last_run().hit  # hashed, found equal


ROWS = mapped.MAP_THRESHOLD // 8 * 2
FRAME = (
    "%%cached frame\nimport numpy as np, pandas as pd\n"
    f"df = pd.DataFrame({{'x': np.arange({ROWS}, dtype=np.float64), 'n': np.arange({ROWS}), "
    f"'ts': pd.date_range('2024-01-01', periods={ROWS}, freq='s'), "
    f"'s': pd.Series([f'u{{i % 977}}' for i in range({ROWS})], dtype='str')}})"
)
USE_FRAME = "%%cached use_frame\ntotal = float(df['x'].sum())"


def restored_after(shell, make: str, use: str, name: str):
    """Run ``make`` and ``use`` to stored misses, then ``make`` again as a hit: ``name`` is what the hit restored."""
    run(shell, make)
    run(shell, use)
    cellcache.flush()
    shell.user_ns.pop(name)
    run(shell, make)
    assert cellcache.last_run().hit
    return shell.user_ns[name]


def restored_frame(shell):
    return restored_after(shell, FRAME, USE_FRAME, "df")


def test_an_unwritten_restored_frame_takes_the_manifest_digest(shell):
    df = restored_frame(shell)
    known = mapped.unchanged_digest(df)
    assert known is not None and known == fingerprint(df.copy(deep=True))
    run(shell, USE_FRAME)
    assert cellcache.last_run().hit


@pytest.mark.parametrize(
    "change",
    [
        "df.iloc[3, 0] = -1.0",  # a value, in place
        "df.columns = ['x', 'n', 'when', 't']",
        "df.iloc[2, 2] = pd.Timestamp('1999-01-01')",
        "df.index.name = 'row'",
        "df['extra'] = 1",
        "df.attrs['source'] = 'x'",
        # the string column's character buffer is under the mapping threshold: a writable bytearray after the hit
        "import numpy as np\nbuf = df['s'].array._pa_array.chunks[0].buffers()[2]\nnp.frombuffer(buf, dtype=np.uint8)[0] = 0",
    ],
)
def test_any_change_to_a_restored_frame_is_not_unchanged(shell, change):
    restored_frame(shell)
    run(shell, change)
    assert mapped.unchanged_digest(shell.user_ns["df"]) is None


def test_writing_one_value_of_a_restored_frame_misses_downstream(shell):
    restored_frame(shell)
    run(shell, "df.iloc[5, 0] = 1e9")
    run(shell, USE_FRAME)
    assert not cellcache.last_run().hit
    assert shell.user_ns["total"] == pytest.approx(float(shell.user_ns["df"]["x"].sum()))


# object columns: a restored one is proven unchanged by its pointers ----------------------------

from cellcache.fingerprint import pointers  # noqa: E402

OBJECT_ROWS = mapped.MAP_THRESHOLD // 8 + 77  # an entry this big is written behind, with its digests
OBJECT_FRAME = (
    "%%cached people\nimport numpy as np, pandas as pd\n"
    f"people = pd.DataFrame({{'name': pd.Series([f'p{{i % 313}}-{{i}}' for i in range({OBJECT_ROWS})], dtype=object), "
    f"'n': np.arange({OBJECT_ROWS})}})"
)
USE_PEOPLE = "%%cached use_people\nlongest = int(people['name'].str.len().max())"


def restored_people(shell):
    return restored_after(shell, OBJECT_FRAME, USE_PEOPLE, "people")


def cold(value) -> bytes:
    """The value's digest hashed from scratch, with nothing remembered."""
    mapped.forget()
    pointers.forget()
    return fingerprint(value)


def test_a_restored_frame_with_an_object_column_takes_the_manifest_digest(shell):
    people = restored_people(shell)
    known = mapped.unchanged_digest(people)
    assert known is not None and known == cold(people)
    run(shell, USE_PEOPLE)
    assert cellcache.last_run().hit


@pytest.mark.parametrize(
    "change",
    [
        "people.iloc[3, 0] = 'someone else'",
        "people.iloc[4, 0] = 4",
        "people.iloc[[1, 2], 0] = people.iloc[[2, 1], 0].to_numpy()",
        "people.iloc[9, 0] = ''.join(list(people.iloc[9, 0]))",  # an equal value, another object
    ],
)
def test_any_write_to_a_restored_object_column_is_not_unchanged(shell, change):
    restored_people(shell)
    run(shell, change)
    people = shell.user_ns["people"]
    assert mapped.unchanged_digest(people) is None
    assert fingerprint(people) == cold(people)


def test_writing_one_name_of_a_restored_frame_misses_downstream(shell):
    restored_people(shell)
    run(shell, f"people.iloc[{OBJECT_ROWS - 1}, 0] = 'x' * 500")
    run(shell, USE_PEOPLE)
    assert not cellcache.last_run().hit
    assert shell.user_ns["longest"] == 500


def test_a_restored_object_array_takes_the_manifest_digest_until_written(shell):
    make = f"%%cached names\nimport numpy as np\nnames = np.array([f'n{{i}}' for i in range({OBJECT_ROWS})], dtype=object)"
    run(shell, make)
    cellcache.flush()
    shell.user_ns.pop("names")
    run(shell, make)
    names = shell.user_ns["names"]
    assert mapped.unchanged_digest(names) == cold(names)
    run(shell, make)
    names = shell.user_ns["names"]
    names[0] = "first"
    assert mapped.unchanged_digest(names) is None
