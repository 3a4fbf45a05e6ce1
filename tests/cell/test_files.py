"""Files in the key: --deps, --outs and implicit deps, in a real InteractiveShell."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import cellcache
from cellcache.cell import files
from cellcache.errors import DepNotFound, OutNotProduced
from tests.conftest import run
from tests.cell.test_runner import _Counter, counting_cell, executions


@pytest.fixture
def counted(shell):
    shell.user_ns["runs"] = _Counter()
    return shell


def reason() -> str:
    return cellcache.last_run().reason


# ---------------------------------------------------------------- pure helpers


def test_expand_files_folders_and_globs(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("a.csv", "b.csv", "c.txt", "d/x.bin", "d/sub/y.bin"):
        (tmp_path / name).write_text(name)
    assert files.expand(["a.csv"], tmp_path) == [tmp_path / "a.csv"]
    assert files.expand(["*.csv"], tmp_path) == [tmp_path / "a.csv", tmp_path / "b.csv"]
    assert files.expand(["d"], tmp_path) == [tmp_path / "d/sub/y.bin", tmp_path / "d/x.bin"]
    assert files.expand(["d/**/*.bin"], tmp_path) == [tmp_path / "d/sub/y.bin", tmp_path / "d/x.bin"]
    with pytest.raises(DepNotFound, match="'nope.csv'"):
        files.expand(["a.csv", "nope.csv"], tmp_path)
    with pytest.raises(DepNotFound, match=r"'\*.parquet'"):
        files.expand(["*.parquet"], tmp_path)


def test_outs_must_exist(tmp_path):
    (tmp_path / "o.bin").write_text("x")
    assert files.produced_outs(["o.bin"], tmp_path) == [tmp_path / "o.bin"]
    with pytest.raises(OutNotProduced, match="'missing.bin'"):
        files.produced_outs(["missing.bin"], tmp_path)


# ---------------------------------------------------------------- --deps


def test_dep_content_change_is_a_miss_and_touch_is_a_hit(counted, workdir):
    data = workdir / "data.csv"
    data.write_text("a,b\n1,2\n")
    cell = counting_cell("rows = open('data.csv').read().count('\\n')", "load -d data.csv")
    run(counted, cell)
    os.utime(data)  # touched, same content
    run(counted, cell)
    assert executions(counted) == 1 and cellcache.last_run().hit
    data.write_text("a,b\n1,2\n3,4\n")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["rows"] == 3
    assert reason() == "file data.csv changed"


def test_unchanged_dep_is_not_read_again(counted, workdir):
    (workdir / "big.bin").write_bytes(os.urandom(1 << 20))
    cell = counting_cell("n = 1", "stat -d big.bin")
    run(counted, cell)
    with files.OpenRecorder() as probe:
        run(counted, cell)
    assert cellcache.last_run().hit
    assert workdir / "big.bin" not in [Path(p) for p in probe._recording.read]


def test_new_and_deleted_glob_matches_are_misses(counted, workdir):
    (workdir / "parts").mkdir()
    (workdir / "parts" / "1.txt").write_text("one")
    for flags in ("glob -d parts/*.txt", "glob -d 'parts/*.txt'"):
        cell = counting_cell("n = 1", flags)
        run(counted, cell)
    assert executions(counted) == 1  # quoted and unquoted globs are the same key
    (workdir / "parts" / "2.txt").write_text("two")
    run(counted, cell)
    assert executions(counted) == 2 and reason() == "file parts/2.txt is new"
    (workdir / "parts" / "1.txt").unlink()
    run(counted, cell)
    assert executions(counted) == 3 and reason() == "file parts/1.txt is gone"


def test_directory_dep_is_recursive(counted, workdir):
    (workdir / "raw" / "deep").mkdir(parents=True)
    (workdir / "raw" / "deep" / "f.txt").write_text("v1")
    cell = counting_cell("n = 1", "dir -d raw")
    run(counted, cell)
    (workdir / "raw" / "deep" / "f.txt").write_text("v2")
    run(counted, cell)
    assert executions(counted) == 2 and reason() == "file raw/deep/f.txt changed"


def test_missing_dep_is_an_error_naming_the_path_and_nothing_runs(counted):
    with pytest.raises(UsageError, match="'absent.csv' does not exist.*did not run"):
        counted.run_cell_magic("cached", "step -d absent.csv", "runs.append(1)\n")
    assert executions(counted) == 0


# ---------------------------------------------------------------- --outs


def test_outs_are_written_back_when_missing_or_different(counted, workdir):
    cell = counting_cell(
        "import pathlib\npathlib.Path('model.bin').write_bytes(b'weights' * 100)\n"
        "pathlib.Path('plots').mkdir(exist_ok=True)\npathlib.Path('plots/a.txt').write_text('plot')",
        "train -o model.bin plots",
    )
    run(counted, cell)
    (workdir / "model.bin").unlink()
    (workdir / "plots" / "a.txt").write_text("tampered")
    run(counted, cell)
    assert executions(counted) == 1 and cellcache.last_run().hit
    assert (workdir / "model.bin").read_bytes() == b"weights" * 100
    assert (workdir / "plots" / "a.txt").read_text() == "plot"


def test_out_not_produced_is_a_clear_error_and_nothing_is_stored(counted, store_dir, capsys):
    cell = counting_cell("value = 7", "promise -o never.bin")
    result = counted.run_cell(cell)
    assert not result.success and isinstance(result.error_in_exec, OutNotProduced)
    assert "'never.bin' was declared with --outs but the cell did not produce it" in capsys.readouterr().err
    assert counted.user_ns["value"] == 7  # the result stays
    assert not list((store_dir / "entries").glob("*/*/*.json"))


# ---------------------------------------------------------------- implicit deps


READERS = {
    "open": "value = open('input.dat').read()",
    "pathlib": "import pathlib\nvalue = pathlib.Path('input.dat').read_text()",
    "json": "import json\nvalue = json.load(open('input.dat'))",
    "pandas": "import pandas as pd\nvalue = pd.read_csv('input.dat').to_dict()",
    "numpy": "import numpy as np\nvalue = np.load('input.dat', allow_pickle=False).tolist()",
}


def write_input(workdir: Path, kind: str, version: int) -> None:
    path = workdir / "input.dat"
    if kind == "json":
        path.write_text(json.dumps({"v": version}))
    elif kind == "pandas":
        path.write_text(f"v\n{version}\n")
    elif kind == "numpy":
        import numpy as np

        with open(path, "wb") as f:
            np.save(f, np.array([version]))
    else:
        path.write_text(f"version {version}")


@pytest.mark.parametrize("kind", sorted(READERS))
def test_files_read_by_the_cell_are_implicit_deps(counted, workdir, kind):
    write_input(workdir, kind, 1)
    cell = counting_cell(READERS[kind], f"read_{kind}")
    run(counted, cell)
    run(counted, cell)
    assert executions(counted) == 1
    write_input(workdir, kind, 2)
    run(counted, cell)
    assert executions(counted) == 2
    assert reason() == "implicit file input.dat changed"


def test_implicit_dep_that_disappears_is_a_miss(counted, workdir):
    (workdir / "cfg.txt").write_text("x")
    cell = counting_cell("import os\ncfg = open('cfg.txt').read() if os.path.exists('cfg.txt') else None", "cfg")
    run(counted, cell)
    (workdir / "cfg.txt").unlink()
    run(counted, cell)
    assert executions(counted) == 2 and reason() == "implicit file cfg.txt is gone"


def test_written_appended_and_self_written_files_are_not_deps(counted, workdir, store_dir):
    (workdir / "log.txt").write_text("start\n")
    cell = counting_cell(
        "open('out.txt', 'w').write('made')\n"
        "open('log.txt', 'a').write('ran\\n')\n"
        "echo = open('out.txt').read()\n"
        "import json, numpy\n",
        "writer",
    )
    run(counted, cell)
    manifest = next((store_dir / "entries").glob("*/*/*.json"))
    implicit = json.loads(manifest.read_bytes().split(b"\n", 1)[1])["implicit"]
    assert implicit == []  # not out.txt (the cell wrote it), not log.txt (appended), not site-packages or stdlib
    (workdir / "out.txt").write_text("changed by someone")
    (workdir / "log.txt").write_text("rotated\n")
    run(counted, cell)
    assert executions(counted) == 1


def test_audit_hook_is_inert_outside_a_cached_cell(counted, workdir):
    (workdir / "f.txt").write_text("x")
    run(counted, counting_cell("v = open('f.txt').read()", "reader"))
    assert files._active is None
    run(counted, "w = open('f.txt').read()")  # a plain cell records nothing anywhere
    assert files._active is None


# ---------------------------------------------------------------- packages


def test_package_version_change_is_a_miss(counted, tmp_path):
    # A real (tiny) installed distribution: a site-packages folder with a .dist-info.
    site = tmp_path / "site-packages"
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("VALUE = 1\n")

    def install(version: str) -> None:
        for old in site.glob("fakepkg-*.dist-info"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        info = site / f"fakepkg-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
        (info / "top_level.txt").write_text("fakepkg\n")

    install("1.0")
    sys.path.insert(0, str(site))
    try:
        cell = counting_cell("import fakepkg\nv = fakepkg.VALUE", "pkg")
        run(counted, cell)
        # An unrelated package appearing in the same site-packages is not a reason to re-run.
        other = site / "otherpkg-3.0.dist-info"
        other.mkdir()
        (other / "METADATA").write_text("Metadata-Version: 2.1\nName: otherpkg\nVersion: 3.0\n")
        run(counted, cell)
        assert executions(counted) == 1
        install("2.0")
        run(counted, cell)
        assert executions(counted) == 2
        assert reason() == "package fakepkg 1.0 → 2.0"
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("fakepkg", None)


# ---------------------------------------------------------------- local modules


def test_editing_a_local_module_invalidates_exactly_its_users(counted, workdir):
    (workdir / "proj_utils.py").write_text("import proj_helpers\ndef scale(v):\n    return proj_helpers.k() * v\n")
    (workdir / "proj_helpers.py").write_text("def k():\n    return 2\n")
    sys.path.insert(0, str(workdir))
    cells = {
        "imports": counting_cell("import proj_utils\na = proj_utils.scale(1)", "imports"),
        "reads_module": counting_cell("b = utils_mod.scale(1)", "reads_module"),
        "unrelated": counting_cell("c = 3", "unrelated"),
    }
    try:
        run(counted, "import proj_utils as utils_mod")
        for source in cells.values():
            run(counted, source)
        assert executions(counted) == 3
        # A transitive edit: proj_utils itself is unchanged, the module it imports is not.
        (workdir / "proj_helpers.py").write_text("def k():\n    return 5\n")
        for mod in ("proj_utils", "proj_helpers"):
            sys.modules.pop(mod, None)
        run(counted, "import proj_utils as utils_mod")
        missed = {}
        for step, source in cells.items():
            run(counted, source)
            missed[step] = not cellcache.last_run().hit
        assert missed == {"imports": True, "reads_module": True, "unrelated": False}
        assert counted.user_ns["a"] == 5 and counted.user_ns["b"] == 5
    finally:
        sys.path.remove(str(workdir))
        for mod in ("proj_utils", "proj_helpers"):
            sys.modules.pop(mod, None)


def test_a_function_from_a_local_module_is_keyed_by_its_code(counted, workdir):
    (workdir / "proj_fn.py").write_text("def f(v):\n    return v + 1\n")
    sys.path.insert(0, str(workdir))
    try:
        run(counted, "from proj_fn import f")
        cell = counting_cell("y = f(1)", "calls")
        run(counted, cell)
        (workdir / "proj_fn.py").write_text("def f(v):\n    return v + 100\n")
        sys.modules.pop("proj_fn", None)
        run(counted, "from proj_fn import f")
        run(counted, cell)
        assert executions(counted) == 2 and counted.user_ns["y"] == 101
        assert reason().startswith("input `f` changed")
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("proj_fn", None)


def test_system_library_and_store_files_are_not_implicit_deps(counted, workdir, store_dir):
    run(counted, counting_cell("warm = 1", "warmup"))  # the store exists, with a blob to read
    blob = next(p for p in (store_dir / "blobs").rglob("*") if p.is_file())
    cell = counting_cell(
        "import json as _json, numpy as _np\n"
        "status = open('/proc/self/status').read()[:10]\n"
        "stdlib_src = open(_json.__file__).read()[:10]\n"
        "site_src = open(_np.__file__).read()[:10]\n"
        f"store_bytes = open({str(blob)!r}, 'rb').read(4)\n"
        "mine = open('mine.txt').read()",
        "exclusions",
    )
    (workdir / "mine.txt").write_text("kept")
    run(counted, cell)
    manifest = max((store_dir / "entries").glob("*/*/*.json"), key=lambda p: p.stat().st_mtime)
    implicit = json.loads(manifest.read_bytes().split(b"\n", 1)[1])["implicit"]
    assert [d["path"] for d in implicit] == ["mine.txt"]


# ---------------------------------------------------------------- hidden file deps


@pytest.mark.parametrize(
    "body",
    [
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(2) as pool:\n    text = list(pool.map(lambda p: open(p).read(), ['t.txt']))[0]\ndel pool",
        "from joblib import Parallel, delayed\n"
        "text = Parallel(n_jobs=2, backend='threading')(delayed(lambda p: open(p).read())(p) for p in ['t.txt'])[0]",
    ],
    ids=["ThreadPoolExecutor", "joblib-threading"],
)
def test_files_read_by_threads_the_cell_starts_are_implicit_deps(counted, workdir, body):
    name = "threads_" + str(len(body))
    (workdir / "t.txt").write_text("one")
    # the path is built, not written as a literal, so only the threads' opens can reveal it
    cell = counting_cell(body.replace("'t.txt'", "'t' + '.txt'"), name)
    run(counted, cell)
    run(counted, cell)
    assert executions(counted) == 1
    (workdir / "t.txt").write_text("two")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["text"] == "two"
    assert reason() == "implicit file t.txt changed"


@pytest.mark.parametrize(
    "listing",
    [
        "sorted(glob.glob('data/*.csv'))",
        "sorted(os.listdir('data'))",
        "sorted(e.name for e in os.scandir('data'))",
        "sorted(str(p) for p in pathlib.Path('data').glob('*.csv'))",
        "sorted(p.name for p in pathlib.Path('data').iterdir())",
    ],
    ids=["glob", "listdir", "scandir", "Path.glob", "Path.iterdir"],
)
def test_directory_listings_are_implicit_deps(counted, workdir, listing):
    (workdir / "data").mkdir()
    (workdir / "data" / "a.csv").write_text("1")
    cell = counting_cell(f"import glob, os, pathlib\nnames = {listing}", "lister")
    run(counted, cell)
    run(counted, cell)
    assert executions(counted) == 1
    (workdir / "data" / "b.csv").write_text("2")  # a new match
    run(counted, cell)
    assert executions(counted) == 2 and len(counted.user_ns["names"]) == 2
    (workdir / "data" / "b.csv").unlink()  # a removed match: back to the first listing, whose entry holds
    run(counted, cell)
    assert executions(counted) == 2 and len(counted.user_ns["names"]) == 1


def test_a_glob_depends_on_its_matches_not_on_every_name_in_the_folder(counted, workdir):
    (workdir / "data").mkdir()
    (workdir / "data" / "a.csv").write_text("1")
    cell = counting_cell("import glob\nnames = glob.glob('data/*.csv')", "globber")
    run(counted, cell)
    (workdir / "data" / "notes.txt").write_text("irrelevant")
    run(counted, cell)
    assert executions(counted) == 1


def test_files_named_by_literals_and_string_inputs_are_deps_for_native_readers(counted, workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"v": [1, 2]}), workdir / "t.parquet")
    cell = counting_cell("import pyarrow.parquet as pq\ntotal = pq.read_table('t.parquet').column('v').to_pylist()", "arrow")
    run(counted, cell)
    run(counted, cell)
    assert executions(counted) == 1
    pq.write_table(pa.table({"v": [1, 2, 3]}), workdir / "t.parquet")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["total"] == [1, 2, 3]
    counted.user_ns["source"] = str(workdir / "t.parquet")
    by_input = counting_cell("import pyarrow.parquet as pq\nn = pq.read_metadata(source).num_rows", "arrow_input")
    run(counted, by_input)
    pq.write_table(pa.table({"v": [1]}), workdir / "t.parquet")
    run(counted, by_input)
    assert executions(counted) == 4 and counted.user_ns["n"] == 1


def test_a_rewrite_that_restores_size_and_mtime_is_seen(counted, workdir):
    import time

    path = workdir / "same.txt"
    path.write_text("aaaa")
    cell = counting_cell("v = open('same.txt').read()", "ctime")
    run(counted, cell)
    stat = path.stat()
    time.sleep(0.01)
    path.write_text("bbbb")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["v"] == "bbbb"


def test_only_named_tool_caches_are_left_out(counted, workdir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".cache" / "datasets").mkdir(parents=True)
    (home / ".cache" / "matplotlib").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    (home / ".cache" / "datasets" / "d.csv").write_text("1")
    (home / ".cache" / "matplotlib" / "fontlist.json").write_text("{}")
    path = ' + '.join(["__import__('os').path.expanduser('~/.cache/')", "'{}'"])
    cell = counting_cell(
        f"data = open({path.format('datasets/d.csv')}).read()\nfonts = open({path.format('matplotlib/fontlist.json')}).read()",
        "home_cache",
    )
    run(counted, cell)
    (home / ".cache" / "matplotlib" / "fontlist.json").write_text('{"rebuilt": 1}')
    run(counted, cell)
    assert executions(counted) == 1  # a tool's cache is not the cell's business
    (home / ".cache" / "datasets" / "d.csv").write_text("2")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["data"] == "2"


def test_switching_a_data_file_back_hits_the_earlier_variant(counted, workdir):
    path = workdir / "input.txt"
    cell = counting_cell("v = open('input.txt').read()", "variants")
    path.write_text("first")
    run(counted, cell)
    path.write_text("second")
    run(counted, cell)
    assert executions(counted) == 2
    path.write_text("first")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["v"] == "first"
    path.write_text("second")
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["v"] == "second"


# ---------------------------------------------------------------- local modules, as imported


@pytest.fixture
def local_pkg(workdir, monkeypatch):
    package = workdir / "lpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")  # imports nothing: only the cell's import reaches sub
    (package / "sub.py").write_text("def f():\n    return 1\n")
    (package / "other.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(workdir))
    yield package
    for name in [m for m in sys.modules if m == "lpkg" or m.startswith("lpkg.")]:
        del sys.modules[name]


@pytest.mark.parametrize("body", ["import lpkg.sub\ny = lpkg.sub.f()", "from lpkg import sub\ny = sub.f()"])
def test_every_submodule_the_imports_reach_is_keyed(counted, local_pkg, body):
    cell = counting_cell(body, "submodule")
    run(counted, cell)
    (local_pkg / "other.py").write_text("X = 2\n")  # not reached by the cell
    run(counted, cell)
    assert executions(counted) == 1
    (local_pkg / "sub.py").write_text("def f():\n    return 2\n")
    for name in ("lpkg", "lpkg.sub"):
        sys.modules.pop(name, None)  # a fresh kernel: the cell imports the new source
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["y"] == 2
    assert "module lpkg.sub changed" in reason()


def test_a_module_edited_but_not_reloaded_is_keyed_on_the_imported_code(counted, local_pkg):
    import importlib

    cell = counting_cell("import lpkg.sub\ny = lpkg.sub.f()", "not_reloaded")
    run(counted, cell)
    (local_pkg / "sub.py").write_text("def f():\n    return 2\n")
    with pytest.warns(cellcache.CacheWarning, match=r"lpkg.sub changed on disk since it was imported.*reload"):
        run(counted, cell)
    # the kernel still runs the old code: the old result is right, and stays under the old code's key
    assert executions(counted) == 1 and counted.user_ns["y"] == 1
    importlib.reload(sys.modules["lpkg.sub"])
    run(counted, cell)
    assert executions(counted) == 2 and counted.user_ns["y"] == 2


def test_files_a_local_module_reads_at_import_are_deps_of_cells_using_it(counted, workdir, store_dir, monkeypatch):
    (workdir / "params.json").write_text('{"scale": 2}')
    (workdir / "cfgmod.py").write_text("import json\nPARAMS = json.load(open('params.json'))\nVALUE = PARAMS['scale']\n")
    monkeypatch.syspath_prepend(str(workdir))
    try:
        run(counted, "import cfgmod")  # imported by a plain cell: no cached run sees the read
        run(counted, counting_cell("y = cfgmod.VALUE * 10", "uses_cfg"))
        manifest = max((store_dir / "entries").glob("*/*/*.json"), key=lambda p: p.stat().st_mtime)
        implicit = json.loads(manifest.read_bytes().split(b"\n", 1)[1])["implicit"]
        assert [d["path"] for d in implicit] == ["params.json"]
    finally:
        sys.modules.pop("cfgmod", None)


def test_a_new_file_beside_the_notebook_does_not_miss_a_cell_that_imports(workdir, store_dir):
    """The import system lists every folder on sys.path to find a module: that listing is not the cell's."""
    from tests.conftest import run_in_fresh_shell

    # The folder changed just before the cell: the import system lists it again while the cell imports.
    # invalidate_caches: the import system lists the folders on sys.path again during the cell, as it
    # does in a kernel when the folder changed since the last import (a notebook written beside it).
    cell = "sh.run_cell('%%cached imports\\nimport importlib\\nimportlib.invalidate_caches()\\nimport colorsys\\nx = 1').raise_error()"
    report = "import cellcache; print('HIT' if cellcache.last_run().hit else 'MISS', cellcache.last_run().reason)"
    first = run_in_fresh_shell(cell + "\n" + report, store_dir, workdir, prelude="import sys; sys.path.insert(0, '')")
    (workdir / "executed.ipynb").write_text("{}")  # what a batch run or a figure leaves beside the notebook
    second = run_in_fresh_shell(cell + "\n" + report, store_dir, workdir, prelude="import sys; sys.path.insert(0, '')")
    assert first.splitlines()[-1].startswith("MISS") and second.splitlines()[-1].startswith("HIT"), second


