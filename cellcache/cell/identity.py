"""Restore a mutated input in place, so the objects earlier cells share with it stay shared.

``lr = LogisticRegression(); pipe = make_pipeline(scaler, lr)`` in one cell, then
``pipe.fit(X, y)`` in a cached one: a run leaves ``pipe`` and ``lr`` fitted and
``pipe[-1] is lr``. A hit that bound the restored ``pipe`` would leave ``lr``
unfitted and no longer inside it. So the restored value's state is carried
into the live object, recursively: where the live graph and the restored one
have objects of the same type at the same place, the live object is kept and
given the restored one's state; elsewhere the restored value is used.

Two phases: first the whole graph is matched and every change planned, then
the changes are made. A graph that can't be matched (an unknown kind, a
different shape) keeps the live object untouched at that place and takes the
restored value there instead, so no object is ever left half updated by a
failed match. Only plain Python objects, lists, dicts, sets and same-shaped
numpy arrays are updated in place; anything else (pandas objects, extension
types) is replaced, as before.
"""
from __future__ import annotations

import sys
from types import FunctionType, ModuleType
from typing import Any, Callable, Iterable, Mapping

_ATOMS = (str, bytes, int, float, complex, bool, type(None), range, ModuleType, type, FunctionType)


def rebind(live: Mapping[str, Any], restored: Mapping[str, Any], mutated: Iterable[str]) -> dict[str, Any]:
    """The values a hit binds: ``restored``, but each ``mutated`` input's live object where it can carry the new state.

    One match over all of them, so objects the restored values share map to the same live object.
    Other outputs that are (or hold at the top) a restored object so matched get the live one too.
    """
    plan: list[Callable[[], None]] = []
    matched: dict[int, Any] = {}  # id(restored part) -> the object that stands for it after the restore
    busy: set[int] = set()
    values = dict(restored)
    for name in sorted(set(mutated)):
        if name in restored and name in live:
            values[name] = _match(live[name], restored[name], plan, matched, busy)
    for name, value in values.items():
        if id(value) in matched:
            values[name] = matched[id(value)]
    for step in plan:
        step()
    return values


_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class defined in Python, not in C
_BIG = 1 << 20  # an array this big is bound as restored (a mapping of its blob) rather than copied into the live one


def _updatable(value: Any) -> bool:
    kind = type(value)
    if kind in (list, dict, set):
        return True
    np = sys.modules.get("numpy")
    if np is not None and kind is np.ndarray:
        return value.nbytes < _BIG
    if not hasattr(value, "__dict__") or isinstance(value, _ATOMS):
        return False
    # Plain Python objects only, whose whole state is their __dict__: no C base (a dict subclass keeps
    # its items elsewhere), no __slots__, and none of the libraries whose objects keep invariants apart.
    for base in kind.__mro__[:-1]:
        if not base.__flags__ & _HEAPTYPE or "__slots__" in vars(base):
            return False
    module = getattr(kind, "__module__", "") or ""
    return not module.startswith(("pandas", "polars", "pyarrow"))


def _match(live: Any, restored: Any, plan: list, matched: dict[int, Any], busy: set[int]) -> Any:
    """What stands for ``restored`` after the restore; plans the changes that make ``live`` carry its state."""
    if id(restored) in matched:
        return matched[id(restored)]
    if live is restored or type(live) is not type(restored) or not _updatable(restored) or id(live) in busy:
        return _keep(restored, live, plan, matched, busy)
    busy.add(id(live))
    matched[id(restored)] = live
    np = sys.modules.get("numpy")
    if np is not None and type(restored) is np.ndarray:
        if live.shape != restored.shape or live.dtype != restored.dtype or restored.dtype.hasobject or not live.flags.writeable:
            matched[id(restored)] = restored
            return restored
        plan.append(lambda: np.copyto(live, restored))
    elif type(restored) is list:
        items = [_match(live[i], item, plan, matched, busy) if i < len(live) else _keep(item, None, plan, matched, busy)
                 for i, item in enumerate(restored)]
        plan.append(lambda: live.__setitem__(slice(None), items))
    elif type(restored) is dict:
        items = {k: _match(live[k], v, plan, matched, busy) if k in live else _keep(v, None, plan, matched, busy)
                 for k, v in restored.items()}
        plan.append(lambda: (live.clear(), live.update(items)))
    elif type(restored) is set:
        plan.append(lambda: (live.clear(), live.update(restored)))
    else:
        state = vars(live)
        items = {k: _match(state[k], v, plan, matched, busy) if k in state else _keep(v, None, plan, matched, busy)
                 for k, v in vars(restored).items()}
        plan.append(lambda: (state.clear(), state.update(items)))
    return live


def _keep(restored: Any, live: Any, plan: list, matched: dict[int, Any], busy: set[int]) -> Any:
    """``restored`` itself stands; but a tuple's items may still be live objects given their state."""
    if type(restored) is tuple and type(live) is tuple and len(live) == len(restored):
        items = tuple(_match(a, b, plan, matched, busy) for a, b in zip(live, restored))
        if all(a is b for a, b in zip(items, live)):
            matched[id(restored)] = live  # every item kept its identity: so does the tuple
            return live
        return items
    if type(restored) is tuple and type(live) is not tuple:
        return tuple(_keep(item, None, plan, matched, busy) for item in restored)
    matched.setdefault(id(restored), restored)
    return restored
