"""The text of a Pytree in Flax NNX's layout (``repr(module)``): attributes in
assignment order, per-node counts of Variables by kind, containers and shared objects."""

from __future__ import annotations

import jax

from nnx.core._pytree import Pytree, compute_layout, install_repr, is_user_container
from nnx.core._text import block, count_arrays, inline, shape_summary, size_str, value_text
from nnx.core._variables import Variable


# -- text (Flax NNX's layout) --------------------------------------------------------
def _kind_name(v: Variable) -> str:
    # Flax NNX counts every RNG Variable (keys and counts) as one kind, RngState
    for t in type(v).__mro__:
        if t.__name__ == "RngState" and t.__module__ == Variable.__module__:
            return "RngState"
    return type(v).__name__


def _graph_variables(obj, memo: dict) -> dict:
    """``{id: Variable}`` of the graph below the Pytree ``obj``, in attribute order
    (memoized per node for one repr: each nested Pytree prints its own counts)."""
    found = memo.get(id(obj))
    if found is not None:
        return found
    memo[id(obj)] = found = {}  # before the walk: a cycle ends here
    stop = lambda y: isinstance(y, (Variable, Pytree))  # noqa: E731
    for value in obj.__dict__.values():
        for leaf in jax.tree.leaves(value, is_leaf=stop):
            if isinstance(leaf, Variable):
                found.setdefault(id(leaf), leaf)
            elif isinstance(leaf, Pytree):
                found.update(_graph_variables(leaf, memo))
    return found


def _counts(obj, memo: dict) -> str:
    """`` # Param: 6 (24 B), BatchStat: ..., Total: ...``: the Variables of
    ``obj``'s graph, by kind in the order they are met."""
    totals: dict[str, list[int]] = {}
    for leaf in _graph_variables(obj, memo).values():
        try:
            n, b = count_arrays(leaf.get_value())
        except Exception:
            continue
        if n:
            t = totals.setdefault(_kind_name(leaf), [0, 0])
            t[0] += n
            t[1] += b
    if not totals:
        return ""
    text = " # " + ", ".join(f"{k}: {size_str(n, b)}" for k, (n, b) in totals.items())
    if len(totals) > 1:
        n_all = sum(n for n, _ in totals.values())
        text += f", Total: {size_str(n_all, sum(b for _, b in totals.values()))}"
    return text


def _shown_attributes(obj: Pytree) -> list[str]:
    """A Pytree's attributes in assignment order; private ones only when data."""
    d = obj.__dict__
    private = [k for k in d if isinstance(k, str) and k.startswith("_")]
    data = set(compute_layout(obj).data_keys) if private else set()
    return [k for k in d if not (isinstance(k, str) and k.startswith("_")) or k in data]


def node_repr(obj, seen: dict, memo: dict) -> str:
    """``obj`` inside a Pytree's repr: Variables and arrays by shape, nested Pytrees
    with their own counts, a shared object once (then ``<shared ...>``)."""
    if isinstance(obj, Variable):
        if id(obj) in seen:
            return f"<shared {type(obj).__name__} at {seen[id(obj)]}>"
        seen[id(obj)] = "..."
        return obj._repr(shapes=True)
    if isinstance(obj, Pytree):
        if id(obj) in seen:
            return f"<shared {type(obj).__name__}>"
        seen[id(obj)] = type(obj).__name__
        d = obj.__dict__
        items = [(str(k), node_repr(d[k], seen, memo)) for k in _shown_attributes(obj)]
        return block(type(obj).__name__, items, comment=_counts(obj, memo))
    rich = isinstance(obj, (list, tuple, dict)) and not hasattr(obj, "_fields")
    if rich and any(_is_rich(x) for x in (obj.values() if isinstance(obj, dict) else obj)):
        head = type(obj).__name__ if is_user_container(obj) else ""
        if isinstance(obj, dict):
            items = [(repr(k), node_repr(v, seen, memo)) for k, v in obj.items()]
            open_, close = ("({", "})") if head else ("{", "}")
            return block(head, items, open_=open_, close=close, sep=": ")
        items = [("", node_repr(x, seen, memo)) for x in obj]
        open_, close = ("[", "]") if isinstance(obj, list) else ("(", ")")
        if head:
            open_, close = f"({open_}", f"{close})"
        return block(head, items, open_=open_, close=close, sep="")
    if is_user_container(obj):
        plain = list(obj) if isinstance(obj, list) else dict(obj)
        return f"{type(obj).__name__}({inline(plain, value_text)})"
    return inline(shape_summary(obj), value_text)


def _is_rich(x) -> bool:
    return isinstance(x, (Pytree, Variable, dict, list, tuple)) or hasattr(x, "shape")


install_repr(lambda obj: node_repr(obj, {}, {}))
