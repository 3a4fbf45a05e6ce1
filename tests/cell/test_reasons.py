from __future__ import annotations

from cellcache.cell import reasons
def test_first_run():
    assert reasons.explain_miss(None, {"code": "a"}) == reasons.FIRST_RUN


def test_each_kind_of_change_is_named():
    old = {"code": "a", "input:df": "1", "input:gone": "1", "file:data.csv": "1", "module:utils": "1",
           "package:numpy": "2.1.0", "python": "CPython 3.11.7", "strategy": "code_hash"}
    new = {"code": "b", "input:df": "2", "input:cfg": "1", "file:data.csv": "2", "module:utils": "2",
           "package:numpy": "2.2.0", "python": "CPython 3.11.7", "strategy": "code_hash"}
    phrases = reasons.differences(old, new, {"input:df": "DataFrame 10x3"}, {"input:df": "DataFrame 12x3"})
    assert phrases == [
        "code changed",
        "package numpy 2.1.0 → 2.2.0",
        "module utils changed",
        "file data.csv changed",
        "input `cfg` is new",
        "input `df` changed (DataFrame 10x3 → DataFrame 12x3)",
        "input `gone` is gone",
    ]


def test_summary_is_one_short_line():
    line = reasons.summarize([f"input `v{i}` changed" for i in range(10)])
    assert line.endswith("and 7 more") and "\n" not in line
