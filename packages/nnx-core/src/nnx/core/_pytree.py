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

import functools
from collections.abc import Callable
from typing import Any, SupportsIndex

import jax
import numpy as np
from jax.extend.core import get_opaque_trace_state

from nnx.core import _epoch
from nnx.core._errors import PytreeStaticError
from nnx.core._paths import key_order
from nnx.core._pytree_marks import (
    _MISSING,
    GRAPH,
    _class_annotations,
    _Marker,
    check_write,
    holds_marker,
    marker_inside_error,
)
from nnx.core._text import (
    block,
    treescope_object,
)
from nnx.core._var_aux import _freeze
from nnx.core._variables import Variable


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
    if type(x) in (list, dict, List, Dict, _TrackedList, _TrackedDict):
        return len(x) == 0 or _contains_data(x)
    if isinstance(x, tuple):
        return _contains_data(x)
    if isinstance(x, (list, dict)):
        return _contains_data(x)
    return _pytree_holds_data(x)


class _Static:
    """A static value inside a hashable structure; compared by its frozen form."""

    __slots__ = ("value", "_key", "_hash", "mutable")

    def __init__(self, value):
        self.value = value
        self._key = _freeze(value)
        self._hash = hash(self._key)
        # a list/dict/set (or a tuple holding one) can change in place: compared by
        # its frozen form only, and re-checked by the flattening (`stale`)
        self.mutable = _is_mutable(value)

    def stale(self) -> bool:
        """Whether a mutable value changed in place since this record was made."""
        return self.mutable and _freeze(self.value) != self._key

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return type(other) is _Static and (
            (self.value is other.value and not self.mutable) or self._key == other._key
        )

    def __repr__(self):
        return repr(self.value)


def _is_mutable(x) -> bool:
    t = type(x)
    if t is list or t is dict or t is set or t is bytearray:
        return True
    if t is tuple:
        return any(_is_mutable(y) for y in x)
    return False


def _track(x):
    """Containers in data attributes become tracked List/Dict (recursively)."""
    t = type(x)
    if t is list:
        return _TrackedList(_track(y) for y in x)
    if t is dict:
        return _TrackedDict({k: _track(v) for k, v in x.items()})
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
        # Flax NNX's layout: one item per line, nested reprs indented
        return block("List", [("", repr(x)) for x in self], open_="([", close="])", sep="")

    def __reduce__(self):
        return (type(self), (list(self),))


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
        items = [(repr(k), repr(v)) for k, v in self.items()]
        return block("Dict", items, open_="({", close="})", sep=": ")

    def __reduce__(self):
        return (type(self), (dict(self),))


class _TrackedList(List):
    """A plain list assigned to a data attribute, tracked as :class:`List` is. As in
    Flax NNX, where it stays a plain list, it prints as one and is not a graph node
    of its own (``nnx.iter_children`` and ``nnx.iter_modules`` look through it)."""

    __repr__ = list.__repr__


class _TrackedDict(Dict):
    """A plain dict assigned to a data attribute (see :class:`_TrackedList`)."""

    __repr__ = dict.__repr__


def is_user_container(x) -> bool:
    """Whether ``x`` is an ``nnx.List`` / ``nnx.Dict`` built as one (a graph node, as
    Flax NNX's are Modules), not a plain list or dict that an attribute holds."""
    t = type(x)
    return t is List or t is Dict


def _list_flatten(xs):
    data_idx, static_items = _split_items(enumerate(xs))
    return [xs[i] for i in data_idx], (len(xs), data_idx, static_items)


def _list_flatten_with_keys(xs):
    data_idx, static_items = _split_items(enumerate(xs))
    keys = [(jax.tree_util.SequenceKey(i), xs[i]) for i in data_idx]
    return keys, (len(xs), data_idx, static_items)


def _list_unflatten(aux, children, cls):
    n, data_idx, static_items = aux
    out = [None] * n
    for i, c in zip(data_idx, children):
        out[i] = c
    for i, s in static_items:
        out[i] = s.value
    new = cls.__new__(cls)
    list.extend(new, out)
    return new


def _dict_flatten(d):
    keys = sorted(d, key=key_order)
    data_keys, static_items = _split_items((k, d[k]) for k in keys)
    return [d[k] for k in data_keys], (data_keys, static_items)


def _dict_flatten_with_keys(d):
    keys = sorted(d, key=key_order)
    data_keys, static_items = _split_items((k, d[k]) for k in keys)
    return [(jax.tree_util.DictKey(k), d[k]) for k in data_keys], (data_keys, static_items)


