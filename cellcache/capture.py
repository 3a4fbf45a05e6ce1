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

# Widget views refer to comm models that die with the kernel, so replaying
# them would show a broken widget; they are left out of recordings.
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

Event = tuple  # ("stdout" | "stderr", text) or ("display", data, metadata)


@dataclass
class Recording:
    events: list[Event] = field(default_factory=list)
    result: tuple[dict, dict] | None = None  # the Out[] mimebundle: (data, metadata)

    def append_text(self, channel: str, text: str) -> None:
        # Merge consecutive writes, so a print loop replays as one write, not thousands.
        if self.events and self.events[-1][0] == channel:
            self.events[-1] = (channel, self.events[-1][1] + text)
        else:
            self.events.append((channel, text))

    def as_record(self) -> dict[str, Any]:
        return {"events": list(self.events), "result": self.result}


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
        if not kwargs.get("update") and isinstance(data, dict) and _WIDGET_MIME not in data:
            rec.events.append(("display", dict(data), dict(metadata or {})))

    def on_result(format_dict: dict, md_dict: dict | None = None) -> None:
        if _WIDGET_MIME not in format_dict:
            rec.result = (dict(format_dict), dict(md_dict or {}))

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


def replay(shell: Any, record: dict[str, Any], result_value: Any = None) -> None:
    for event in record.get("events", ()):
        if event[0] == "stdout":
            sys.stdout.write(event[1])
        elif event[0] == "stderr":
            sys.stderr.write(event[1])
        elif event[0] == "display":
            shell.display_pub.publish(data=event[1], metadata=event[2])
    sys.stdout.flush()
    sys.stderr.flush()
    if result_value is not None:
        shell.displayhook(result_value)
    elif record.get("result") is not None:
        data, metadata = record["result"]
        shell.displayhook(ReplayedValue(data, metadata))
