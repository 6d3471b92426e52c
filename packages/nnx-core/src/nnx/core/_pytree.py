"""``Pytree``: user objects that are JAX pytrees, with data/static attributes.

Every subclass of :class:`Pytree` is registered with JAX, so ``jax.tree.map``
and a plain ``jax.jit`` accept its instances. Attributes holding arrays,
Variables, Pytrees, or lists/dicts/tuples of them are *data* (pytree
children); everything else is *static* (part of the tree structure).
``nnx.data(x)`` and ``nnx.static(x)`` override the guess.

Lists and dicts assigned to data attributes are stored as :class:`List` and
:class:`Dict`, subclasses of ``list``/``dict`` that record their mutations, so
that cached flattenings of a model notice ``model.layers.append(...)``.
"""

from __future__ import annotations

from typing import Any, SupportsIndex

import jax
import numpy as np

from nnx.core import _epoch
from nnx.core._errors import PytreeStaticError
from nnx.core._variables import Variable, _freeze

_MISSING = object()


class _Marker:
    __slots__ = ("value", "is_data")

    def __init__(self, value, is_data):
        self.value = value
        self.is_data = is_data  # True (data), False (static) or GRAPH (graph_ref)


GRAPH = "graph"


def data(value: Any) -> Any:
    """Mark an attribute value as data (a pytree child) whatever its type.

    Example::

        class Model(nnx.Pytree):
            def __init__(self):
                self.scale = nnx.data(2.0)   # traced by jax.jit, not baked in
    """
    return _Marker(value, True)


def static(value: Any) -> Any:
    """Mark an attribute value as static (part of the tree structure).

    Example::

        class Model(nnx.Pytree):
            def __init__(self):
                self.sizes = nnx.static((2, 3))
    """
    return _Marker(value, False)


def graph_ref(value: Any) -> Any:
    """Hold ``value`` by reference: part of the object graph, not of the pytree view.

    ``nnx.split``/``nnx.merge`` and the nnx transforms walk such an attribute like
    any data attribute (sharing is kept); the JAX pytree view (``jax.jit``,
    ``jax.tree.map``) sees it as a static reference to the same object. Use it
    for back-references to objects that are usually passed alongside, such as an
    optimizer's model, so that a plain ``jax.jit(step)(model, optimizer)`` does not
    see the model's Variables twice::

        class Optimizer(nnx.Pytree):
            def __init__(self, model, tx):
                self.model = nnx.graph_ref(model)
    """
    return _Marker(value, GRAPH)


_extra_data_types: tuple[type, ...] = ()


def register_data_type(cls: type) -> type:
    """Treat attributes whose value is an instance of ``cls`` as data."""
    global _extra_data_types
    _extra_data_types = (*_extra_data_types, cls)
    return cls


def _is_data_leaf(x) -> bool:
    return isinstance(x, (Variable, Pytree, jax.Array, np.ndarray)) or (
        bool(_extra_data_types) and isinstance(x, _extra_data_types)
    )


def _contains_data(x) -> bool:
    if _is_data_leaf(x):
        return True
    if isinstance(x, (list, tuple)):
        return any(_contains_data(y) for y in x)
    if isinstance(x, dict):
        return any(_contains_data(y) for y in x.values())
    return _pytree_holds_data(x)


# Values that are never JAX pytree nodes; skipping them keeps `self.din = 2` cheap.
_PLAIN_STATIC = (str, bytes, int, float, complex, bool, type, type(None))


def _pytree_holds_data(x) -> bool:
    """A registered JAX pytree node (a dataclass, a custom class) holding arrays or Variables."""
    if isinstance(x, _PLAIN_STATIC):
        return False
    try:
        leaves, treedef = jax.tree_util.tree_flatten(
            x, is_leaf=lambda y: y is not x and _is_data_leaf(y)
        )
    except Exception:  # a half-built object; its own methods will say what is wrong
        return False
    if jax.tree_util.treedef_is_leaf(treedef):
        return False
    return any(_is_data_leaf(y) for y in leaves)


