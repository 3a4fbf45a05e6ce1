"""Why a step hit or missed, in one short line, from its key components."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from cellcache.units import format_seconds

FIRST_RUN = "first run of this step"
HIT = "hit: code, inputs and files unchanged"
HIT_REMOTE = "hit (remote): code, inputs and files unchanged; fetched from the shared store, signature and content checked"
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
    if kind == "rng":
        return f"{name} global random generator was reseeded or advanced" if old and new else f"{name} global random generator now keyed"
    if kind == "aliases":
        return f"aliasing among inputs changed ({old or 'none'} → {new or 'none'})"
    label = {
        "module": "module", "file": "file", "implicit": "implicit file", "input": "input",
        "attr": "attribute", "env": "environment variable", "state": "process state",
    }.get(kind, kind)  # fmt: skip
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
    # A module attribute appears or vanishes from the key as its module is loaded or not: worth
    # saying only when nothing else explains the miss.
    telling = [c for c in changed if not (c.startswith("attr:") and (c not in old or c not in new))]
    return [_phrase(c, old.get(c), new.get(c), descriptions) for c in sorted(telling or changed, key=_sort_key)]


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


def slower_hit(restore_seconds: float, run_seconds: float | None) -> str | None:
    """"restoring costs 99 ms, running 94 ms" when a hit costs more than running the cell did; else None."""
    if run_seconds is None or restore_seconds <= run_seconds:
        return None
    return f"restoring costs {format_seconds(restore_seconds)}, running {format_seconds(run_seconds)}"



# Why no stored entry could serve: local damage and a refused remote entry are different stories.
BROKEN = "stored entry was broken"
REMOTE_UNTRUSTED = "remote entry refused: its signer is not trusted"
REMOTE_UNSIGNED = "remote entry refused: unsigned or tampered"
REMOTE_UNUSABLE = "remote entry could not be used"


def unusable_entry(problem: str, remote: bool) -> str:
    """The reason of a miss whose only candidates were refused: name the real cause, not "broken"."""
    if not remote:
        return BROKEN
    if "not a trusted signer" in problem:
        return REMOTE_UNTRUSTED
    if any(word in problem for word in ("unsigned", "malformed", "signature", "squatted", "another signer", "another key")):
        return REMOTE_UNSIGNED
    return REMOTE_UNUSABLE


def ignore_hint(step: str, name: str, cause: str) -> str:
    """The warning of a cell whose input can't be fingerprinted, with what ``--ignore`` would cost."""
    return (
        f"cellcache: step {step!r} ran uncached: input `{name}` can't be fingerprinted ({cause}). "
        f"`--ignore {name}` would leave it out of the key: the cell would then never re-run when `{name}` changes. "
        f"It also leaves it out of the stored outputs: a hit does not restore `{name}`, so in a new kernel it stays "
        f"undefined until a plain cell defines it. Use it only for a value that does not affect the result "
        f"and that another cell creates."
    )


def ignored_not_restored(step: str, names: list[str]) -> str:
    """Said once, on a hit that leaves an ``--ignore``d name undefined, before a later cell's NameError."""
    listed = ", ".join(f"`{n}`" for n in names)
    return (
        f"cellcache: step {step!r} was restored without {listed}: --ignore keeps "
        f"{'it' if len(names) == 1 else 'them'} out of the store, so {'it is' if len(names) == 1 else 'they are'} "
        f"not defined after this hit. Define {'it' if len(names) == 1 else 'them'} in a plain cell, or drop --ignore."
    )

@dataclass(frozen=True)
class Reason:
    """One kind of reason, as the reference docs list it."""

    examples: tuple[str, ...]  # what --explain prints, with example names
    when: str