def _dict_unflatten(aux, children, cls):
    data_keys, static_items = aux
    new = cls.__new__(cls)
    for k, c in zip(data_keys, children):
        dict.__setitem__(new, k, c)
    for k, s in static_items:
        dict.__setitem__(new, k, s.value)
    return new


for _cls, _flat, _keyed, _unflat in (
    (List, _list_flatten, _list_flatten_with_keys, _list_unflatten),
    (_TrackedList, _list_flatten, _list_flatten_with_keys, _list_unflatten),
    (Dict, _dict_flatten, _dict_flatten_with_keys, _dict_unflatten),
    (_TrackedDict, _dict_flatten, _dict_flatten_with_keys, _dict_unflatten),
):
    jax.tree_util.register_pytree_with_keys(
        _cls, _keyed, functools.partial(_unflat, cls=_cls), flatten_func=_flat
    )


class Layout:
    """Which attributes of one Pytree instance are data, graph references, static.

    It is part of the GraphDef of the instance; equal layouts mean equal static
    structure.
    """

    __slots__ = (
        "data_keys",
        "graph_keys",
        "keys",
        "static_items",
        "scalar_keys",
        "mutable_statics",
        "_key",
        "_hash",
    )

    def __init__(
        self, data_keys: tuple[str, ...], static_items: tuple, graph_keys=(), scalar_keys=()
    ):
        self.data_keys = data_keys
        self.scalar_keys = frozenset(scalar_keys)
        self.graph_keys = graph_keys
        self.keys = data_keys + graph_keys  # what the graph walk visits, in order
        self.static_items = static_items  # ((name, _Static), ...)
        # static values that can change in place (a config dict): the flattening
        # re-checks them, so an in-place edit is seen as a structural change
        self.mutable_statics = tuple(s for _, s in static_items if s.mutable)
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
    annotated = type(obj)._nnx_annotated
    data_keys, graph_keys, static_items, scalar_keys = [], [], [], []
    for k in sorted(d):
        v = d[k]
        f = forced.get(k) if forced else None
        if f is None and annotated:
            f = annotated.get(k)
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

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_nnx_layout",
        "_nnx_forced",
        "_nnx_flat",
        "_nnx_trace",
    )

    _nnx_annotated: dict = {}  # {attribute: is_data} from nnx.Data/nnx.Static annotations

    def __init_subclass__(cls, *, pytree: bool = True, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._nnx_annotated = _class_annotations(cls)
        if pytree:
            _register_pytree_type(cls)

    def __new__(cls, *args, **kwargs):  # noqa: ARG004
        obj = object.__new__(cls)
        _set_layout(obj, None)
        _set_forced(obj, None)
        set_flat_cache(obj, None)
        _set_trace(obj, get_opaque_trace_state(convention="nnx"))
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        _check_trace(self, name)
        forced = None
        if type(value) in _CONTAINERS and holds_marker(value):
            raise marker_inside_error(self, name)
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
            if forced is None:
                forced = type(self)._nnx_annotated.get(name)
            if forced is None and type(value) in _NUMBERS and _holds_inferred_data(self, name):
                # an attribute's status is set by its first value, as in Flax NNX: an
                # array attribute that now holds a number stays a leaf
                forced = True
                if f is None:
                    f = {}
                    _set_forced(self, f)
                f[name] = True
        if forced is GRAPH:
            object.__setattr__(self, name, value)
            _set_layout(self, None)
            _epoch.bump()
            return
        if forced is False and _contains_data(value):
            raise PytreeStaticError(
                f"{type(self).__name__}.{name} is declared static (nnx.static or "
                f"nnx.Static[...]) but its "
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
        _check_trace(self, name)
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
        _set_trace(new, get_opaque_trace_state(convention="nnx"))
        forced = _get_forced(self)
        _set_forced(new, dict(forced) if forced else None)
        for k, v in self.__dict__.items():
            new.__dict__[k] = copy.deepcopy(v, memo)
        return new

    def __repr__(self) -> str:
        return _REPR[0](self)  # _pytree_repr's, installed when nnx.core is imported

    def __treescope_repr__(self, path, subtree_renderer):
        return treescope_object(self, dict(sorted(self.__dict__.items())), path, subtree_renderer)


get_flat_cache_raw = Pytree._nnx_flat.__get__  # type: ignore[attr-defined]
set_flat_cache = Pytree._nnx_flat.__set__  # type: ignore[attr-defined]
_get_layout = Pytree._nnx_layout.__get__  # type: ignore[attr-defined]
_set_layout = Pytree._nnx_layout.__set__  # type: ignore[attr-defined]
_get_forced_raw = Pytree._nnx_forced.__get__  # type: ignore[attr-defined]
_set_forced = Pytree._nnx_forced.__set__  # type: ignore[attr-defined]
_get_trace_raw = Pytree._nnx_trace.__get__  # type: ignore[attr-defined]
_set_trace = Pytree._nnx_trace.__set__  # type: ignore[attr-defined]
_CONTAINERS = (list, tuple, dict)
_NUMBERS = frozenset({bool, int, float, complex})


def _holds_inferred_data(obj: Pytree, name: str) -> bool:
    old = obj.__dict__.get(name, _MISSING)
    return old is not _MISSING and is_data(old)


def _check_trace(obj: Pytree, name: str) -> None:
    try:
        trace = _get_trace_raw(obj)
    except AttributeError:  # made without __new__ (pickle): nothing recorded
        return
    check_write(trace, obj, name)


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
    """``value``'s repr on one line (size comments dropped), at most 80 characters."""
    lines = [line.split(" # ")[0].strip() for line in repr(value).splitlines()]
    r = " ".join(lines).replace("( ", "(").replace(" )", ")")
    return r if len(r) < 80 else r[:77] + "..."


def new_node(cls: type, layout: Layout, values, trace: Any = None) -> Pytree:
    """Build an instance of ``cls`` from its layout and its data values, no __init__.

    ``trace``: the trace it is created in, when the caller has read it already (an
    unflatten builds all its nodes in one trace: one read instead of one a node).
    """
    obj = object.__new__(cls)
    _set_forced(obj, _forced_of(layout))
    set_flat_cache(obj, None)
    _set_trace(obj, get_opaque_trace_state(convention="nnx") if trace is None else trace)
    d = obj.__dict__
    for k, v in zip(layout.keys, values):
        d[k] = v
    for k, s in layout.static_items:
        d[k] = s.value
    _set_layout(obj, layout)
    return obj


class PytreeCodec:
    """What the graph encoding gives this module, which sits below it.

    A Pytree is seen by JAX as the flattening of its graph, which is built on
    :mod:`nnx.core._flatten`,
    which imports this module. :mod:`nnx.core._pytree_view` installs the one
    codec with :func:`install_codec` when ``nnx.core`` is imported.

    Attributes:
      jax_flatten: ``obj -> FlatGraph`` of the JAX view (``graph_ref`` static), cached.
      jax_keys: ``FlatGraph -> [(key, leaf), ...]`` for ``tree_flatten_with_path``.
      jax_unflatten: ``(graphdef, children) -> obj``.
    """

    __slots__ = ("jax_flatten", "jax_keys", "jax_unflatten")

    def __init__(
        self,
        jax_flatten: Callable[[Any], Any],
        jax_keys: Callable[[Any], list],
        jax_unflatten: Callable[[Any, Any], Any],
    ):
        self.jax_flatten = jax_flatten
        self.jax_keys = jax_keys
        self.jax_unflatten = jax_unflatten


def _not_installed(*_):
    raise RuntimeError(
        "The graph encoding of nnx.core is not loaded: import nnx (or nnx.core) rather "
        "than one of its private modules."
    )


_codec = PytreeCodec(_not_installed, _not_installed, _not_installed)


_REPR: list[Callable[[Any], str]] = [object.__repr__]


def install_repr(fn: Callable[[Any], str]) -> None:
    """Set the text of every Pytree (``nnx.core._pytree_repr`` installs Flax NNX's
    layout; it sits above this module, which it reads)."""
    _REPR[0] = fn


def install_codec(codec: PytreeCodec) -> None:
    """Install the graph encoding's functions (called once, by ``_pytree_view``)."""
    global _codec
    _codec = codec


def _register_pytree_type(cls: type) -> None:
    def flatten(obj):
        flat = _codec.jax_flatten(obj)
        return flat.leaves, flat.graphdef

    def flatten_with_keys(obj):
        flat = _codec.jax_flatten(obj)
        return _codec.jax_keys(flat), flat.graphdef

    def unflatten(graphdef, children):
        return _codec.jax_unflatten(graphdef, children)

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten_func=flatten)


_register_pytree_type(Pytree)

Object = Pytree
"""Alias of :class:`Pytree` (the name used by earlier releases)."""