def is_data(x) -> bool:
    """Whether an attribute holding ``x`` is data (a pytree child) by default.

    Example::

        nnx.is_data(jnp.ones(3))           # True: arrays
        nnx.is_data([nnx.Param(jnp.ones(3))])  # True: containers of Variables, Pytrees, arrays
        nnx.is_data([])                    # True: an empty list or dict (it may grow)
        from collections import namedtuple
        MyTuple = namedtuple("MyTuple", "a")
        nnx.is_data(MyTuple(jnp.ones(3)))  # True: a registered JAX pytree holding arrays
        nnx.is_data(3), nnx.is_data("relu"), nnx.is_data(jax.nn.relu)   # False: static
    """
    if _is_data_leaf(x):
        return True
    if type(x) in (list, dict, List, Dict):
        return len(x) == 0 or _contains_data(x)
    if isinstance(x, tuple):
        return _contains_data(x)
    if isinstance(x, (list, dict)):
        return _contains_data(x)
    return _pytree_holds_data(x)


class _Static:
    """A static value inside a hashable structure; compared by its frozen form."""

    __slots__ = ("value", "_key", "_hash")

    def __init__(self, value):
        self.value = value
        self._key = _freeze(value)
        self._hash = hash(self._key)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return type(other) is _Static and (self.value is other.value or self._key == other._key)

    def __repr__(self):
        return repr(self.value)


def _track(x):
    """Containers in data attributes become tracked List/Dict (recursively)."""
    t = type(x)
    if t is list:
        return List(_track(y) for y in x)
    if t is dict:
        return Dict({k: _track(v) for k, v in x.items()})
    if t is tuple:
        items = tuple(_track(y) for y in x)
        return items if any(a is not b for a, b in zip(items, x)) else x
    return x


def _split_items(items):
    """(data positions, static (position, value) pairs) of a sequence of values."""
    data_idx, static_items = [], []
    for i, v in items:
        if is_data(v):
            data_idx.append(i)
        else:
            static_items.append((i, _Static(v)))
    return tuple(data_idx), tuple(static_items)


class List(list):
    """A ``list`` that records its mutations (see the module docstring).

    Items that are not data (functions, strings, ints) are kept out of the
    pytree children, so ``[Linear, jax.nn.relu, Linear]`` works under
    ``jax.jit``.
    """

    def _touch(self):
        _epoch.bump()

    def __setitem__(self, i, v):
        super().__setitem__(i, _track(v))
        _epoch.bump()

    def __delitem__(self, i):
        super().__delitem__(i)
        _epoch.bump()

    def append(self, v):
        super().append(_track(v))
        _epoch.bump()

    def extend(self, vs):
        super().extend(_track(v) for v in vs)
        _epoch.bump()

    def insert(self, i, v):
        super().insert(i, _track(v))
        _epoch.bump()

    def pop(self, i: SupportsIndex = -1):
        _epoch.bump()
        return super().pop(i)

    def remove(self, v):
        super().remove(v)
        _epoch.bump()

    def clear(self):
        super().clear()
        _epoch.bump()

    def sort(self, *a, **k):
        super().sort(*a, **k)
        _epoch.bump()

    def reverse(self):
        super().reverse()
        _epoch.bump()

    def __iadd__(self, vs):
        self.extend(vs)
        return self

    def __imul__(self, n):
        super().__imul__(n)
        _epoch.bump()
        return self

    def __repr__(self):
        return list.__repr__(self)

    def __reduce__(self):
        return (List, (list(self),))


class Dict(dict):
    """A ``dict`` that records its mutations (see the module docstring)."""

    def __setitem__(self, k, v):
        super().__setitem__(k, _track(v))
        _epoch.bump()

    def __delitem__(self, k):
        super().__delitem__(k)
        _epoch.bump()

    def pop(self, *a):
        _epoch.bump()
        return super().pop(*a)

    def popitem(self):
        _epoch.bump()
        return super().popitem()

    def clear(self):
        super().clear()
        _epoch.bump()

    def update(self, *a, **k):
        for key, v in dict(*a, **k).items():
            self[key] = v

    def setdefault(self, k, v=None):
        if k not in self:
            self[k] = v
        return self[k]

    def __repr__(self):
        return dict.__repr__(self)

    def __reduce__(self):
        return (Dict, (dict(self),))


def _list_flatten(xs):
    data_idx, static_items = _split_items(enumerate(xs))
    return [xs[i] for i in data_idx], (len(xs), data_idx, static_items)


def _list_flatten_with_keys(xs):
    data_idx, static_items = _split_items(enumerate(xs))
    keys = [(jax.tree_util.SequenceKey(i), xs[i]) for i in data_idx]
    return keys, (len(xs), data_idx, static_items)


