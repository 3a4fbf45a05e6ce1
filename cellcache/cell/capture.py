"""Record what a cell shows while it runs, and show it again on a hit.

Streams are teed by patching ``write`` on the current stream objects rather
than replacing them, because ipykernel checks the stream classes and does
more than write (IPython's own history tee does the same).
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from cellcache.units import format_seconds

# Widget views refer to comm models that die with the kernel, so replaying
# them would show a broken widget; they are left out of recordings.
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# Displays that cellcache itself shows (the hit marker) carry this metadata key,
# so that a recording, a replay and a batch run can tell them from the cell's own.
OWN_METADATA = "cellcache"

Event = tuple  # ("stdout" | "stderr", text) or ("display", data, metadata)


@dataclass
class Recording:
    events: list[Event] = field(default_factory=list)
    result: tuple[dict, dict] | None = None  # the Out[] mimebundle: (data, metadata)
    # How many events came before Out[]: the inline backend shows figures after the
    # result (at post_execute), and a replay must keep that order.
    result_at: int | None = None
    widgets: bool = False  # an interactive widget was shown: auto mode runs such a cell plainly

    def append_text(self, channel: str, text: str) -> None:
        # Merge consecutive writes, so a print loop replays as one write, not thousands.
        if self.events and self.events[-1][0] == channel:
            self.events[-1] = (channel, self.events[-1][1] + text)
        else:
            self.events.append((channel, text))

    def as_record(self) -> dict[str, Any]:
        return {"events": list(self.events), "result": self.result, "result_at": self.result_at}


class _TeeStream:
    """Fallback for streams whose ``write`` can't be patched (a plain TextIOWrapper)."""

    def __init__(self, stream: Any, write: Any) -> None:
        self._stream, self.write = stream, write

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _patch(owner: Any, name: str, new: Any) -> Callable[[], None]:
    """Set ``owner.name = new``; return a function that puts back exactly what was there."""
    own = vars(owner) if hasattr(owner, "__dict__") else {}
    had, previous = name in own, own.get(name)
    setattr(owner, name, new)

    def restore() -> None:
        if had:
            setattr(owner, name, previous)
        else:
            delattr(owner, name)

    return restore


@contextmanager
def recording(shell: Any) -> Iterator[Recording]:
    rec = Recording()
    inside_display = [False]  # a display or Out[] printed to a terminal is not the cell's own stdout
    restores: list[Callable[[], None]] = []

    def tee(channel: str, original_write: Any) -> Any:
        def write(data: Any, *args: Any, **kwargs: Any) -> Any:
            written = original_write(data, *args, **kwargs)
            if data and not inside_display[0] and not getattr(shell, "showing_traceback", False):
                rec.append_text(channel, data if isinstance(data, str) else str(data))
            return written

        return write

    def while_displaying(original: Any, before: Callable[..., None]) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before(*args, **kwargs)
            inside_display[0] = True
            try:
                return original(*args, **kwargs)
            finally:
                inside_display[0] = False

        return wrapper

    def on_publish(data: Any = None, metadata: Any = None, *_: Any, **kwargs: Any) -> None:
        if isinstance(data, dict) and _WIDGET_MIME in data:
            rec.widgets = True
        if kwargs.get("update") or not isinstance(data, dict) or _WIDGET_MIME in data or is_own(metadata):
            return
        rec.events.append(("display", dict(data), dict(metadata or {})))

    def on_result(format_dict: dict, md_dict: dict | None = None) -> None:
        rec.widgets = rec.widgets or _WIDGET_MIME in format_dict
        if _WIDGET_MIME not in format_dict:
            rec.result = (dict(format_dict), dict(md_dict or {}))
            rec.result_at = len(rec.events)

    try:
        for channel in ("stdout", "stderr"):
            stream = getattr(sys, channel)
            try:
                restores.append(_patch(stream, "write", tee(channel, stream.write)))
            except AttributeError:
                restores.append(_patch(sys, channel, _TeeStream(stream, tee(channel, stream.write))))
        publisher, hook = shell.display_pub, shell.displayhook
        restores.append(_patch(publisher, "publish", while_displaying(publisher.publish, on_publish)))
        restores.append(_patch(hook, "write_format_data", while_displaying(hook.write_format_data, on_result)))
        # Terminal shells print the Out[] prompt outside write_format_data.
        restores.append(_patch(hook, "write_output_prompt", while_displaying(hook.write_output_prompt, lambda: None)))
        yield rec
    finally:
        for restore in reversed(restores):
            restore()


class ReplayedValue:
    """Stands in for a last-expression value that was shown but not stored."""

    def __init__(self, data: dict, metadata: dict) -> None:
        self._data, self._metadata = data, metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self._data, self._metadata

    def __repr__(self) -> str:
        return str(self._data.get("text/plain", "<cached output>"))


def is_own(metadata: Any) -> bool:
    """True for a display that cellcache showed itself (the hit marker), not the cell."""
    return isinstance(metadata, dict) and OWN_METADATA in metadata


def replay(shell: Any, record: dict[str, Any], result_value: Any = None) -> None:
    """Show again what the cell showed, in its order: streams, displays, and Out[] where it came."""
    events = list(record.get("events", ()))
    has_result = result_value is not None or record.get("result") is not None
    # Entries recorded before result_at existed showed Out[] last.
    result_at = record.get("result_at")
    result_at = len(events) if result_at is None else min(result_at, len(events))
    for i, event in enumerate(events):
        if i == result_at and has_result:
            _show_result(shell, record, result_value)
        if event[0] == "stdout":
            sys.stdout.write(event[1])
        elif event[0] == "stderr":
            sys.stderr.write(event[1])
        elif event[0] == "display":
            sys.stdout.flush()  # a display must not overtake the text written before it
            sys.stderr.flush()
            shell.display_pub.publish(data=event[1], metadata=event[2])
    if result_at == len(events) and has_result:
        _show_result(shell, record, result_value)
    sys.stdout.flush()
    sys.stderr.flush()


def _show_result(shell: Any, record: dict[str, Any], result_value: Any) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if result_value is not None:
        shell.displayhook(result_value)
    else:
        data, metadata = record["result"]
        shell.displayhook(ReplayedValue(data, metadata))


def marker_text(step: str, saved_seconds: float, remote: bool = False) -> str:
    """The one quiet line a hit adds to the cell's output."""
    where = "restored from the shared cache" if remote else "restored from cache"
    return f"↺ {where} · step {step} · saved {format_seconds(saved_seconds)}"


def show_marker(shell: Any, step: str, saved_seconds: float, remote: bool = False) -> None:
    """Publish the hit marker: a display carrying ``{"cellcache": {"marker": ...}}`` in its metadata.

    Its text/plain is the single line that terminals and plain-text front ends
    print; its text/html is the same line in small grey type.
    """
    import html

    text = marker_text(step, saved_seconds, remote)
    markup = (
        '<div class="cellcache-marker" title="cellcache restored this cell\'s results instead of running it" '
        'style="font-size:0.8em;opacity:0.6;margin:0;padding:0">' + html.escape(text) + "</div>"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    shell.display_pub.publish(
        data={"text/plain": text, "text/html": markup},
        metadata={OWN_METADATA: {"marker": True, "step": step, "saved_seconds": round(saved_seconds, 3)}},
    )
