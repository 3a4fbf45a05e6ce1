"""What the store commands say about one entry or one step: ``cellcache show KEY``, ``invalidate [NB:]STEP``.

Plain functions over a store, so tests call them without the CLI.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cellcache.errors import BatchError
from cellcache.report import format_seconds, format_size


@dataclass(frozen=True)
class EntryInfo:
    """One entry, as ``cellcache show`` prints it."""

    key: str
    step: str
    notebook: str
    created: float
    seconds: float
    size: int
    inputs: tuple[tuple[str, str, str], ...]  # (name, digest, description)
    files: tuple[tuple[str, str], ...]  # (path, digest): --deps, then the implicit files the cell read
    outs: tuple[tuple[str, int], ...]  # (path, size)
    outputs: tuple[str, ...]  # the variables it restores
    other: tuple[tuple[str, str], ...]  # the remaining key components: code, packages, Python, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "step": self.step,
            "notebook": self.notebook,
            "created": self.created,
            "seconds": self.seconds,
            "size": self.size,
            "inputs": [{"name": n, "digest": d, "description": desc} for n, d, desc in self.inputs],
            "files": [{"path": p, "digest": d} for p, d in self.files],
            "outs": [{"path": p, "size": s} for p, s in self.outs],
            "outputs": list(self.outputs),
            "components": dict(self.other),
        }

    def render(self) -> str:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))
        lines = [
            f"key:      {self.key}",
            f"step:     {self.step}",
            f"notebook: {self.notebook or '(plain IPython)'}",
            f"created:  {created}",
            f"run time: {format_seconds(self.seconds)}",
            f"size:     {format_size(self.size)}",
            f"outputs:  {', '.join(self.outputs) or '-'}",
            "inputs:" if self.inputs else "inputs:   -",
        ]
        lines += [f"  {name}: {desc or '?'}  ({digest[:12]})" for name, digest, desc in self.inputs]
        lines.append("files:" if self.files else "files:    -")
        lines += [f"  {path}  ({digest[:12]})" for path, digest in self.files]
        lines.append("outs:" if self.outs else "outs:     -")
        lines += [f"  {path}  ({format_size(size)})" for path, size in self.outs]
        if self.other:
            lines.append("key components:")
            lines += [f"  {name}: {value}" for name, value in self.other]
        return "\n".join(lines)


def _full_key(store: Any, key: str) -> str:
    """An entry's key from a unique prefix of at least 4 characters, as git takes commits."""
    key = key.strip().lower()
    if len(key) < 4:
        raise BatchError(f"key {key!r} is too short: give at least 4 characters of it (see `cellcache ls`)")
    keys = sorted({row.key for row in store.entries()})  # reconciled: an entry the index missed is still shown
    matches = [k for k in keys if k.startswith(key)]
    if not matches:
        raise BatchError(f"no entry with key {key!r} in {store.root} (see `cellcache ls`)")
    if len(matches) > 1:
        raise BatchError(f"key {key!r} is ambiguous: it starts {', '.join(matches[:5])}{', ...' if len(matches) > 5 else ''}")
    return matches[0]


def describe_entry(store: Any, key: str) -> EntryInfo:
    full = _full_key(store, key)
    manifest = store.manifest(full)
    if manifest is None:
        # Removed by another process's gc or invalidate since it was listed: simply gone.
        raise BatchError(f"no entry with key {full} in {store.root} any more (removed since it was listed; see `cellcache ls`)")
    components = dict(manifest.components)
    descriptions = dict(manifest.descriptions)
    inputs = tuple(
        (name.partition(":")[2], digest, descriptions.get(name, ""))
        for name, digest in sorted(components.items())
        if name.startswith("input:")
    )
    files = tuple((name.partition(":")[2], digest) for name, digest in sorted(components.items()) if name.startswith("file:"))
    files += tuple((d.path, d.digest) for d in manifest.implicit)
    other = tuple((name, value) for name, value in sorted(components.items()) if not name.startswith(("input:", "file:")))
    size = getattr(manifest, "size", None)
    return EntryInfo(
        key=manifest.key,
        step=manifest.step,
        notebook=getattr(manifest, "notebook", "") or "",
        created=manifest.created,
        seconds=manifest.seconds,
        size=size if isinstance(size, int) else manifest.blob_size + sum(o.size for o in manifest.outs),
        inputs=inputs,
        files=files,
        outs=tuple((o.path, o.size) for o in manifest.outs),
        outputs=tuple(manifest.outputs),
        other=other,
    )


def invalidate(store: Any, text: str, notebook: str | None = None) -> tuple[str, int]:
    """Drop a step's entries: ``NB:STEP``, ``STEP`` with ``notebook``, or a ``STEP`` unique in the store.

    Returns the step as resolved and the number of entries dropped. An unknown or
    ambiguous name raises the store's StepError, whose message lists the candidates.
    """
    resolve = getattr(store, "resolve_step", None)
    if resolve is None:  # a store that does not know notebooks yet: names are global
        if notebook:
            raise BatchError(f"this store does not record notebooks yet: give the step {text!r} without --notebook")
        return repr(text), store.invalidate(text)
    ref = resolve(text, notebook=notebook)
    return repr(str(ref)), store.invalidate(ref)


__all__ = ["EntryInfo", "describe_entry", "invalidate"]
