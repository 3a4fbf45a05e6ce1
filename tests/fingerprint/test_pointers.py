"""Object columns remembered by their pointers: a repeat costs a pointer hash, and no write goes unseen."""
from __future__ import annotations

import gc

import numpy as np
import pandas as pd
import pytest

import cellcache
from cellcache.fingerprint import fingerprint, pointers
from tests.conftest import run
from tests.store.test_format import filled, load, write_blob

ROWS = pointers.MIN_ITEMS + 123


@pytest.fixture(autouse=True)
def _empty_memo():
    pointers.forget()
    yield
    pointers.forget()


def words(n: int = ROWS) -> list[str]:
    return [f"w{i % 977}-{'é' * (i % 3)}-{i}" for i in range(n)]


def column(values: list[object]) -> pd.Series:
    return pd.Series(values, dtype=object)


def fresh(series: pd.Series) -> bytes:
    """The digest of an equal column in a new buffer, for which nothing is remembered."""
    return fingerprint(column(series.tolist()))


def test_an_unchanged_column_is_answered_from_its_pointers():
    series = column(words())
    first = fingerprint(series)
    assert pointers.known_digest(series.array.to_numpy()) is not None
    assert fingerprint(series) == first == fresh(series)
    frame = pd.DataFrame({"a": series, "b": column(words()[::-1]), "n": np.arange(ROWS)})
    digest = fingerprint(frame)
    assert len(pointers._entries) == 3  # the series and the frame's two object columns
    assert fingerprint(frame) == digest


