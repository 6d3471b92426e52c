"""``State``: a nested mapping from attribute names and indices to Variables.

``nnx.split`` returns States; they are pytrees (so they cross ``jax.jit`` as
ordinary arguments) and nested dicts (so checkpoint libraries read them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, cast

import jax
import jax.numpy as jnp

from nnx.core import _epoch
from nnx.core._errors import FilterError, StructureError
from nnx.core._filters import group_by_filters
from nnx.core._paths import key_order, path_order, path_str
from nnx.core._text import block, treescope_mapping, value_text
from nnx.core._var_leaf import from_state_leaf, jax_leaf
from nnx.core._variables import Variable

Path = tuple


class FlatState(list):
    """A State as a flat, sorted sequence of ``(path, leaf)`` pairs (``State.flat_state()``).

    Example::

        flat = nnx.state(model).flat_state()
        for path, leaf in flat: ...
        flat.paths                # (("linear", "bias"), ("linear", "kernel"))
        flat.leaves               # [Param(...), Param(...)]
        params = flat.filter(nnx.Param)
        state = flat.to_nested_state()

    It is a list (indexing, ``len``, iteration, ``dict(flat)`` work as for any list
    of pairs) and a JAX pytree whose leaves are the State's leaves.
    """

    __slots__ = ()

    def __init__(self, items: Iterable[tuple[Path, Any]] = (), /, *, sort: bool = False):
        items = list(items)
        if sort:
            items.sort(key=lambda kv: path_order(kv[0]))
        super().__init__(items)

    @staticmethod
    def from_sorted_keys_values(keys: Iterable[Path], values: Iterable[Any], /) -> FlatState:
        """A FlatState of ``zip(keys, values)``, already in order."""
        return FlatState(zip(keys, values))

    @property
    def paths(self) -> tuple[Path, ...]:
        """The path of each leaf."""
        return tuple(p for p, _ in self)

    @property
    def leaves(self) -> list:
        """The leaves, in path order."""
        return [v for _, v in self]

    def to_nested_state(self) -> State:
        """The nested :class:`State` of these pairs."""
        return State.from_flat(self)

    def _groups(self, filters) -> list[FlatState]:
        groups, rest = group_by_filters(self, filters)
        return [FlatState(g) for g in groups] + [FlatState(rest)]

    def filter(self, first, /, *filters) -> FlatState | tuple[FlatState, ...]:
        """The pairs each filter matches (need not be exhaustive)."""
        groups = self._groups((first, *filters))[:-1]
        return groups[0] if len(groups) == 1 else tuple(groups)

    def split(self, first, /, *filters) -> FlatState | tuple[FlatState, ...]:
        """One FlatState per filter; every pair must match one (``FilterError``)."""
        *groups, rest = self._groups((first, *filters))
        if rest:
            _no_filter_matched(next(iter(rest)), (first, *filters))
        return groups[0] if len(groups) == 1 else tuple(groups)

    @staticmethod
    def merge(flat_state: Iterable, /, *flat_states: Iterable) -> FlatState:
        """The pairs of all, sorted by path; later ones win on equal paths."""
        items: dict = {}
        for f in (flat_state, *flat_states):
            items.update(f)
        return FlatState(items.items(), sort=True)

    def __getitem__(self, index):  # pyright: ignore[reportIncompatibleMethodOverride]
        out = list.__getitem__(self, index)
        return FlatState(out) if isinstance(index, slice) else out

    def __repr__(self) -> str:
        # Flax NNX's layout: one ``(path, leaf)`` pair per line
        items = [("", f"({path!r}, {leaf!r})") for path, leaf in self]
        return block("FlatState", items, open_="([", close="])", sep="")


jax.tree_util.register_pytree_node(
    FlatState,
    lambda f: ([v for _, v in f], tuple(p for p, _ in f)),
    lambda paths, leaves: FlatState(zip(paths, leaves)),
)


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

    # -- edits move the structure epoch: a transform's cache sees them ----------
    def __setitem__(self, key, value) -> None:
        dict.__setitem__(self, key, value)
        _epoch.bump()

    def __delitem__(self, key) -> None:
        dict.__delitem__(self, key)
        _epoch.bump()

    def pop(self, *args):
        _epoch.bump()
        return dict.pop(self, *args)

    def popitem(self):
        _epoch.bump()
        return dict.popitem(self)

    def clear(self) -> None:
        dict.clear(self)
        _epoch.bump()

    def update(self, *args, **kwargs) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        dict.update(self, *args, **kwargs)
        _epoch.bump()

    def setdefault(self, key, default=None):
        _epoch.bump()
        return dict.setdefault(self, key, default)

    def __ior__(self, other):  # pyright: ignore[reportIncompatibleMethodOverride]
        dict.update(self, other)
        _epoch.bump()
        return self

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
    def flat_state(self) -> FlatState:
        """``[(path, leaf), ...]`` in sorted path order, as a :class:`FlatState`."""
        out = FlatState()
        _flat_into(self, (), out)
        return out

    def to_flat(self) -> FlatState:
        return self.flat_state()

    @property
    def raw_mapping(self) -> Mapping:
        """The nested mapping itself (Flax's name; a State is its own mapping here)."""
        return self

    @classmethod
    def from_flat_path(cls, flat_state: Mapping | Iterable, /) -> State:
        """Build a nested State from ``{path: leaf}`` or ``(path, leaf)`` pairs (Flax's name)."""
        items = flat_state.items() if isinstance(flat_state, Mapping) else flat_state
        return cls.from_flat(items)

    def __sub__(self, other: Mapping) -> State:
        """The leaves of this State whose paths ``other`` does not have."""
        drop = {p for p, _ in State(other).flat_state()} if other else set()
        return State.from_flat((p, v) for p, v in self.flat_state() if p not in drop)

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
        groups, _ = group_by_filters(self.flat_state(), filters)
        states = tuple(State.from_flat(g) for g in groups)
        return states[0] if len(states) == 1 else states

    def split(self, *filters) -> State | tuple[State, ...]:
        """Partition into one State per filter; every leaf must match one."""
        groups, rest = group_by_filters(self.flat_state(), filters)
        if rest:
            _no_filter_matched(rest[0], filters)
        states = tuple(State.from_flat(g) for g in groups)
        return states[0] if len(states) == 1 else states

    @staticmethod
    def merge(state: State, /, *states: State) -> State:
        """One State holding the leaves of all; later States win on equal paths."""
        items: dict = {}
        for s in (state, *states):
            items.update(s.flat_state())
        return State.from_flat(sorted(items.items(), key=lambda kv: path_order(kv[0])))

    # -- pure dicts ------------------------------------------------------------
    def to_pure_dict(self, extract_fn: Callable | None = None, *, key_data: bool = False) -> dict:
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
        Abstract keys (``ShapeDtypeStruct`` of a key type, from ``nnx.eval_shape``)
        become abstract ``uint32`` data of the key data's shape, so the result is a
        valid restore target for the pure dict of a concrete model.
        ``extract_fn(leaf)`` (Flax's argument), when given, makes each value
        instead of ``leaf.get_value()``.
        """
        return _to_pure(self, key_data, extract_fn)

    def replace_by_pure_dict(
        self, pure: Mapping, replace_fn: Callable | None = None, *, strict: bool = True
    ) -> None:
        """Replace this State's leaves by the values of a pure dict (Flax semantics).

        Example::

            model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
            state = nnx.state(model)
            restored = {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}   # e.g. read from a file
            state.replace_by_pure_dict(restored)   # the State holds new Variables
            print(state["kernel"][...].sum())      # 6.0
            print(model.kernel[...].sum() == 6.0)  # False
            nnx.update(model, state)               # now the model gets the values
            print(model.kernel[...].sum())         # 6.0

            pure = nnx.to_pure_dict(nnx.state(model))          # the round trip of a checkpoint
            print(sorted(pure))                                 # ['bias', 'kernel']
            try:
                state.replace_by_pure_dict({"kernel": jnp.ones((3, 3)), "bias": jnp.zeros(3)})
            except nnx.StructureError as e:
                print(type(e).__name__)            # StructureError

        As in Flax, the State gets new Variables (of the same kind, mode and
        metadata) holding the new values, and the objects the State came from
        are left alone: ``nnx.update(model, state)`` or ``nnx.merge(graphdef,
        state)`` applies them. So a State closed over inside ``jax.jit`` never
        leaks a tracer into the model. ``replace_fn(old_leaf, value)``, when
        given, makes each new leaf instead (Flax's argument).

        Keys that arrive as strings (``"0"``, as some checkpoint formats write
        integer keys) are matched to integer keys; key data (``uint32``) given for
        a PRNG key Variable becomes a key of the same implementation again. A key
        of the pure dict that the State lacks is a ``StructureError`` naming it.
        With ``strict`` (the default) a missing entry, or a value whose shape
        differs from the Variable's, is a ``StructureError`` naming the path;
        ``strict=False`` keeps what is missing and writes any shape. Every check
        runs before the first replacement: an error leaves the State as it was.
        """
        writes: list = []
        _replace_by_pure(self, pure, (), strict, writes, replace_fn)
        for node, k, new in writes:
            dict.__setitem__(node, k, new)

    # -- misc ------------------------------------------------------------------
    def map(self, f) -> State:
        """A State with ``f(path, leaf)`` at every path."""
        return State.from_flat((p, f(p, v)) for p, v in self.flat_state())

    # dict's `|` takes any dict; a State merges only with States (by path).
    def __or__(self, other: State) -> State:  # pyright: ignore[reportIncompatibleMethodOverride]
        return State.merge(self, other)

    def __repr__(self) -> str:
        return "State(" + _body_repr(self) + ")"

    def __treescope_repr__(self, path, subtree_renderer):
        return treescope_mapping(self, dict(self), path, subtree_renderer)

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


def _no_filter_matched(pair: tuple, filters: tuple) -> NoReturn:
    """The error of ``State.split`` and ``FlatState.split`` for a leaf no filter took."""
    path, leaf = pair
    raise FilterError(
        f"No filter matched {type(leaf).__name__} at path {path_str(path)!r}. "
        f"Filters must be exhaustive; add `...` as the last filter to collect "
        f"the rest. Filters: {filters!r}"
    )


def _flat_into(node: Mapping, prefix: Path, out: list) -> None:
    for k in sorted(node, key=key_order):
        v = dict.__getitem__(node, k) if isinstance(node, dict) else node[k]
        if isinstance(v, State) or type(v) is dict:
            _flat_into(v, (*prefix, k), out)
        else:
            out.append(((*prefix, k), v))


def _is_key(x) -> bool:
    """A typed PRNG key: an array or an abstract ``ShapeDtypeStruct`` of one."""
    if not isinstance(x, (jax.Array, jax.ShapeDtypeStruct)):
        return False
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _key_data(x):
    if isinstance(x, jax.ShapeDtypeStruct):  # an abstract key: the shape of its data
        out = jax.eval_shape(jax.random.key_data, x)
        return jax.ShapeDtypeStruct(out.shape, out.dtype)
    return jax.random.key_data(x)


def _key_impl(x):
    if isinstance(x, jax.ShapeDtypeStruct):
        return getattr(x.dtype, "_impl", None)
    return jax.random.key_impl(x)


def _to_pure(node, key_data: bool = False, extract_fn=None):
    out = {}
    for k in sorted(node, key=key_order):
        v = dict.__getitem__(node, k)
        if isinstance(v, Mapping):
            out[k] = _to_pure(v, key_data, extract_fn)
            continue
        if extract_fn is not None:
            value = extract_fn(v)
        else:
            value = v.get_value() if isinstance(v, Variable) else v
        if key_data:
            value = jax.tree.map(lambda x: _key_data(x) if _is_key(x) else x, value)
        out[k] = value
    return out


def _lookup(mapping: Mapping, key) -> tuple[Any, Any]:
    """The entry for ``key`` and the key it is stored under (``"0"`` for ``0``)."""
    if key in mapping:
        return mapping[key], key
    if isinstance(key, int) and str(key) in mapping:
        return mapping[str(key)], str(key)
    raise KeyError(key)


def _restore_leaf(old, new, path: Path, strict: bool):
    """``new`` as the value for ``old``: key data back to keys, shapes checked."""
    if _is_key(old) and not _is_key(new) and hasattr(new, "dtype"):
        if isinstance(new, jax.ShapeDtypeStruct):  # abstract key data: an abstract key
            new = jax.ShapeDtypeStruct(old.shape, old.dtype)
        else:
            new = jax.random.wrap_key_data(jnp.asarray(new), impl=_key_impl(old))
    if strict and hasattr(old, "shape") and hasattr(new, "shape") and old.shape != new.shape:
        raise StructureError(
            f"replace_by_pure_dict: the value for {path_str(path)!r} has shape "
            f"{tuple(new.shape)}, but the Variable holds {tuple(old.shape)}. Restore into a "
            "model built with the same configuration, or pass strict=False to write it anyway."
        )
    return new


def _replace_by_pure(
    node: State, pure: Mapping, prefix: Path, strict: bool, writes: list, replace_fn
) -> None:
    if not isinstance(pure, Mapping):
        raise StructureError(
            f"replace_by_pure_dict: the pure dict holds a leaf ({type(pure).__name__}) at "
            f"{path_str(prefix)!r}, where the State has the entries {sorted(map(str, node))}."
        )
    matched: set = set()
    for k in list(node):
        v = dict.__getitem__(node, k)
        path = (*prefix, k)
        try:
            new, key = _lookup(pure, k)
        except KeyError:
            if strict:
                raise StructureError(
                    f"replace_by_pure_dict: the pure dict has no entry for "
                    f"{path_str(path)!r}. Pass strict=False to keep the current value."
                ) from None
            continue
        matched.add(key)
        if isinstance(v, Mapping):  # the inner levels of a State are States
            _replace_by_pure(cast(State, v), new, path, strict, writes, replace_fn)
            continue
        old = v.get_value() if isinstance(v, Variable) else v
        if jax.tree.structure(old) == jax.tree.structure(new):
            new = jax.tree.map(lambda a, b, p=path: _restore_leaf(a, b, p, strict), old, new)
        if replace_fn is not None:
            leaf = replace_fn(v, new)
        elif isinstance(v, Variable):
            leaf = v.replace(new)
        else:
            leaf = new
        writes.append((node, k, leaf))
    extra = [k for k in pure if k not in matched]
    if extra:
        names = ", ".join(repr(path_str((*prefix, k))) for k in extra[:5])
        raise StructureError(
            f"replace_by_pure_dict: the pure dict has {names}, but the State has no such "
            "entry (a checkpoint of another model, or a renamed attribute). Remove the "
            "entry, or restore into a State that has it."
        )


# JAX's view of a State: a dict node whose children are its entries, except that a
# hijax Variable that holds values is a leaf (its view, see `jax_leaf`), so that
# `jax.tree.map(f, params, momentum, grads)` lines up States of different Variable
# kinds and `f` receives Variables (decision 0014). The kinds and static parts of those
# Variables ride along in the treedef (`_Keys.kinds`) for rebuilding, but are not part
# of its equality; `jax.jit` still tells them apart by the leaves' types (`CellTy.kind`).
class _Keys(tuple):
    """A State's sorted keys (its treedef's data); ``kinds`` holds ``(class, VarAux)``
    for each key whose child is a hijax Variable's leaf, else None."""

    kinds: tuple


def _flatten_children(s: State):
    keys = sorted(s, key=key_order)
    children = [dict.__getitem__(s, k) for k in keys]
    kinds: list[Any] | None = None
    for i, c in enumerate(children):
        leaf = jax_leaf(c, content=True)
        if leaf is not c:
            if kinds is None:
                kinds = [None] * len(children)
            kinds[i] = (type(c), c._aux)
            children[i] = leaf
    if kinds is None:
        return keys, children, tuple(keys)
    aux = _Keys(keys)
    aux.kinds = tuple(kinds)
    return keys, children, aux


def _state_flatten_with_keys(s: State):
    keys, children, aux = _flatten_children(s)
    return [(jax.tree_util.DictKey(k), c) for k, c in zip(keys, children)], aux


def _state_flatten(s: State):
    _, children, aux = _flatten_children(s)
    return children, aux


def _state_unflatten(keys, children):
    s = State.__new__(State)
    if type(keys) is _Keys:
        for k, kind, c in zip(keys, keys.kinds, children):
            if kind is not None:
                c = from_state_leaf(kind[0], kind[1], c)
            dict.__setitem__(s, k, c)
        return s
    for k, c in zip(keys, children):
        dict.__setitem__(s, k, c)
    return s


jax.tree_util.register_pytree_with_keys(
    State, _state_flatten_with_keys, _state_unflatten, flatten_func=_state_flatten
)


class GraphState(State):
    """A :class:`State` that carries the GraphDef of its graph (Flax NNX's ``GraphState``).

    What :func:`nnx.unpack` returns: ``nnx.merge`` takes GraphStates alone, with
    no separate GraphDef. Everywhere else it is the State it holds (it *is* a
    ``State``): ``nnx.update``, filters, ``jax.tree.map`` (which keeps the
    GraphDef), checkpoint helpers.

    Example::

        node = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        state = nnx.unpack(node)
        new_node = nnx.merge(state)                       # no GraphDef to carry
        params, rest = nnx.unpack(node, nnx.Param, ...)
        new_node = nnx.merge(params, rest)
    """

    __slots__ = ("_graphdef",)

    def __init__(self, graphdef: Any, state: Mapping | Iterable = (), /):
        if not isinstance(state, (Mapping, list, tuple)):
            raise ValueError(f"GraphState: expected a State, got {type(state).__name__}.")
        super().__init__(state)
        object.__setattr__(self, "_graphdef", graphdef)

    @property
    def graphdef(self) -> Any:
        """The GraphDef of the graph this State was unpacked from."""
        return self._graphdef

    @classmethod
    def from_flat(cls, items: Iterable[tuple[Path, Any]]) -> State:
        """A plain nested :class:`State` (a GraphState needs its GraphDef)."""
        return State.from_flat(items)

    from_flat_state = from_flat

    def __repr__(self) -> str:
        return "GraphState(" + _body_repr(self) + ")"

    def __reduce__(self):
        return (GraphState, (self._graphdef, dict(self)))


def _graph_state_flatten_with_keys(s: GraphState):
    children, aux = _state_flatten_with_keys(s)
    return children, (s._graphdef, aux)


def _graph_state_flatten(s: GraphState):
    children, aux = _state_flatten(s)
    return children, (s._graphdef, aux)


def _graph_state_unflatten(aux, children):
    graphdef, keys = aux
    out = GraphState.__new__(GraphState)
    object.__setattr__(out, "_graphdef", graphdef)
    dict.update(out, _state_unflatten(keys, children))
    return out


jax.tree_util.register_pytree_with_keys(
    GraphState,
    _graph_state_flatten_with_keys,
    _graph_state_unflatten,
    flatten_func=_graph_state_flatten,
)


# Functional aliases (Flax spells these as free functions).
def to_flat_state(state: State) -> FlatState:
    """The :class:`FlatState` of ``state`` (``state.flat_state()``)."""
    return state.flat_state()


def from_flat_state(items, *, cls: type[State] | None = None) -> State:
    """The nested State of ``(path, leaf)`` pairs or a ``{path: leaf}`` mapping."""
    return (cls or State).from_flat_path(items)


def map_state(f: Callable[[Path, Any], Any], state: State) -> State:
    """A new State with ``f(path, leaf)`` at every path.

    Example::

        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        state = nnx.state(model)
        doubled = nnx.map_state(lambda path, v: v[...] * 2, state)
        print(bool((doubled["kernel"] == 2 * model.kernel[...]).all()))   # True
        zero_bias = nnx.map_state(
            lambda path, v: nnx.Param(jnp.zeros_like(v[...])) if path[-1] == "bias" else v, state
        )
        print(zero_bias["bias"][...])                # [0. 0. 0.]
        nnx.update(model, zero_bias)
        print(model.bias[...])                       # [0. 0. 0.]

    """
    return State.from_flat((p, f(p, v)) for p, v in state.flat_state())


def restore_int_paths(pure_dict: Mapping) -> dict:
    """``pure_dict`` with every key that spells an integer (``"0"``) turned into that int.

    Checkpoint formats (orbax) store the integer keys of layers held in lists as
    strings; this gives the pure dict back the keys ``nnx.to_pure_dict`` made.

    Example::

        nnx.restore_int_paths({"layers": {"0": {"w": 1}}})   # {'layers': {0: {'w': 1}}}
    """
    out: dict = {}
    for k, v in pure_dict.items():
        if isinstance(k, str):
            with contextlib.suppress(ValueError):
                k = int(k)
        out[k] = restore_int_paths(v) if isinstance(v, Mapping) else v
    return out


def filter_state(state: State, *filters):
    """The part of ``state`` that matches ``filters``; the same as ``state.filter(*filters)``."""
    return state.filter(*filters)


def split_state(state: State, *filters):
    """One State per filter (exhaustive); the same as ``state.split(*filters)``."""
    return state.split(*filters)


def merge_state(state: State, *states: State) -> State:
    """One State holding every entry of the given States; the same as ``State.merge``."""
    return State.merge(state, *states)


def diff_state(state: State, other: State) -> State:
    """The entries of ``state`` at paths that ``other`` does not have (Flax NNX's
    ``nnx.statelib.diff``); ``state`` itself when ``other`` is empty.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> full = nnx.State({"a": nnx.Param(jnp.ones(1)), "b": {"c": nnx.Param(jnp.zeros(1))}})
    >>> nnx.diff_state(full, nnx.State({"a": nnx.Param(jnp.ones(1))})).flat_state().paths
    (('b', 'c'),)
    """
    if not other:
        return state
    have = set(to_flat_state(other).paths)
    return from_flat_state([(p, v) for p, v in to_flat_state(state) if p not in have])


def to_pure_dict(
    state: State, extract_fn: Callable | None = None, *, key_data: bool = False
) -> dict:
    """Nested plain dicts of raw values; see :meth:`State.to_pure_dict`."""
    state = state if isinstance(state, State) else State(state)
    return state.to_pure_dict(extract_fn, key_data=key_data)


def replace_by_pure_dict(
    state: State, pure: Mapping, replace_fn: Callable | None = None, *, strict: bool = True
) -> None:
    """Replace a State's leaves by a pure dict's values (the model is left alone);
    see :meth:`State.replace_by_pure_dict`."""
    state.replace_by_pure_dict(pure, replace_fn, strict=strict)


def _body_repr(node) -> str:
    """``{`` / ``'key': value`` per line, nested States as nested braces / ``}``."""
    items = []
    for k in sorted(node, key=key_order):
        v = dict.__getitem__(node, k)
        if isinstance(v, dict):
            items.append((repr(k), _body_repr(v)))
        elif isinstance(v, Variable):
            items.append((repr(k), v._repr()))
        else:
            items.append((repr(k), value_text(v)))
    return block("", items, open_="{", close="}", sep=": ")