def _list_unflatten(aux, children):
    n, data_idx, static_items = aux
    out = [None] * n
    for i, c in zip(data_idx, children):
        out[i] = c
    for i, s in static_items:
        out[i] = s.value
    new = List.__new__(List)
    list.extend(new, out)
    return new


def _dict_flatten(d):
    keys = sorted(d, key=_sort_key)
    data_keys, static_items = _split_items((k, d[k]) for k in keys)
    return [d[k] for k in data_keys], (data_keys, static_items)


def _dict_flatten_with_keys(d):
    keys = sorted(d, key=_sort_key)
    data_keys, static_items = _split_items((k, d[k]) for k in keys)
    return [(jax.tree_util.DictKey(k), d[k]) for k in data_keys], (data_keys, static_items)


def _dict_unflatten(aux, children):
    data_keys, static_items = aux
    new = Dict.__new__(Dict)
    for k, c in zip(data_keys, children):
        dict.__setitem__(new, k, c)
    for k, s in static_items:
        dict.__setitem__(new, k, s.value)
    return new


def _sort_key(k):
    return (0, k, "") if isinstance(k, int) else (1, 0, str(k))


jax.tree_util.register_pytree_with_keys(
    List, _list_flatten_with_keys, _list_unflatten, flatten_func=_list_flatten
)
jax.tree_util.register_pytree_with_keys(
    Dict, _dict_flatten_with_keys, _dict_unflatten, flatten_func=_dict_flatten
)


class Layout:
    """Which attributes of one Pytree instance are data, graph references, static.

    It is part of the GraphDef of the instance; equal layouts mean equal static
    structure.
    """

    __slots__ = ("data_keys", "graph_keys", "keys", "static_items", "scalar_keys", "_key", "_hash")

    def __init__(
        self, data_keys: tuple[str, ...], static_items: tuple, graph_keys=(), scalar_keys=()
    ):
        self.data_keys = data_keys
        self.scalar_keys = frozenset(scalar_keys)
        self.graph_keys = graph_keys
        self.keys = data_keys + graph_keys  # what the graph walk visits, in order
        self.static_items = static_items  # ((name, _Static), ...)
        self._key = (data_keys, graph_keys, static_items, self.scalar_keys)
        self._hash = hash(self._key)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return self is other or (type(other) is Layout and self._key == other._key)

    def __repr__(self):
        return f"Layout(data={self.data_keys}, static={[k for k, _ in self.static_items]})"


def compute_layout(obj: Pytree) -> Layout:
    d = obj.__dict__
    forced = _get_forced(obj)
    data_keys, graph_keys, static_items, scalar_keys = [], [], [], []
    for k in sorted(d):
        v = d[k]
        f = forced.get(k) if forced else None
        if f is GRAPH:
            graph_keys.append(k)
        elif f is True or (f is None and is_data(v)):
            data_keys.append(k)
            if f is True and isinstance(v, (int, float, complex)):
                scalar_keys.append(k)
        else:
            static_items.append((k, _Static(v)))
    layout = Layout(tuple(data_keys), tuple(static_items), tuple(graph_keys), scalar_keys)
    _set_layout(obj, layout)
    return layout