def test_a_listing_the_cell_makes_itself_is_still_a_dependency(counted, workdir):
    (workdir / "data").mkdir()
    (workdir / "data" / "a.csv").write_text("1")
    cell = counting_cell("import os, json\nnames = sorted(os.listdir('data'))", "own-listing")
    run(counted, cell)
    (workdir / "data" / "b.csv").write_text("2")
    run(counted, cell)
    assert not cellcache.last_run().hit and counted.user_ns["names"] == ["a.csv", "b.csv"]


def test_exclusion_follows_links_out_of_an_excluded_folder(tmp_path: Path) -> None:
    """A package folder symlinked to the project (a symlink install) is the project's: its files stay deps."""
    from cellcache.cell.files import OpenRecorder

    excluded, project = tmp_path / "site-packages", tmp_path / "project"
    excluded.mkdir()
    project.mkdir()
    (project / "data.txt").write_text("x")
    (excluded / "linked").symlink_to(project)
    (excluded / "own.txt").write_text("y")
    (project / "into-site").symlink_to(excluded / "own.txt")
    recorder = OpenRecorder(exclude=[excluded])
    assert recorder.excluded(str(excluded / "own.txt"))
    assert recorder.excluded(str(project / "into-site"))  # a link into the excluded folder is excluded
    assert not recorder.excluded(str(excluded / "linked" / "data.txt"))
    assert not recorder.excluded(str(project / "data.txt"))
