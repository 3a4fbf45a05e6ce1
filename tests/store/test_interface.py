"""The store interface as the runner sees it: candidates, variants, notebook-scoped steps, the errors tree."""
from __future__ import annotations

import time
import warnings

import pytest

import cellcache
from cellcache import errors
from cellcache.store.base import Found, RunRecord, StepRef, Store
from cellcache.store.local import LocalStore
from cellcache.store.manifest import FileDigest, Manifest
from tests.conftest import run


def put(store: LocalStore, key: str, value, step: str = "s", notebook: str = "", implicit=()) -> Manifest:
    blob = store.put_blob({"ns": value, "record": {}})
    manifest = Manifest(
        key=key, step=step, created=time.time(), seconds=1.0, blob=blob.digest, blob_size=blob.size,
        blob_loader=blob.loader, outputs=tuple(value), implicit=tuple(implicit), notebook=notebook,
    )
    store.commit(manifest)
    return manifest


def test_local_store_is_a_store_and_candidates_are_lazy(tmp_path):
    store = LocalStore(tmp_path)
    assert isinstance(store, Store)
    put(store, "a" * 32, {"x": 1})
    found = store.candidates("a" * 32)
    assert iter(found) is found  # a generator: nothing is read before the runner asks
    first = next(found)
    assert isinstance(first, Found) and first.manifest is not None and first.source == "local" and first.problem is None
    assert list(store.candidates("b" * 32)) == []


def test_one_key_holds_several_variants(tmp_path):
    store = LocalStore(tmp_path)
    one = put(store, "a" * 32, {"x": 1}, implicit=[FileDigest("data.csv", "1" * 32)])
    two = put(store, "a" * 32, {"x": 2}, implicit=[FileDigest("data.csv", "2" * 32)])
    assert one.variant != two.variant
    assert store.manifest_path("a" * 32, one.variant) == tmp_path / "entries" / "aa" / ("a" * 32) / f"{one.variant}.json"
    got = {f.manifest.variant for f in store.candidates("a" * 32)}
    assert got == {one.variant, two.variant}
    again = put(store, "a" * 32, {"x": 3}, implicit=[FileDigest("data.csv", "1" * 32)])  # same variant: replaced
    assert len(list(store.candidates("a" * 32))) == 2 and store.manifest("a" * 32, one.variant) == again
    assert len(store.index.entries()) == 2


def test_a_bad_candidate_is_yielded_with_its_problem_and_the_next_one_still_comes(tmp_path):
    store = LocalStore(tmp_path)
    good = put(store, "a" * 32, {"x": 1}, implicit=[FileDigest("d", "1" * 32)])
    bad = put(store, "a" * 32, {"x": 2}, implicit=[FileDigest("d", "2" * 32)])
    path = store.manifest_path("a" * 32, bad.variant)
    path.write_bytes(path.read_bytes().replace(b'"seconds":1.0', b'"seconds":9.0'))
    found = list(store.candidates("a" * 32))
    assert [f.manifest for f in found if f.manifest] == [good]
    assert [f.problem for f in found if f.problem] == ["manifest signature does not match (tampered, or signed with another key)"]


def test_switching_a_data_file_back_hits_that_versions_entry(shell, workdir):
    (workdir / "data.txt").write_text("one")
    cell = "%%cached load\ntext = open('data.txt').read()"
    run(shell, cell)
    (workdir / "data.txt").write_text("two")
    run(shell, cell)
    assert cellcache.last_run().status == "miss" and shell.user_ns["text"] == "two"
    (workdir / "data.txt").write_text("one")
    run(shell, cell)
    assert cellcache.last_run().status == "hit" and shell.user_ns["text"] == "one"
    (workdir / "data.txt").write_text("two")
    run(shell, cell)
    assert cellcache.last_run().status == "hit" and shell.user_ns["text"] == "two"