# Every reason a step can be given. ``docs/reference/reasons.md`` renders this, and a test
# checks that every reason constant above is listed here.
CATALOGUE: tuple[Reason, ...] = (
    Reason((HIT,), "the entry for this key exists, its implicit files are unchanged, and its ttl has not expired"),
    Reason((HIT_REMOTE,), "no local entry, but a trusted signer's entry on the shared store: its signature and blob hashes "
           "were checked, it was copied into the local store, and the next hit is local"),
    Reason((f"{HIT}; restoring costs 99 ms, running 94 ms",),
           "a hit that cost more than running the cell did: the step may be cheaper without ``%%cached``"),
    Reason((FIRST_RUN,), "the step has no earlier entry to compare with"),
    Reason(("code changed",), "the normalized code differs (comments and layout never count)"),
    Reason(("input `learning_rate` changed (0.05 → 0.1)", "input `df` changed (DataFrame 100x3 → DataFrame 120x3)"),
           "a variable the cell reads has another value; a scalar shows its old and new values, a container its type, "
           "shape or length"),
    Reason(("input `cfg` is new", "input `x` is gone"), "the cell reads a name that now exists, or no longer exists, in the namespace"),
    Reason(("file data/train.csv changed", "file data/new.csv is new", "file data/old.csv is gone"),
           "a ``--deps`` file changed content, or a file appeared in or vanished from a declared folder or glob"),
    Reason(("implicit file config.yaml changed", "implicit file config.yaml is gone"),
           "a file the cell read while it last ran (seen by an audit hook) changed or vanished"),
    Reason(("attribute settings.LR changed", "attribute np.mean changed"),
           "an attribute of a module the cell reads has another value (set by another cell, or monkeypatched)"),
    Reason(("environment variable DATA_DIR changed", "environment variable DATA_DIR is new"),
           "an environment variable the cell reads by a literal name has another value"),
    Reason(("numpy global random generator was reseeded or advanced",),
           "the cell draws from `random` or numpy's legacy `np.random.*`, and another cell reseeded or drew from it"),
    Reason(("aliasing among inputs changed (a=b → none)",), "two inputs were one object and now are two equal ones, or the reverse"),
    Reason(("process state matplotlib.rcParams changed", "process state pandas.options is new"),
           "process state the cell can be affected by was set since (a style, print options, pandas options): see the state probes"),
    Reason(("module utils changed",), "a local module the cell imports changed, or one that it imports in turn"),
    Reason(("package numpy 2.1.0 → 2.2.0", "package polars is new (1.9.0)", "package scipy no longer used"),
           "an installed package the cell imports has another version"),
    Reason(("Python version changed (CPython 3.11.7 → CPython 3.12.1)",), "another interpreter"),
    Reason(("strategy changed (code_hash → input_hash)",), "the ``--strategy`` flag changed"),
    Reason(("cache format changed",), "cellcache's entry format version changed"),
    Reason((TTL_EXPIRED,), "the entry is older than ``--ttl``"),
    Reason((FORCED,), "``--force``, or ``cellcache run --force``"),
    Reason((INVALIDATED,), "the step was invalidated (``%cellcache invalidate``, the panel, ``cellcache invalidate``) or the store cleared"),
    Reason((BROKEN, "stored entry was unreadable"),
           "the local entry's manifest, signature or blob failed a check; one ``CacheWarning`` says which"),
    Reason((REMOTE_UNTRUSTED,),
           "the shared remote holds an entry for the key, signed by a key not in ``trusted_signers``: it is not used"),
    Reason((REMOTE_UNSIGNED,),
           "the shared remote's entry is unsigned, malformed or altered after signing: it is not used"),
    Reason((REMOTE_UNUSABLE,), "the shared remote's entry could not be fetched or checked; one ``CacheWarning`` says why"),
    Reason(("no stored entry for this key",), "the key matches nothing, yet nothing differs from the last entry (``gc`` removed it)"),
    Reason((STRATEGY_OFF, DISABLED), "the cell ran plainly (``-s off``, ``%cellcache off``, ``CELLCACHE_DISABLE=1``)"),
    Reason(("input `gen` can't be fingerprinted",),
           "the cell ran uncached; the warning suggests ``--ignore gen``, and says that an ignored name is then neither "
           "keyed nor stored"),
    Reason(("cheap: 3 ms", "restore would cost more: 120 ms > 40 ms"),
           "auto mode's cost rule: the cell runs plainly, unfingerprinted and unstored (``auto_min_seconds``, ``auto_hit_seconds``)"),
    Reason(("side effect: writes /tmp/results.csv", "uses the network (127.0.0.1:8080)", "side effect: starts a subprocess (ls)",
            "side effect: removes old.csv", "side effect: appends to log.txt", "side effect: shows an interactive widget"),
           "auto mode saw a side effect a hit would skip: the cell runs plainly from then on (writes inside the project become outs instead)"),
    Reason(("off: # cellcache: off", "off: tagged no-cache"), "auto mode leaves the cell alone, as its first line or its tag asks"),
    Reason(("code changed; input `lr` changed (0.05 → 0.1); and 2 more",),
           f"several components changed: the broadest comes first (Python, strategy, code, packages, modules, files, "
           f"inputs), at most {_MAX_LISTED} are listed"),
)  # fmt: skip
