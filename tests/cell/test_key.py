from __future__ import annotations

import pytest

from cellcache.cell.key import StageKey, code_digest


def build(**overrides):
    args = {"strategy": "code_hash", "code": "c1", "inputs": {"x": "d1"}, "files": {"a.csv": "f1"}, "modules": {"package:numpy": "2.0"}}
    args.update(overrides)
    return StageKey.build(**args)


def test_same_components_same_digest():
    assert build().digest == build().digest


@pytest.mark.parametrize(
    "change",
    [
        {"strategy": "input_hash"},
        {"code": "c2"},
        {"inputs": {"x": "d2"}},
        {"inputs": {"y": "d1"}},
        {"inputs": {"x": "d1", "y": "d1"}},
        {"files": {"a.csv": "f2"}},
        {"files": {}},
        {"modules": {"package:numpy": "2.1"}},
    ],
)
def test_every_component_changes_the_digest(change):
    assert build(**change).digest != build().digest


def test_input_hash_leaves_code_out():
    assert build(strategy="input_hash", code="a").digest == build(strategy="input_hash", code="b").digest
    assert "code" not in build(strategy="input_hash").components


def test_components_cannot_collide_by_concatenation():
    assert build(inputs={"ab": "c"}).digest != build(inputs={"a": "bc"}).digest


def test_code_digest_ignores_comments_and_layout_only():
    assert code_digest("x = 1  # note\n\n") == code_digest("x=1")
    assert code_digest("x = 1") != code_digest("x = 2")
    assert code_digest("f(a, b)") != code_digest("f(b, a)")