def test_steps_belong_to_a_notebook(tmp_path):
    store = LocalStore(tmp_path)
    a = put(store, "a" * 32, {"x": 1}, step="load", notebook="nb/a.ipynb")
    b = put(store, "b" * 32, {"x": 2}, step="load", notebook="nb/b.ipynb")
    put(store, "c" * 32, {"x": 3}, step="fit", notebook="nb/a.ipynb")
    store.record_run(RunRecord(StepRef("nb/a.ipynb", "load"), a.key, "miss", 1.0, 0.0, "first run of this step"))
    rows = {(r.notebook, r.name): r for r in store.step_rows()}
    assert set(rows) == {("nb/a.ipynb", "load"), ("nb/b.ipynb", "load"), ("nb/a.ipynb", "fit")}
    assert rows[("nb/a.ipynb", "load")].runs == 1 and rows[("nb/b.ipynb", "load")].runs == 0
    assert store.last_manifest(StepRef("nb/b.ipynb", "load")) == b
    assert store.last_manifest(StepRef("nb/a.ipynb", "load")) == a

    assert store.resolve_step("fit") == StepRef("nb/a.ipynb", "fit")  # unique in the project: works alone
    assert store.resolve_step("nb/b.ipynb:load") == StepRef("nb/b.ipynb", "load")
    assert store.resolve_step("load", notebook="nb/a.ipynb") == StepRef("nb/a.ipynb", "load")
    with pytest.raises(errors.AmbiguousStep, match=r"nb/a.ipynb:load, nb/b.ipynb:load"):
        store.resolve_step("load")
    with pytest.raises(errors.UnknownStep, match=r"no step 'lod'.*known steps: nb/a.ipynb:fit, nb/a.ipynb:load"):
        store.resolve_step("lod")
    with pytest.raises(errors.UnknownStep):
        store.invalidate("nothing")
    assert not [s for s in store.known_steps() if s.name == "nothing"], "an unknown name leaves no row behind"

    assert store.invalidate(StepRef("nb/a.ipynb", "load")) == 1
    assert store.manifest(a.key) is None and store.manifest(b.key) == b
    assert store.invalidated_at(StepRef("nb/a.ipynb", "load")) is not None
    assert store.invalidated_at(StepRef("nb/b.ipynb", "load")) is None


def test_cache_error_catches_every_storage_problem_and_nothing_else():
    storage = [errors.StoreUnavailable, errors.SigningKeyError, errors.EntryCorrupt, errors.UnsafeEntry, errors.UntrustedEntry]
    assert all(issubclass(e, cellcache.CacheError) for e in storage)
    assert errors.StoreError is cellcache.CacheError
    others = [errors.ConfigError, errors.Unfingerprintable, errors.DepNotFound, errors.OutNotProduced, errors.BatchError, errors.StepError]
    assert not any(issubclass(e, cellcache.CacheError) for e in others)
    for leaf in storage + others:
        assert leaf.__name__ in errors.__doc__  # the drawn tree names every leaf


def test_several_broken_candidates_give_one_warning(shell, store_dir):
    cell = "%%cached one\nx = 41 + 1"
    run(shell, cell)
    store = LocalStore(store_dir)
    (manifest,) = [f.manifest for f in store.candidates(cellcache.last_run().key)]
    for digest in ("1" * 32, "2" * 32):  # two more variants, both signed by no one
        path = store.entry_dir(manifest.key) / f"{digest[:16]}.json"
        path.write_bytes(b"0" * 64 + b"\n{}")
    store.blob_path(manifest.blob).write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(shell, cell)
    cache_warnings = [w for w in caught if issubclass(w.category, cellcache.CacheWarning)]
    assert len(cache_warnings) == 1, [str(w.message) for w in cache_warnings]
    assert cellcache.last_run().status == "miss" and shell.user_ns["x"] == 42


def test_the_magic_invalidates_this_notebooks_step_first(shell, store_dir):
    from cellcache import api

    session = api.session(shell)
    for notebook in ("nb/a.ipynb", "nb/b.ipynb"):
        session.notebook = notebook
        run(shell, f"%%cached load\nx = {notebook!r}")
    session.notebook = "nb/a.ipynb"
    run(shell, "%cellcache invalidate load")
    store = LocalStore(store_dir)
    assert {(r.notebook, r.name): r.entries for r in store.step_rows()} == {("nb/a.ipynb", "load"): 0, ("nb/b.ipynb", "load"): 1}
    session.notebook = ""
    with pytest.raises(Exception, match="several notebooks"):
        shell.run_line_magic("cellcache", "invalidate load")
