"""``State``: a nested mapping from attribute names and indices to Variables.

``nnx.split`` returns States; they are pytrees (so they cross ``jax.jit`` as
ordinary arguments) and nested dicts (so checkpoint libraries read them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp

from nnx.core._errors import FilterError, StructureError
from nnx.core._filters import filters_to_predicates
from nnx.core._variables import Variable

Path = tuple


def _sort_key(k):
    return (0, k, "") if isinstance(k, int) else (1, 0, str(k))


def _keystr(path: Path) -> str:
    return "/".join(str(p) for p in path) or "<root>"


class State(dict):
    """A nested mapping of Variables (or raw arrays), keyed by path components.

    Example::

        graphdef, state = nnx.split(model)
        state["linear1"]["kernel"]    # the Param
        state.linear1.kernel          # the same, attribute style
        state.flat_state()            # [(("linear", "kernel"), Param(...)), ...]
        pure = state.to_pure_dict()   # arrays only, for checkpoints
    """

    def __init__(self, mapping: Mapping | Iterable = (), /):
        super().__init__()
        items = mapping.items() if isinstance(mapping, Mapping) else mapping
        for k, v in items:
            dict.__setitem__(self, k, State(v) if type(v) is dict else v)

    # attribute access: state.linear.kernel
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"State has no key {name!r}; keys: {list(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    # -- flat views ------------------------------------------------------------
    def flat_state(self) -> list[tuple[Path, Any]]:
        """``[(path, leaf), ...]`` in sorted path order."""
        out: list[tuple[Path, Any]] = []
        _flat_into(self, (), out)
        return out

    def to_flat(self) -> list[tuple[Path, Any]]:
        return self.flat_state()

    @classmethod
    def from_flat(cls, items: Iterable[tuple[Path, Any]]) -> State:
        """Build a nested State from ``(path, leaf)`` pairs."""
        root = cls()
        for path, leaf in items:
            if not path:
                raise StructureError("A State leaf needs a non-empty path.")
            node = root
            for k in path[:-1]:
                nxt = dict.get(node, k)
                if nxt is None:
                    nxt = cls()
                    dict.__setitem__(node, k, nxt)
                node = nxt
            dict.__setitem__(node, path[-1], leaf)
        return root

    from_flat_state = from_flat

    def leaves(self) -> list:
        return [v for _, v in self.flat_state()]

    # -- filtering -------------------------------------------------------------
    def filter(self, *filters) -> State | tuple[State, ...]:
        """The part of the State that each filter matches (need not be exhaustive)."""
        preds = filters_to_predicates(filters)
        groups: list[list] = [[] for _ in preds]
        for path, leaf in self.flat_state():
            for i, p in enumerate(preds):
                if p(path, leaf):
                    groups[i].append((path, leaf))
                    break
        states = tuple(State.from_flat(g) for g in groups)
        return states[0] if len(states) == 1 else states

    def split(self, *filters) -> State | tuple[State, ...]:
        """Partition into one State per filter; every leaf must match one."""
        preds = filters_to_predicates(filters)
        groups: list[list] = [[] for _ in preds]
        for path, leaf in self.flat_state():
            for i, p in enumerate(preds):
                if p(path, leaf):
                    groups[i].append((path, leaf))
                    break
            else:
                raise FilterError(
                    f"No filter matched {type(leaf).__name__} at path {_keystr(path)!r}. "
                    f"Filters must be exhaustive; add `...` as the last filter to collect "
                    f"the rest. Filters: {filters!r}"
                )
        states = tuple(State.from_flat(g) for g in groups)
        return states[0] if len(states) == 1 else states

    @staticmethod
    def merge(state: State, /, *states: State) -> State:
        """One State holding the leaves of all; later States win on equal paths."""
        items: dict = {}
        for s in (state, *states):
            items.update(s.flat_state())
        return State.from_flat(sorted(items.items(), key=lambda kv: [_sort_key(k) for k in kv[0]]))

    # -- pure dicts ------------------------------------------------------------
    def to_pure_dict(self, *, key_data: bool = False) -> dict:
        """Nested plain dicts of raw values (Variables replaced by their values).

        Example::

            pure = nnx.state(model).to_pure_dict(key_data=True)
            arrays = jax.tree.leaves(pure)               # plain arrays: any checkpoint format
            fresh = MLP(2, 16, 1, rngs=nnx.Rngs(1))
            nnx.state(fresh).replace_by_pure_dict(pure)  # fresh: a model of the same shape

        Integer keys (layers held in lists) stay integers. ``key_data=True``
        gives typed PRNG keys (the ``Rngs`` streams, ``key<fry>``) as their
        ``uint32`` data (``jax.random.key_data``), which NumPy and checkpoint
        formats can store; :meth:`replace_by_pure_dict` turns them back into keys.
        """
        return _to_pure(self, key_data)

    def replace_by_pure_dict(self, pure: Mapping, *, strict: bool = True) -> None:
        """Write the values of a pure dict into this State's Variables, in place.

        Keys that arrive as strings (``"0"``, as some checkpoint formats write
        integer keys) are matched to integer keys; key data (``uint32``) given for
        a PRNG key Variable becomes a key of the same implementation again. With
        ``strict`` (the default) a missing entry, or a value whose shape differs
        from the Variable's, is a ``StructureError`` naming the path, raised
        before anything is written; ``strict=False`` keeps what is missing and
        writes any shape.
        """
        writes: list = []
        _replace_by_pure(self, pure, (), strict, writes)
        for write in writes:
            write()

    # -- misc ------------------------------------------------------------------
    def map(self, f) -> State:
        """A State with ``f(path, leaf)`` at every path."""
        return State.from_flat((p, f(p, v)) for p, v in self.flat_state())

    # dict's `|` takes any dict; a State merges only with States (by path).
    def __or__(self, other: State) -> State:  # pyright: ignore[reportIncompatibleMethodOverride]
        return State.merge(self, other)

    def __repr__(self) -> str:
        from nnx.core._display import state_repr

        return state_repr(self)

    def __treescope_repr__(self, path, subtree_renderer):
        from nnx.core._display import treescope_state

        return treescope_state(self, path, subtree_renderer)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        a, b = self.flat_state(), State(other).flat_state()
        if [p for p, _ in a] != [p for p, _ in b]:
            return False
        for (_, x), (_, y) in zip(a, b):
            if type(x) is not type(y):
                return False
            xv = x.get_value() if isinstance(x, Variable) else x
            yv = y.get_value() if isinstance(y, Variable) else y
            xl, xt = jax.tree.flatten(xv)
            yl, yt = jax.tree.flatten(yv)
            if xt != yt:
                return False
            for u, w in zip(xl, yl):
                if getattr(u, "shape", None) != getattr(w, "shape", None):
                    return False
                try:
                    if not bool((u == w).all() if hasattr(u == w, "all") else u == w):
                        return False
                except Exception:
                    return False
        return True

    def __ne__(self, other) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None  # type: ignore[assignment]


def _flat_into(node: Mapping, prefix: Path, out: list) -> None:
    for k in sorted(node, key=_sort_key):
        v = dict.__getitem__(node, k) if isinstance(node, dict) else node[k]
        if isinstance(v, State) or type(v) is dict:
            _flat_into(v, (*prefix, k), out)
        else:
            out.append(((*prefix, k), v))


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_pure(node, key_data: bool = False):
    out = {}
    for k in sorted(node, key=_sort_key):
        v = dict.__getitem__(node, k)
        if isinstance(v, Mapping):
            out[k] = _to_pure(v, key_data)
            continue
        value = v.get_value() if isinstance(v, Variable) else v
        if key_data:
            value = jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, value)
        out[k] = value
    return out


def _lookup(mapping: Mapping, key):
    if key in mapping:
        return mapping[key]
    if isinstance(key, int) and str(key) in mapping:
        return mapping[str(key)]
    raise KeyError(key)


def _restore_leaf(old, new, path: Path, strict: bool):
    """``new`` as the value for ``old``: key data back to keys, shapes checked."""
    if _is_key(old) and not _is_key(new) and hasattr(new, "dtype"):
        new = jax.random.wrap_key_data(jnp.asarray(new), impl=jax.random.key_impl(old))
    if strict and hasattr(old, "shape") and hasattr(new, "shape") and old.shape != new.shape:
        raise StructureError(
            f"replace_by_pure_dict: the value for {_keystr(path)!r} has shape "
            f"{tuple(new.shape)}, but the Variable holds {tuple(old.shape)}. Restore into a "
            "model built with the same configuration, or pass strict=False to write it anyway."
        )
    return new


def _replace_by_pure(node: State, pure: Mapping, prefix: Path, strict: bool, writes: list) -> None:
    for k in list(node):
        v = dict.__getitem__(node, k)
        path = (*prefix, k)
        try:
            new = _lookup(pure, k)
        except KeyError:
            if strict:
                raise StructureError(
                    f"replace_by_pure_dict: the pure dict has no entry for "
                    f"{_keystr(path)!r}. Pass strict=False to keep the current value."
                ) from None
            continue
        if isinstance(v, Mapping):  # the inner levels of a State are States
            _replace_by_pure(cast(State, v), new, path, strict, writes)
            continue
        old = v.get_value() if isinstance(v, Variable) else v
        if jax.tree.structure(old) == jax.tree.structure(new):
            new = jax.tree.map(lambda a, b, p=path: _restore_leaf(a, b, p, strict), old, new)
        if isinstance(v, Variable):
            if v._aux.mode == 0:
                writes.append(lambda v=v, new=new: v.set_raw_value(new))
            else:
                writes.append(lambda v=v, new=new: v.set_value(new))
        else:
            writes.append(lambda node=node, k=k, new=new: dict.__setitem__(node, k, new))


def _state_flatten_with_keys(s: State):
    keys = sorted(s, key=_sort_key)
    return [(jax.tree_util.DictKey(k), dict.__getitem__(s, k)) for k in keys], tuple(keys)


def _state_flatten(s: State):
    keys = sorted(s, key=_sort_key)
    return [dict.__getitem__(s, k) for k in keys], tuple(keys)


def _state_unflatten(keys, children):
    s = State.__new__(State)
    for k, c in zip(keys, children):
        dict.__setitem__(s, k, c)
    return s


jax.tree_util.register_pytree_with_keys(
    State, _state_flatten_with_keys, _state_unflatten, flatten_func=_state_flatten
)


# Functional aliases (Flax spells these as free functions).
def to_flat_state(state: State) -> list[tuple[Path, Any]]:
    """The (path, Variable) pairs of ``state``, sorted; the same as ``state.flat_state()``."""
    return state.flat_state()


def from_flat_state(items) -> State:
    """A State built from (path, value) pairs; the same as ``State.from_flat(items)``."""
    return State.from_flat(items)


def filter_state(state: State, *filters):
    """The part of ``state`` that matches ``filters``; the same as ``state.filter(*filters)``."""
    return state.filter(*filters)


def split_state(state: State, *filters):
    """One State per filter (exhaustive); the same as ``state.split(*filters)``."""
    return state.split(*filters)


def merge_state(state: State, *states: State) -> State:
    """One State holding every entry of the given States; the same as ``State.merge``."""
    return State.merge(state, *states)


def to_pure_dict(state: State, *, key_data: bool = False) -> dict:
    """Nested plain dicts of raw values; see :meth:`State.to_pure_dict`."""
    state = state if isinstance(state, State) else State(state)
    return state.to_pure_dict(key_data=key_data)


def replace_by_pure_dict(state: State, pure: Mapping, *, strict: bool = True) -> None:
    """Write a pure dict into a State in place; see :meth:`State.replace_by_pure_dict`."""
    state.replace_by_pure_dict(pure, strict=strict)
