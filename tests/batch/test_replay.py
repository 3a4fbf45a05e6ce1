"""Replay without a kernel (cellcache.batch.replay): an unchanged notebook is written from its last run, in real kernels.

For every kind of input the run depended on, a change is seen and the notebook
runs in a kernel again; an irrelevant change still replays; a run with a side
effect, or whose outputs change from run to run, is never replayed.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell

from cellcache import batch, config as _config
from cellcache.batch import RunOptions
from cellcache.errors import ConfigError
from tests.batch.helpers import cellcache, write_nb

AUTO = RunOptions(auto=True)

SOURCES = (
    "import os, glob\nimport numpy as np\nfrom helper import scale",
    "with open('data.csv') as f:\n    rows = [float(x) for x in f.read().split()]\nprint('rows', rows)",
    # A native read, which no audit hook sees: the file is only named in the code.
    "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.fopen.restype = ctypes.c_void_p\nlibc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]\n"
    "libc.fread.argtypes = libc.fclose.argtypes = None\nf = libc.fopen('blob.bin'.encode(), b'rb')\nbuf = ctypes.create_string_buffer(3)\n"
    "libc.fread(buf, 1, 3, ctypes.c_void_p(f))\nlibc.fclose(ctypes.c_void_p(f))\nprint('blob', sum(buf.raw))",
    "print('scaled', scale(sum(rows)))",
    "print('inputs', sorted(os.path.basename(p) for p in glob.glob('inputs/*.txt')))",
    "print('mode', os.environ.get('DEMO_MODE', 'default'))",
)


def _project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (tmp_path / "data.csv").write_text("1 2 3\n")
    (tmp_path / "blob.bin").write_bytes(bytes([1, 2, 3]))
    (tmp_path / "helper.py").write_text("def scale(x):\n    return x * 10\n")
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("a")
    return write_nb(tmp_path / "analysis.ipynb", *SOURCES)


def _run(path: Path, options: RunOptions = AUTO) -> batch.NotebookResult:
    result = batch.run_notebook(path, options)
    assert result.ok, (result.error, result.failed_cells)
    return result


def _text(out: Path) -> str:
    nb = nbformat.read(out, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _confirmed(path: Path) -> batch.NotebookResult:
    """Two runs record and confirm; the third is a replay."""
    first, second = _run(path), _run(path)
    assert first.replayed is None and second.replayed is None
    return second


def test_an_unchanged_notebook_is_replayed_and_each_kind_of_input_change_runs_it_again(tmp_path, monkeypatch):
    path = _project(tmp_path)
    out = tmp_path / "out"
    options = RunOptions(auto=True, output_dir=out)
    _run(path, options)
    second = _run(path, options)
    ran = _text(out / path.name)
    third = _run(path, options)
    assert third.replayed is not None
    assert _text(out / path.name) == ran  # the same outputs, without a kernel
    assert "rows [1.0, 2.0, 3.0]" in ran and "blob 6" in ran and "scaled 60.0" in ran
    assert [c.status for c in third.cells] == [c.status for c in second.cells]
    assert third.saved_seconds > 0

    # Irrelevant changes: a file written again with the same bytes, a new file nobody reads, a markdown cell.
    (tmp_path / "data.csv").write_text("1 2 3\n")
    (tmp_path / "notes.txt").write_text("not read")
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, new_markdown_cell("# A title"))
    nbformat.write(nb, path)
    assert _run(path, options).replayed is not None

    # Each kind of input, changed: seen before any kernel starts; put back: replayed again, so the check saw that change.
    data, blob, helper = tmp_path / "data.csv", tmp_path / "blob.bin", tmp_path / "helper.py"
    original = nbformat.read(path, as_version=4)
    changes = [
        ("a file it reads", lambda: data.write_text("1 2 4\n"), lambda: data.write_text("1 2 3\n")),
        ("a file only named in its code", lambda: blob.write_bytes(bytes([1, 2, 9])), lambda: blob.write_bytes(bytes([1, 2, 3]))),
        ("a local module", lambda: helper.write_text("def scale(x):\n    return x * 100\n"), lambda: helper.write_text("def scale(x):\n    return x * 10\n")),
        ("a globbed folder", lambda: (tmp_path / "inputs" / "b.txt").write_text("b"), lambda: (tmp_path / "inputs" / "b.txt").unlink()),
        ("an environment variable", lambda: monkeypatch.setenv("DEMO_MODE", "fast"), lambda: monkeypatch.delenv("DEMO_MODE")),
        ("a cell's code", lambda: _edit_last_cell(path), lambda: nbformat.write(original, path)),
    ]
    for what, change, revert in changes:
        change()
        assert _replays(path) is False, what
        revert()
        assert _replays(path) is True, what

    # And through a kernel: the new input gives the new output, with nothing to explain.
    data.write_text("1 2 4\n")
    changed = _run(path, options)
    assert changed.replayed is None and changed.replay_note is None
    assert "rows [1.0, 2.0, 4.0]" in _text(out / path.name)

    # Never with --force, with cellcache disabled, or with the setting off: no ticket at all.
    assert _replays(path, RunOptions(auto=True, force=True)) is None
    for name, value in (("CELLCACHE_DISABLE", "1"), ("CELLCACHE_AUTO_REPLAY", "0")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert _replays(path) is None, name


def _replays(path: Path, options: RunOptions = AUTO) -> bool | None:
    """What the batch decides before starting a kernel (None: it would not even look), without running anything."""
    from cellcache.batch import replay
    from cellcache.batch.kernel import kernel_env
    from cellcache.batch.notebook import read_notebook
    from cellcache.batch.scheduler import replay_ticket

    nb = read_notebook(path)
    ticket = replay_ticket(nb, path, options, kernel_env(path.parent.resolve(), notebook=path))
    return None if ticket is None else replay.replay(nb, ticket, path.parent.resolve()) is not None


def _edit_last_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source = "print('mode:', os.environ.get('DEMO_MODE', 'default'))"
    nbformat.write(nb, path)


def test_outputs_that_change_from_run_to_run_are_never_replayed(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "clock.ipynb", "import time", "print(time.time_ns())")
    results = [_run(path) for _ in range(3)]
    assert [r.replayed for r in results] == [None, None, None]
    assert results[0].replay_note is None  # a first run: nothing to compare yet
    assert "cell 1's output differs from the last run's" in results[2].replay_note


@pytest.mark.parametrize(
    "effect",
    [
        "import tempfile\nwith tempfile.NamedTemporaryFile('w', suffix='.txt', delete=False) as f:\n    f.write('x')",
        "import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'], check=True)",
        "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\nc = socket.create_connection(s.getsockname())\nc.close(); s.close()",
    ],
    ids=["file written outside the project", "subprocess", "socket"],
)
def test_a_run_with_a_side_effect_is_never_recorded_for_replay(tmp_path, effect):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "effect.ipynb", "x = 1", effect, "print(x)")
    first = _run(path)
    assert not list((tmp_path / ".cellcache" / "replay").glob("*.json"))
    assert first.replay_note.startswith("not replayed without a kernel: ")
    # The same notebook without the effect is recorded: what the assertion above saw was the effect.
    write_nb(path, "x = 1", "y = 2", "print(x)")
    _run(path)
    assert len(list((tmp_path / ".cellcache" / "replay").glob("*.json"))) == 1


def test_a_corrupt_record_runs_the_notebook_and_is_rewritten(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "nb.ipynb", "print('hello')")
    _confirmed(path)
    (record,) = (tmp_path / ".cellcache" / "replay").glob("*.json")
    record.write_text("{not json")
    again = _run(path)
    assert again.replayed is None and again.ok
    signature, body = record.read_bytes().split(b"\n", 1)
    assert len(signature) == 64 and json.loads(body)["version"] == 1


def test_a_planted_record_is_never_replayed(tmp_path):
    """Someone who can write the store folder but has not the user's key can't put outputs into a notebook."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "nb.ipynb", "print('hello')")
    out = tmp_path / "out"
    _confirmed(path)
    (record,) = (tmp_path / ".cellcache" / "replay").glob("*.json")
    signature, body = record.read_bytes().split(b"\n", 1)
    planted = body.replace(b"hello", b"pwned")
    assert planted != body
    record.write_bytes(signature + b"\n" + planted)  # the old signature, over new content
    again = _run(path, RunOptions(auto=True, output_dir=out))
    assert again.replayed is None
    assert "hello" in _text(out / path.name) and "pwned" not in _text(out / path.name)
    record.write_bytes(planted)  # no signature at all
    assert _run(path, RunOptions(auto=True, output_dir=out)).replayed is None
    assert "pwned" not in _text(out / path.name)


