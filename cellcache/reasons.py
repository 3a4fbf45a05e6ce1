"""Why a step hit or missed, in one short line, from its key components."""
from __future__ import annotations

from typing import Mapping

FIRST_RUN = "first run of this step"
HIT = "hit: code, inputs and files unchanged"
FORCED = "forced (--force)"
INVALIDATED = "invalidated"
TTL_EXPIRED = "ttl expired"
STRATEGY_OFF = "strategy off"
DISABLED = "cellcache disabled"

# The order in which differences are reported: the broadest cause first, so
# that "Python version changed" is not buried under a list of inputs.
_KIND_ORDER = ("format", "python", "strategy", "code", "package", "module", "file", "implicit", "input")

_MAX_LISTED = 3


def _kind_and_name(component: str) -> tuple[str, str]:
    kind, _, name = component.partition(":")
    return kind, name


def _phrase(component: str, old: str | None, new: str | None, descriptions: tuple[Mapping[str, str], Mapping[str, str]]) -> str:
    kind, name = _kind_and_name(component)
    if kind == "format":
        return "cache format changed"
    if kind == "python":
        return f"Python version changed ({old} → {new})"
    if kind == "strategy":
        return f"strategy changed ({old} → {new})"
    if kind == "code":
        return "code changed" if old and new else ("code now keyed" if new else "code no longer keyed")
    if kind == "package":
        if old is None:
            return f"package {name} is new ({new})"
        if new is None:
            return f"package {name} no longer used"
        return f"package {name} {old} → {new}"
    label = {"module": "module", "file": "file", "implicit": "implicit file", "input": "input"}.get(kind, kind)
    shown = f"`{name}`" if kind == "input" else name
    if old is None:
        return f"{label} {shown} is new"
    if new is None:
        return f"{label} {shown} is gone"
    old_desc, new_desc = descriptions[0].get(component), descriptions[1].get(component)
    if kind == "input" and old_desc and new_desc:
        detail = f" ({old_desc} → {new_desc})" if old_desc != new_desc else f" ({new_desc})"
        return f"{label} {shown} changed{detail}"
    return f"{label} {shown} changed"


def _sort_key(component: str) -> tuple[int, str]:
    kind, name = _kind_and_name(component)
    return (_KIND_ORDER.index(kind) if kind in _KIND_ORDER else len(_KIND_ORDER), name)


def differences(
    old: Mapping[str, str],
    new: Mapping[str, str],
    old_descriptions: Mapping[str, str] | None = None,
    new_descriptions: Mapping[str, str] | None = None,
) -> list[str]:
    descriptions = (old_descriptions or {}, new_descriptions or {})
    changed = [c for c in set(old) | set(new) if old.get(c) != new.get(c)]
    return [_phrase(c, old.get(c), new.get(c), descriptions) for c in sorted(changed, key=_sort_key)]


def summarize(phrases: list[str]) -> str:
    if len(phrases) <= _MAX_LISTED:
        return "; ".join(phrases)
    return "; ".join(phrases[:_MAX_LISTED]) + f"; and {len(phrases) - _MAX_LISTED} more"


def explain_miss(
    old: Mapping[str, str] | None,
    new: Mapping[str, str],
    old_descriptions: Mapping[str, str] | None = None,
    new_descriptions: Mapping[str, str] | None = None,
) -> str:
    if old is None:
        return FIRST_RUN
    phrases = differences(old, new, old_descriptions, new_descriptions)
    # Same components but no entry: the entry was dropped (gc, clear, a broken blob).
    return summarize(phrases) if phrases else "no stored entry for this key"