MUTATIONS = {
    "iloc set": lambda s: s.iloc.__setitem__(5, "changed"),
    "numpy view write": lambda s: s.array.to_numpy().__setitem__(ROWS - 1, "tail"),
    "swap two": lambda s: s.array.to_numpy().__setitem__([3, 4], s.array.to_numpy()[[4, 3]]),
    "sort in place": lambda s: s.array.to_numpy().sort(),
    "fill": lambda s: s.array.to_numpy().fill("same"),
    "type change": lambda s: s.iloc.__setitem__(7, 7),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_any_write_to_a_remembered_column_is_seen(mutate):
    series = column(words())
    before = fingerprint(series)
    mutate(series)
    after = fingerprint(series)
    assert after != before
    assert after == fresh(series)
    assert fingerprint(series) == after  # and the new state is remembered in turn


def test_an_equal_replacement_keeps_the_digest():
    series = column(words())
    before = fingerprint(series)
    values = series.array.to_numpy()
    values[11] = "".join(list(values[11]))  # another object, the same value
    assert fingerprint(series) == before


def test_a_freed_items_address_cant_stand_for_a_new_value():
    # The one way pointers alone could lie: an item freed and its address
    # given to a new object. The memo keeps every item it saw alive, so the
    # allocator can't hand the old address out while the entry lives.
    series = column(words())
    values = series.array.to_numpy()
    fingerprint(series)
    for i in range(50):
        old_address = id(values[i])
        values[i] = None
        gc.collect()
        values[i] = f"w{i % 977}-{'é' * (i % 3)}-{i}".replace("w", "v")  # same size class as the old item
        assert id(values[i]) != old_address
        assert fingerprint(series) == fresh(series)


class Tagged(str):
    pass


def test_items_that_can_change_in_place_are_never_remembered():
    items = words()
    tagged = Tagged("x")
    tagged.note = 1
    items[9] = tagged
    series = column(items)
    before = fingerprint(series)
    assert not pointers._entries
    tagged.note = 2  # the array's pointers are unchanged
    assert fingerprint(series) != before


def test_containers_and_conversions_are_never_remembered():
    with_lists = column([[i] for i in range(ROWS)])
    fingerprint(with_lists)
    with_lists.iloc[0].append(1)
    assert fingerprint(with_lists) == fingerprint(column([[0, 1]] + [[i] for i in range(1, ROWS)]))
    assert not pointers._entries
    small = column(words(100))
    fingerprint(small)
    assert not pointers._entries


def test_an_entry_lives_as_long_as_its_column():
    series = column(words())
    fingerprint(series)
    assert pointers._kept == ROWS
    del series
    gc.collect()
    assert not pointers._entries and pointers._kept == 0


def test_the_items_kept_alive_are_bounded(monkeypatch):
    monkeypatch.setattr(pointers, "MAX_ITEMS", 2 * ROWS)
    columns = [column(words()) for _ in range(4)]
    for series in columns:
        fingerprint(series)
    assert pointers._kept <= 2 * ROWS and len(pointers._entries) == 2
    assert pointers.known_digest(columns[-1].array.to_numpy()) is not None  # the newest stay
    assert pointers.known_digest(columns[0].array.to_numpy()) is None
    assert fingerprint(columns[0]) == fresh(columns[0])


def test_kept_items_cost_the_cycle_collector_nothing():
    series = column(words())
    fingerprint(series)
    [entry] = pointers._entries.values()
    assert entry.keep and not any(gc.is_tracked(part) for part in entry.keep)


def test_an_in_place_write_to_an_input_column_is_a_miss(shell):
    shell.user_ns["df"] = pd.DataFrame({"s": column(words()), "n": np.arange(ROWS)})
    body = "%%cached count\ncounts = df['s'].str.len().sum()"
    run(shell, body)
    run(shell, body)
    assert cellcache.last_run().hit
    run(shell, "df.loc[5, 's'] = 'edited in place'")
    run(shell, body)
    assert not cellcache.last_run().hit and "input `df` changed" in cellcache.last_run().reason
    run(shell, "df.loc[5, 's'] = ''.join(list(df.loc[5, 's']))")  # an equal value, another object
    run(shell, body)
    assert cellcache.last_run().hit


# object arrays a hit restored ------------------------------------------------------------------


def restore(tmp_path, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Write ``values`` as a blob and load it back, as a hit does."""
    return load(*write_blob(tmp_path, values))


def test_a_restored_object_array_is_watched_only_if_its_stream_names_no_class(tmp_path):
    def with_item(item: object) -> np.ndarray:
        items: list[object] = words()
        items[ROWS // 2] = item
        return filled(items)

    restored = restore(
        tmp_path,
        {
            "plain": filled(words()),
            "atoms": filled([[str(i), i, float(i), b"b", None, True][i % 6] for i in range(ROWS)]),
            "tuples": filled([(i,) for i in range(ROWS)]),
            "one_list": with_item([1]),
            "subclass": with_item(Tagged("x")),
            "numpy_scalar": with_item(np.int64(3)),
            "missing": with_item(pd.NA),
            "array": with_item(np.arange(3)),
            "small": filled(words(100)),
        },
    )
    assert {name for name, value in restored.items() if pointers.watched(value)} == {"plain", "atoms", "tuples", "one_list"}
    assert pointers.unchanged_atoms(restored["plain"]) and pointers.unchanged_atoms(restored["atoms"])
    # Containers: watched (they name no class), but never taken as unchanged.
    assert not pointers.unchanged_atoms(restored["tuples"]) and not pointers.unchanged_atoms(restored["one_list"])
    for value in restored.values():
        assert pointers.known_digest(value) is None  # a watched array has no digest of its own


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_any_write_to_a_restored_object_array_is_seen(tmp_path, mutate):
    series = restore(tmp_path, {"s": column(words())})["s"]
    assert pointers.unchanged_atoms(series.array.to_numpy())
    mutate(series)
    assert not pointers.unchanged_atoms(series.array.to_numpy())


def test_a_freed_item_of_a_restored_array_cant_lend_its_address(tmp_path):
    values = restore(tmp_path, {"v": filled(words())})["v"]
    assert pointers.unchanged_atoms(values)
    [entry] = pointers._entries.values()
    assert all(kept is item for kept, item in zip(entry.keep[0], values))  # the items themselves are held
    for i in range(50):
        rest = values[i][1:]
        old_address = id(values[i])
        values[i] = None  # freed here, by its count; a collection now would free others into its place
        values[i] = "v" + rest  # one allocation of the freed item's size: the allocator's first pick is its block
        assert id(values[i]) != old_address
        assert not pointers.unchanged_atoms(values)


def test_a_restored_arrays_items_are_kept_untracked_and_die_with_it(tmp_path):
    values = restore(tmp_path, {"v": filled(words())})["v"]
    [entry] = pointers._entries.values()
    assert entry.keep and not any(gc.is_tracked(part) for part in entry.keep)
    assert pointers._kept == ROWS
    del values
    gc.collect()
    assert not pointers._entries and pointers._kept == 0