class Pytree:
    """Base class of user objects that JAX sees as pytrees.

    Example::

        class Scaler(nnx.Pytree):
            def __init__(self):
                self.w = nnx.Param(jnp.ones(3))   # data
                self.name = "scaler"              # static

        s = Scaler()
        jax.tree.map(lambda x: x * 2, s).w[...]   # Array([2., 2., 2.])

    Attributes can be replaced at any time (model surgery), and one Variable
    or Pytree can be held by several parents; ``nnx.split`` and the nnx
    transforms keep that sharing.
    """

    __slots__ = ("__dict__", "__weakref__", "_nnx_layout", "_nnx_forced", "_nnx_flat")

    def __init_subclass__(cls, *, pytree: bool = True, **kwargs):
        super().__init_subclass__(**kwargs)
        if pytree:
            _register_pytree_type(cls)

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        _set_layout(obj, None)
        _set_forced(obj, None)
        set_flat_cache(obj, None)
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        forced = None
        if type(value) is _Marker:
            forced = value.is_data
            value = value.value
            f = _get_forced(self)
            if f is None:
                f = {}
                _set_forced(self, f)
            f[name] = forced
        elif self.__dict__.get(name, _MISSING) is value:
            object.__setattr__(self, name, value)  # e.g. `self.count += 1`
            return
        else:
            f = _get_forced(self)
            forced = f.get(name) if f else None
        if forced is GRAPH:
            object.__setattr__(self, name, value)
            _set_layout(self, None)
            _epoch.bump()
            return
        if forced is False and _contains_data(value):
            raise PytreeStaticError(
                f"{type(self).__name__}.{name} is declared static (nnx.static) but its "
                f"value holds arrays or Variables: {_short(value)}. Static attributes are "
                "baked into the compiled program; hold arrays in a data attribute "
                f"(`self.{name} = nnx.data(...)`) or in an nnx.Variable."
            )
        if forced is True or (forced is None and is_data(value)):
            value = _track(value)
        object.__setattr__(self, name, value)
        _set_layout(self, None)
        _epoch.bump()

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        _set_layout(self, None)
        f = _get_forced(self)
        if f:
            f.pop(name, None)
        _epoch.bump()

    def __getstate__(self):
        return dict(self.__dict__), _get_forced(self)

    def __setstate__(self, state):
        d, forced = state
        _set_layout(self, None)
        set_flat_cache(self, None)
        _set_forced(self, forced)
        self.__dict__.update(d)

    def __deepcopy__(self, memo):
        import copy

        new = object.__new__(type(self))
        memo[id(self)] = new
        _set_layout(new, None)
        set_flat_cache(new, None)
        forced = _get_forced(self)
        _set_forced(new, dict(forced) if forced else None)
        for k, v in self.__dict__.items():
            new.__dict__[k] = copy.deepcopy(v, memo)
        return new

    def __repr__(self) -> str:
        from nnx.core._display import node_repr

        return node_repr(self)

    def __treescope_repr__(self, path, subtree_renderer):
        from nnx.core._display import treescope_node

        return treescope_node(self, path, subtree_renderer)


get_flat_cache_raw = Pytree._nnx_flat.__get__  # type: ignore[attr-defined]
set_flat_cache = Pytree._nnx_flat.__set__  # type: ignore[attr-defined]
_get_layout = Pytree._nnx_layout.__get__  # type: ignore[attr-defined]
_set_layout = Pytree._nnx_layout.__set__  # type: ignore[attr-defined]
_get_forced_raw = Pytree._nnx_forced.__get__  # type: ignore[attr-defined]
_set_forced = Pytree._nnx_forced.__set__  # type: ignore[attr-defined]


def _get_forced(obj):
    try:
        return _get_forced_raw(obj)
    except AttributeError:
        return None


def get_layout(obj: Pytree) -> Layout:
    """The cached layout of ``obj`` (computed when an attribute changed)."""
    try:
        layout = _get_layout(obj)
    except AttributeError:
        layout = None
    return layout if layout is not None else compute_layout(obj)


def _forced_of(layout: Layout):
    if not (layout.graph_keys or layout.scalar_keys):
        return None
    return {**dict.fromkeys(layout.graph_keys, GRAPH), **dict.fromkeys(layout.scalar_keys, True)}


def _short(value) -> str:
    r = repr(value)
    return r if len(r) < 80 else r[:77] + "..."


def new_node(cls: type, layout: Layout, values) -> Pytree:
    """Build an instance of ``cls`` from its layout and its data values, no __init__."""
    obj = object.__new__(cls)
    _set_forced(obj, _forced_of(layout))
    set_flat_cache(obj, None)
    d = obj.__dict__
    for k, v in zip(layout.keys, values):
        d[k] = v
    for k, s in layout.static_items:
        d[k] = s.value
    _set_layout(obj, layout)
    return obj


# Set by nnx.core._graph: the JAX pytree view of a Pytree is its graph
# flattening (each Variable once, graph_ref attributes static), cached per object.
_hooks: dict = {}


def _register_pytree_type(cls: type) -> None:
    def flatten(obj):
        flat = _hooks["flatten"](obj)
        return flat.leaves, flat.graphdef

    def flatten_with_keys(obj):
        flat = _hooks["flatten"](obj)
        return _hooks["keys"](flat), flat.graphdef

    def unflatten(graphdef, children):
        return _hooks["unflatten"](graphdef, children)

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten_func=flatten)


_register_pytree_type(Pytree)

Object = Pytree
"""Alias of :class:`Pytree` (the name used by earlier releases)."""
