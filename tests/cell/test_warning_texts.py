"""The texts of issue 25's warnings (cellcache.cell.reasons): what --ignore costs, and a refused remote entry named as such."""
from __future__ import annotations

from cellcache.cell import reasons
def test_the_ignore_hint_says_an_ignored_name_is_neither_keyed_nor_restored() -> None:
    hint = reasons.ignore_hint("load", "g", "a generator")
    assert "`--ignore g` would leave it out of the key: the cell would then never re-run" in hint
    assert "a hit does not restore `g`" in hint and "undefined" in hint


def test_a_hit_without_an_ignored_name_says_so() -> None:
    assert "step 'load' was restored without `g`" in reasons.ignored_not_restored("load", ["g"])
    assert "it is not defined" in reasons.ignored_not_restored("load", ["g"])
    assert "`a`, `b`" in reasons.ignored_not_restored("load", ["a", "b"]) and "they are" in reasons.ignored_not_restored("load", ["a", "b"])


def test_a_refused_remote_entry_is_not_called_broken() -> None:
    untrusted = "remote entry for key 0123456789ab is signed by SHA256:xyz, which is not a trusted signer"
    assert reasons.unusable_entry(untrusted, remote=True) == reasons.REMOTE_UNTRUSTED
    tampered = "manifest signature does not match (tampered, or signed with another key)"
    assert reasons.unusable_entry(tampered, remote=True) == reasons.REMOTE_UNSIGNED
    assert reasons.unusable_entry("timed out", remote=True) == reasons.REMOTE_UNUSABLE
    assert reasons.unusable_entry(untrusted, remote=False) == reasons.BROKEN == "stored entry was broken"
    assert "broken" not in reasons.REMOTE_UNTRUSTED + reasons.REMOTE_UNSIGNED + reasons.REMOTE_UNUSABLE