def test_without_auto_mode_nothing_is_replayed(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "nb.ipynb", "%%cached step\nx = 1", "print(x)")
    for _ in range(3):
        assert _run(path, RunOptions()).replayed is None
    assert not (tmp_path / ".cellcache" / "replay").exists()


def test_the_cli_says_the_notebook_was_replayed(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "nb.ipynb", "print('hello')")
    reports = []
    for _ in range(3):  # the CLI's environment is the key's, not this process's: it records and confirms its own
        done = cellcache("run", "--auto", "--json", path.name, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout)["notebooks"][0])
    assert [bool(r["replayed"]) for r in reports] == [False, False, True]
    assert reports[2]["cells"][0]["status"] == reports[1]["cells"][0]["status"]
    table = cellcache("run", "--auto", path.name, cwd=tmp_path)
    assert "replayed without a kernel" in table.stdout


def test_a_run_that_uses_a_database_file_is_never_recorded_but_one_in_memory_is(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    replays = tmp_path / ".cellcache" / "replay"
    path = write_nb(tmp_path / "db.ipynb", "import sqlite3\ndb = sqlite3.connect('rows.db')\ndb.execute('create table if not exists t (x)')\ndb.commit()")
    _run(path)
    assert not list(replays.glob("*.json"))
    write_nb(path, "import sqlite3\ndb = sqlite3.connect(':memory:')\ndb.execute('create table t (x)')")
    _run(path)
    assert len(list(replays.glob("*.json"))) == 1


def test_a_replay_counts_in_the_ledger_and_invalidating_a_step_withdraws_every_replay(tmp_path):
    from cellcache.store.local import LocalStore

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "nb.ipynb", "import time\ntime.sleep(0.2)\nx = 41", "print(x + 1)")
    # A miss and a hit may show differently (the hit's "restored" marker): the hit runs confirm each other.
    results = [_run(path) for _ in range(4)]
    assert results[-1].replayed is not None
    step = next(c.step for c in results[-1].cells if c.status == "hit")
    hits_in_runs = sum(c.status == "hit" and c.step == step for r in results for c in r.cells)
    store = LocalStore(tmp_path / ".cellcache")
    (row,) = [r for r in store.step_rows() if r.name == step]
    store.close()
    assert row.hits == hits_in_runs == 3  # two in kernels, one replayed: `stats` and the panel count every run
    done = cellcache("invalidate", step, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    again = _run(path)
    assert again.replayed is None
    assert again.cells[0].status == "miss"  # the user asked for the step to run again, and it did


def test_a_file_the_run_writes_is_replayed_while_it_is_as_the_run_left_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    path = write_nb(tmp_path / "fig.ipynb", "from pathlib import Path\nPath('figure.svg').write_text('<svg/>')\nprint('saved')")
    _confirmed(path)
    assert _run(path).replayed is not None
    (tmp_path / "figure.svg").unlink()
    again = _run(path)
    assert again.replayed is None  # a replay would not write it: the kernel does
    assert (tmp_path / "figure.svg").read_text() == "<svg/>"


def test_the_setting_is_a_boolean_from_the_project_or_the_environment(tmp_path):
    assert _config.resolve(cwd=tmp_path, env={}).auto_replay is True
    assert _config.resolve(cwd=tmp_path, env={"CELLCACHE_AUTO_REPLAY": "0"}).auto_replay is False
    (tmp_path / "pyproject.toml").write_text("[tool.cellcache]\nauto_replay = false\n")
    assert _config.resolve(cwd=tmp_path, env={}).auto_replay is False
    (tmp_path / "pyproject.toml").write_text("[tool.cellcache]\nauto_replay = 'no'\n")
    with pytest.raises(ConfigError, match="auto_replay must be true or false"):
        _config.resolve(cwd=tmp_path, env={})
