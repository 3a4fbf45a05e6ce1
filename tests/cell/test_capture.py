"""What a hit shows: the quiet marker, and the cell's own output in its first order."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import cellcache
from cellcache.cell.capture import OWN_METADATA, is_own, marker_text

from tests.conftest import run


class Shown:
    """Everything a shell shows, in order: ("display", data, metadata) and ("result", data)."""

    def __init__(self, shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[Any, ...]] = []
        publisher, hook = shell.display_pub, shell.displayhook
        publish, write = publisher.publish, hook.write_format_data

        def on_publish(data: Any = None, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            self.events.append(("display", data, metadata or {}))
            return publish(data, metadata, *args, **kwargs)

        def on_result(format_dict: dict, md_dict: Any = None) -> Any:
            self.events.append(("result", format_dict))
            return write(format_dict, md_dict)

        monkeypatch.setattr(publisher, "publish", on_publish)
        monkeypatch.setattr(hook, "write_format_data", on_result)

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events

    @staticmethod
    def markers(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [e for e in events if e[0] == "display" and is_own(e[2])]


CELL = "%%cached fit\nimport time\ntime.sleep(0.05)\nmodel = x * 2\nprint('fitted')\n"


def test_a_hit_shows_one_marker_line_and_a_miss_none(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    shown = Shown(shell, monkeypatch)
    run(shell, "x = 21")
    run(shell, CELL)
    assert Shown.markers(shown.take()) == []
    capsys.readouterr()

    run(shell, CELL)
    markers = Shown.markers(shown.take())
    assert len(markers) == 1
    _, data, metadata = markers[0]
    assert metadata[OWN_METADATA]["marker"] is True and metadata[OWN_METADATA]["step"] == "fit"
    line = data["text/plain"]
    assert "\n" not in line and line.startswith("↺ restored from cache · step fit · saved ")
    assert "cellcache-marker" in data["text/html"]
    # The plain-text shell prints one short line, then the cell's own output.
    out = capsys.readouterr().out
    assert out.splitlines() == [line, "fitted"]


def test_marker_false_in_pyproject_turns_the_marker_off(shell: InteractiveShell, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shell.run_line_magic("unload_ext", "cellcache")
    (workdir / "pyproject.toml").write_text("[tool.cellcache]\nmarker = false\n")
    shell.run_line_magic("load_ext", "cellcache")
    shown = Shown(shell, monkeypatch)
    run(shell, "x = 21")
    run(shell, CELL)
    run(shell, CELL)
    assert cellcache.last_run().hit
    assert Shown.markers(shown.take()) == []


def test_the_marker_is_never_recorded_or_replayed(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    # A hit of a cell whose output held a marker-like display: only the cell's own display comes back.
    shown = Shown(shell, monkeypatch)
    cell = "%%cached show\nfrom IPython.display import display\ny = 1\ndisplay({'text/plain': 'own'}, raw=True)\n"
    run(shell, cell)
    shown.take()
    for _ in range(2):
        run(shell, cell)
        events = shown.take()
        assert len(Shown.markers(events)) == 1
        assert [e[1] for e in events if e[0] == "display" and not is_own(e[2])] == [{"text/plain": "own"}]


def test_figure_and_result_keep_their_order_on_a_hit(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("matplotlib_inline")
    from matplotlib_inline.backend_inline import configure_inline_support

    # What `%matplotlib inline` does in a kernel (the base shell has no GUI hooks for the magic).
    run(shell, "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\nimport matplotlib.pyplot as plt\nplt.close('all')\nplt.ion()")
    # It remembers, per process, the backend it last set up, and would skip this fresh shell.
    monkeypatch.setattr(configure_inline_support, "current_backend", "unset", raising=False)
    configure_inline_support(shell, "module://matplotlib_inline.backend_inline")
    request.addfinalizer(lambda: shell.run_cell("plt.ioff(); plt.close('all')"))
    shown = Shown(shell, monkeypatch)
    cell = (
        "%%cached plot\nimport matplotlib.pyplot as plt\nprint('before')\n"
        "fig = plt.figure(); plt.plot([1, 2, 3]); total = 6\ntotal\n"
    )
    run(shell, cell)
    first = [(e[0], sorted(e[1])) for e in shown.take()]
    assert ("result", ["text/plain"]) in first and any("image/png" in keys for _, keys in first), first
    run(shell, cell)
    again = [(e[0], sorted(e[1])) for e in shown.take() if not (e[0] == "display" and is_own(e[2]))]
    assert again == first


def test_old_recordings_without_result_at_still_show_the_result_last(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    from cellcache.cell.capture import replay

    shown = Shown(shell, monkeypatch)
    record = {"events": [("display", {"text/plain": "d"}, {})], "result": ({"text/plain": "r"}, {})}
    replay(shell, record)
    assert [e[0] for e in shown.take()] == ["display", "result"]


def test_steprun_and_info_print_readable_lines(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    run(shell, "x = 21")
    run(shell, CELL)
    run(shell, CELL)
    last = cellcache.last_run()
    assert str(last).startswith("fit: hit in ") and ", saved " in str(last) and "StepRun(" not in str(last)
    capsys.readouterr()
    run(shell, "import cellcache; cellcache.last_run()")
    assert capsys.readouterr().out.strip().endswith(str(last))
    shell.run_line_magic("cellcache", "info")
    info = capsys.readouterr().out
    assert "StepRun(" not in info and f"last run: {last}" in info


def test_marker_text() -> None:
    assert marker_text("fit", 12.34) == "↺ restored from cache · step fit · saved 12.3 s"
    assert marker_text("load", 0.25) == "↺ restored from cache · step load · saved 250 ms"
