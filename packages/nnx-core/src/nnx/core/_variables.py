"""``Variable``: a mutable box around a value, and its kinds.

A Variable holds a value (an array or any pytree of arrays) and metadata (a
dict). It stores the value in one of three ways:

- **plain**: the value itself; it crosses JAX boundaries through the nnx
  transforms or ``split``/``merge``;
- **ref**: each array in a ``jax.Ref`` (``jax.new_ref``), which a plain
  ``jax.jit`` mutates in place;
- **hijax**: in a :class:`~nnx.core._hijax.Cell`, a JAX hi-type, so the
  Variable can be passed straight into ``jax.jit``/``jax.grad`` and writes
  inside come out.

Immutable Variables (``mutable=False``) hold plain values and reject writes.

This module holds the class, its JAX pytree registration, its text form and the
kinds (``Param``, ``BatchStat``, ...). Around it: the static part and storage
modes (``_var_aux.py``), the operators (``_var_ops.py``), the hijax view
(``_var_view.py``), the initializer wrappers (``_var_metadata.py``), the Linen
collection names (``_var_names.py``) and ``set_metadata`` over a graph
(``_walk.py``).
"""

from __future__ import annotations

from types import EllipsisType
from typing import Any, Generic, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import get_opaque_trace_state

from nnx.core import _epoch
from nnx.core._errors import HijaxError, ImmutableVariableError, TraceContextError
from nnx.core._hijax import (
    Cell,
    CellView,
    cell_content,
    cell_get,
    cell_set,
    is_cell,
    is_tracer,
)
from nnx.core._sharding_rules import shard_new_value
from nnx.core._text import (
    PRIVATE_META,
    block,
    count_arrays,
    inline,
    shape_summary,
    size_str,
    treescope_object,
    value_text,
)
from nnx.core._var_aux import (
    _METADATA_ALIASES,
    HIJAX,
    PLAIN,
    REF,
    VarAux,
    _canonical_metadata,
    _describe,
    _from_ref,
    _resolve_mode,
    _store,
    _to_ref,
)
from nnx.core._var_metadata import (
    NO_DEFAULT,
    REQUIRED_METADATA,
    VariableMetadata,
    axis_names_changed,
    get_metadata,
    without_required,
)
from nnx.core._var_ops import ValueOps
from nnx.core._var_view import _LeafView, _set_owner, _view_class

A = TypeVar("A")


class Variable(ValueOps, Generic[A]):
    """A mutable box around a value, with metadata.

    Example::

        v = nnx.Variable(jnp.array([1, 2, 3]), tag="demo")
        v[...] += 1            # in place, v stays the same object
        v[...]                 # Array([2, 3, 4])
        v.tag                  # 'demo'
        v + 1                  # arithmetic acts on the value

    Subclasses name kinds of state (``Param``, ``BatchStat``, ...); a user
    subclass (``class Count(nnx.Variable): pass``) behaves the same.

    Args:
      value: an array or any pytree of arrays.
      hijax: store the value in a JAX hi-type (see :func:`var_defaults`).
      ref: store each array in a ``jax.Ref``.
      mutable: ``False`` makes the Variable reject writes; ``True`` (the
        mutable-arrays era spelling) asks for ref storage.
      is_hijax: alias of ``hijax``.
      eager_sharding: with ``sharding_names`` metadata, shard the value when the
        Variable is created under a mesh (default: :func:`using_eager_sharding`).
      **metadata: any keyword; read back as attributes (``v.sharding_names``).
    """

    __slots__ = ("_raw", "_aux", "_trace", "_view", "__weakref__")
    required_metadata = REQUIRED_METADATA  # entries every Variable reports (Flax NNX's)

    _raw: Any
    _aux: VarAux

    def __init__(
        self,
        value: A,
        *,
        hijax: bool | None = None,
        ref: bool | None = None,
        mutable: bool | None = None,
        is_hijax: bool | None = None,
        eager_sharding: bool | None = None,
        **metadata: Any,
    ):
        if is_hijax is not None:
            hijax = is_hijax
        if isinstance(value, VariableMetadata):
            metadata = {**value.metadata, **metadata}
            value = value.value
            if eager_sharding is None:
                eager_sharding = metadata.pop("eager_sharding", None)
        if isinstance(value, Variable):
            metadata = {**value._aux.metadata, **metadata}
            value = value.get_value()
        for alias, key in _METADATA_ALIASES.items():
            if alias in metadata:
                metadata[key] = metadata.pop(alias)
        if isinstance(value, jax.Ref):
            raise HijaxError(
                f"{type(self).__name__}(...) got a jax.Ref as its value. Pass the array "
                "and ask for ref storage instead: `nnx.Variable(array, ref=True)`."
            )
        if "out_sharding" in metadata:
            value = shard_new_value(value, metadata, eager_sharding)
        mode, is_mutable = _resolve_mode(hijax, ref, mutable)
        _set_raw(self, _store(mode, value))
        _set_aux(self, VarAux(mode, is_mutable, metadata))
        _set_trace(self, get_opaque_trace_state(convention="nnx") if mode == PLAIN else None)

    # -- construction without __init__ ----------------------------------------
    @classmethod
    def _from_raw(cls, raw, aux: VarAux, trace=None):
        v = object.__new__(cls)
        _set_raw(v, raw)
        _set_aux(v, aux)
        _set_trace(v, trace)
        return v

    # -- modes -----------------------------------------------------------------
    @property
    def hijax(self) -> bool:
        """True when the value lives in a JAX hi-type cell."""
        return self._aux.mode == HIJAX

    @property
    def ref(self) -> bool:
        """True when the value lives in ``jax.Ref``\\ s."""
        return self._aux.mode == REF

    @property
    def mutable(self) -> bool:
        """False for Variables that reject writes (``nnx.vars_as(v, mutable=False)``)."""
        return self._aux.mutable

    is_hijax = hijax
    has_ref = ref

    @property
    def metadata(self) -> dict:
        """A copy of the metadata dict."""
        return dict(self._aux.metadata)

    # -- value access ----------------------------------------------------------
    def get_value(self) -> A:
        """The value (read from the ref or cell for those modes)."""
        mode = self._aux.mode
        raw = self._raw
        if mode == PLAIN:
            return raw
        if mode == REF:
            return _from_ref(raw)
        return cell_get(raw)

    def set_value(self, value: A) -> None:
        """Replace the value. Raises for immutable Variables."""
        aux = self._aux
        if not aux.mutable:
            raise ImmutableVariableError(
                f"Cannot write to an immutable {type(self).__name__} (mutable=False). "
                "Convert it first: `nnx.vars_as(tree, mutable=True)`."
            )
        if isinstance(value, Variable):
            value = value.get_value()
        mode = aux.mode
        if mode == PLAIN:
            self._check_trace(value)
            _set_raw(self, value)
        elif mode == REF:
            raw = self._raw
            if isinstance(raw, jax.Ref):
                raw[...] = value
            else:
                jax.tree.map(_ref_assign, raw, value, is_leaf=lambda r: isinstance(r, jax.Ref))
        else:
            cell_set(self._raw, value)

    def _check_trace(self, value) -> None:  # noqa: ARG002
        trace = self._trace
        if trace is None:
            return
        if trace != get_opaque_trace_state(convention="nnx"):
            raise TraceContextError(
                f"Cannot mutate {type(self).__name__} from a different trace level: this "
                f"{type(self).__name__} ({_describe(self._raw)}) was created outside this JAX "
                "transform and written inside it. Pass the object that holds it as an argument of the nnx "
                "transform (`nnx.jit(f)(model)`), or use a ref or hijax Variable "
                "(`nnx.var_defaults(hijax=True)`) so that plain JAX can carry the write."
            )

    @property
    def value(self) -> A:
        """The value; same as ``v.get_value()`` (``v[...]`` for arrays)."""
        return self.get_value()

    @value.setter
    def value(self, value: A) -> None:
        self.set_value(value)

    def get_raw_value(self):
        """The stored object: the value, its ``jax.Ref``\\ s, or its hijax cell."""
        return self._raw

    def set_raw_value(self, raw) -> None:
        """Replace the stored object without checks (for transforms and tools)."""
        _set_raw(self, raw)

    # `v[...]` is the value; `v[key]` indexes into it, whatever its type. `A` is
    # unconstrained, so the locals that hold the value are declared Any.
    @overload
    def __getitem__(self, key: EllipsisType) -> A: ...
    @overload
    def __getitem__(self, key: Any) -> Any: ...
    def __getitem__(self, key: Any) -> Any:
        if key is Ellipsis:
            if self._aux.mode == REF and isinstance(self._raw, jax.Ref):
                return self._raw[...]
            return self.get_value()
        value: Any = self.get_value()
        return value[key]

    def __setitem__(self, key: Any, item: Any) -> None:
        if key is Ellipsis:
            mode = self._aux.mode
            cur = self._raw if mode != HIJAX else self.get_value()  # (a ref: its shape/dtype)
            if isinstance(cur, (jax.Array, np.ndarray, jax.Ref)):
                item = self._write_into(cur, item)
            self.set_value(item)
            return
        value: Any = self.get_value()
        new: Any
        if isinstance(value, dict):
            if self._aux.mode == REF and key in self._raw:
                self._raw[key][...] = item
                return
            if self._aux.mode == REF:
                raise HijaxError(
                    f"Cannot add key {key!r} to a ref {type(self).__name__}: the structure "
                    "of a ref Variable is fixed. Use a hijax Variable for dicts that grow."
                )
            new = dict(value)
            new[key] = item
            self.set_value(new)
        elif isinstance(value, list):
            new = list(value)
            new[key] = item
            self.set_value(new)
        elif self._aux.mode == REF and isinstance(self._raw, jax.Ref):
            if not self._aux.mutable:
                self.set_value(item)  # raises
            self._raw[key] = item
        else:
            new = jnp.asarray(value).at[key].set(item)
            self.set_value(new)

    def _write_into(self, cur: Any, item: Any) -> Any:
        """``v[...] = item`` on an array value: ``item`` is written into it, broadcast
        to its shape and cast to its dtype (Flax NNX's ``v[...] =``); the value is
        replaced as is when it already has that shape and dtype."""
        if isinstance(item, Variable):
            item = item.get_value()
        if getattr(item, "shape", None) == cur.shape and getattr(item, "dtype", None) == cur.dtype:
            return item
        try:
            if isinstance(cur, np.ndarray) and not isinstance(item, jax.Array):
                new = np.array(cur)
                new[...] = item
                return new
            return jnp.broadcast_to(jnp.asarray(item).astype(cur.dtype), cur.shape)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"{type(self).__name__}[...] = value writes into the current array "
                f"({_describe(cur)}), broadcasting and casting the value; "
                f"{_describe(item)} does not fit ({e}). To replace the value with one "
                "of another shape, use `v.set_value(x)` (or `v.value = x`)."
            ) from None

    # -- metadata as attributes ------------------------------------------------
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            aux = object.__getattribute__(self, "_aux")
        except AttributeError:
            raise AttributeError(name) from None
        if name == "sharding":  # the property found no array sharding
            raise AttributeError(
                f"{type(self).__name__}.sharding: its value ({_describe(self.get_value())}) "
                "has no sharding (only jax.Array values have one). The sharding names are "
                "`.sharding_names`."
            )
        name = _METADATA_ALIASES.get(name, name)
        if name in aux.metadata:
            return aux.metadata[name]
        value = self.get_value()
        try:
            return getattr(value, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no metadata or value attribute {name!r}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "sharding":  # the metadata alias; reading it gives the array's sharding
            name = "out_sharding"
        elif name in _SLOT_NAMES or hasattr(type(self), name):
            object.__setattr__(self, name, value)
            return
        name = _METADATA_ALIASES.get(name, name)
        _set_aux(self, self._aux.replace(**{name: value}))
        _epoch.bump()

    def __delattr__(self, name: str) -> None:
        meta = dict(self._aux.metadata)
        if name not in meta:
            raise AttributeError(name)
        del meta[name]
        _set_aux(self, VarAux(self._aux.mode, self._aux.mutable, meta))
        _epoch.bump()

    def set_metadata(self, *args, **metadata) -> None:
        """Set metadata, in one of three forms (as Flax NNX):

        - ``v.set_metadata(name=value, ...)``: set or replace those entries;
        - ``v.set_metadata("name", value)``: set one entry;
        - ``v.set_metadata({...})``: replace the whole metadata dict.
        """
        if args and metadata:
            raise TypeError(
                f"{type(self).__name__}.set_metadata: pass either keywords, a (name, value) "
                "pair or one dict, not positional and keyword arguments together"
            )
        aux = self._aux
        if len(args) == 1:
            new = without_required(self, _canonical_metadata(dict(args[0])))
            _set_aux(self, VarAux(aux.mode, aux.mutable, new))
        elif len(args) == 2:
            name, value = args
            key = str(name)
            change = without_required(self, {_METADATA_ALIASES.get(key, key): value})
            _set_aux(self, aux.replace(**change))
        elif metadata and not args:
            _set_aux(self, aux.replace(**without_required(self, _canonical_metadata(metadata))))
        else:
            raise TypeError(
                f"{type(self).__name__}.set_metadata takes keywords, a (name, value) pair or "
                f"one dict, got {len(args)} positional arguments"
            )
        _epoch.bump()

    @overload
    def get_metadata(self, *, exclude_required: bool | None = None) -> dict[str, Any]: ...
    @overload
    def get_metadata(self, key: str, default: Any = ...) -> Any: ...
    def get_metadata(
        self, key: str | None = None, default: Any = NO_DEFAULT, *, exclude_required=None
    ) -> Any:
        """The metadata entry ``key``, or with no key a copy of the whole metadata dict.

        As in Flax NNX, an entry that is absent is ``default`` when one is given and a
        ``KeyError`` otherwise, and every Variable has the entries ``hijax``, ``ref``
        and ``eager_sharding`` (``required_metadata``; ``exclude_required=True``
        leaves them out of the whole dict)::

            v = nnx.Param(jnp.ones(2), lr=0.1)
            v.get_metadata("lr")            # 0.1
            v.get_metadata("group", None)   # None
            v.get_metadata("group")         # KeyError
            v.get_metadata()                # {'lr': 0.1, 'hijax': False, 'ref': False, ...}
        """
        return get_metadata(self, key, default, exclude_required)

    def del_metadata(self, name: str) -> None:
        """Delete the metadata entry ``name`` (``KeyError`` when absent)."""
        meta = dict(self._aux.metadata)
        name = _METADATA_ALIASES.get(name, name)
        if name not in meta:
            raise KeyError(f"{type(self).__name__} has no metadata {name!r}; it has {sorted(meta)}")
        del meta[name]
        _set_aux(self, VarAux(self._aux.mode, self._aux.mutable, meta))
        _epoch.bump()

    @property
    def type(self) -> type:
        """The Variable's kind (Flax NNX's ``Variable.type``, from the days of
        ``VariableState``): ``type(v)``, or the ``type`` metadata of an
        ``nnx.VariableState(type=nnx.Param, value=...)``."""
        kind = self._aux.metadata.get("type")
        return kind if isinstance(kind, type) else type(self)

    @property
    def sharding(self):
        """The sharding of the value (``v[...].sharding``), as ``.shape`` and ``.dtype``
        read the value's. The sharding *names* metadata is ``v.sharding_names``."""
        value = self.get_value()
        try:
            return value.sharding  # type: ignore[attr-defined]
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__}.sharding: its value ({_describe(value)}) has no "
                "sharding (only jax.Array values have one). The sharding names are "
                "`.sharding_names`."
            ) from None

    @property
    def raw_value(self):
        """The stored object; same as :meth:`get_raw_value` (assigning calls
        :meth:`set_raw_value`)."""
        return self._raw

    @raw_value.setter
    def raw_value(self, raw) -> None:
        self.set_raw_value(raw)

    # -- copying state between Variables (Flax NNX's API) -------------------------
    def _check_same_kind(self, other, what: str) -> None:
        if not isinstance(other, Variable):
            raise TypeError(
                f"{type(self).__name__}.{what} needs a Variable, got {type(other).__name__}"
            )
        if type(other) is not type(self):
            raise ValueError(
                f"Cannot copy from incompatible container: {type(self).__name__}.{what} got "
                f"a {type(other).__name__}, expected a {type(self).__name__}"
            )

    def copy_from(self, other: Variable) -> None:
        """Take the value and metadata of ``other`` (a Variable of the same type) in place.

        This Variable keeps its own storage mode (plain, ref or hijax) and identity:
        the value is written into its storage, as ``v[...] = other[...]`` would.
        """
        self._check_same_kind(other, "copy_from")
        if other is self:
            return
        value = other.get_value()
        meta = dict(other._aux.metadata)
        self._write_whole(value)
        _set_aux(self, VarAux(self._aux.mode, self._aux.mutable, meta))
        _epoch.bump()

    def update_from_state(self, state: Variable) -> None:
        """Take the value and metadata of ``state`` (a Variable of a State), in place.

        Same as :meth:`copy_from`, but ``state`` may be of another Variable type (a
        State leaf built elsewhere); this Variable keeps its type, mode and identity.
        """
        if not isinstance(state, Variable):
            raise TypeError(
                f"{type(self).__name__}.update_from_state needs a Variable, got "
                f"{type(state).__name__}"
            )
        if state is self:
            return
        self._write_whole(state.get_value())
        if state._aux.metadata != self._aux.metadata:
            meta = dict(state._aux.metadata)
            _set_aux(self, VarAux(self._aux.mode, self._aux.mutable, meta))
            _epoch.bump()

    def _write_whole(self, value) -> None:
        """Replace the value, whatever its structure (a ref Variable gets new refs)."""
        if self._aux.mode == REF:
            if not self._aux.mutable:
                self.set_value(value)  # raises
            old = jax.tree_util.tree_structure(_from_ref(self._raw))
            if jax.tree_util.tree_structure(value) == old and all(
                np.shape(a) == np.shape(b)
                for a, b in zip(jax.tree.leaves(value), jax.tree.leaves(_from_ref(self._raw)))
            ):
                self.set_value(value)
            else:
                _set_raw(self, _to_ref(value))
        else:
            self.set_value(value)

    def to_state(self) -> Variable:
        """A copy of this Variable (Flax NNX's spelling of :meth:`copy`)."""
        return self.copy()

    def add_axis(self, axis_index: int, axis_name: Any) -> None:
        """Record that a transform added axis ``axis_index`` named ``axis_name``.

        ``nnx.vmap``/``nnx.scan`` call it on the Variables they stack. With an
        ``on_add_axis`` metadata hook, the hook is called ``(variable, axis_index,
        axis_name)``; otherwise ``axis_name`` is inserted into ``sharding_names``
        at ``axis_index`` when the Variable has sharding names.
        """
        axis_names_changed(self, axis_index, axis_name, add=True)

    def remove_axis(self, axis_index: int, axis_name: Any) -> None:
        """Undo :meth:`add_axis`: call the ``on_remove_axis`` hook, or drop the entry at
        ``axis_index`` from ``sharding_names`` (it must be ``axis_name``)."""
        axis_names_changed(self, axis_index, axis_name, add=False)

    # -- copies ----------------------------------------------------------------
    def replace(self, value: Any = None, **metadata) -> Variable:
        """A new Variable of the same kind and mode with a new value or metadata."""
        new_value = self.get_value() if value is None else value
        aux = self._aux.replace(**_canonical_metadata(metadata)) if metadata else self._aux
        return type(self)._from_raw(
            _store(aux.mode, new_value),
            aux,
            get_opaque_trace_state(convention="nnx") if aux.mode == PLAIN else None,
        )

    def copy(self) -> Variable:
        """A new Variable with the same value, kind, mode and metadata."""
        return self.replace()

    def to_mode(self, *, mode: int, mutable: bool) -> Variable:
        """A copy in another storage mode (see :func:`vars_as`)."""
        value = self.get_value()
        aux = self._aux.replace(mode=mode, mutable=mutable)
        return type(self)._from_raw(
            _store(mode, value),
            aux,
            get_opaque_trace_state(convention="nnx") if mode == PLAIN else None,
        )

    # -- JAX and numpy interop -------------------------------------------------
    def __jax_array__(self):
        return self.get_value()

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.get_value(), dtype=dtype)

    def __len__(self) -> int:
        value: Any = self.get_value()
        return len(value)

    def __iter__(self):
        value: Any = self.get_value()
        return iter(value)

    def __bool__(self) -> bool:
        return bool(self.get_value())

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return self._repr()

    def _repr(self, shapes: bool = False) -> str:
        """The text form, Flax NNX's layout: ``Param( # 6 (24 B)`` then ``value=...``
        and the metadata one per line. ``shapes``: arrays of more than one element
        as ``Array(shape=..., dtype=...)`` (how a module's repr shows them)."""
        aux = self._aux
        value = self._raw
        if aux.mode == HIJAX and type(value) is Cell:
            value = cell_content(value)
        elif aux.mode == REF and not is_tracer(value):
            value = value[...]
        if shapes:
            value = jax.tree.map(shape_summary, value)
        n, b = count_arrays(value)
        items = [("value", value_text(value))]
        if aux.mode == HIJAX:
            items.append(("hijax", "True"))
        elif aux.mode == REF:
            items.append(("ref", "True"))
        if not aux.mutable:
            items.append(("mutable", "False"))
        for k, m in aux.metadata.items():
            if k not in PRIVATE_META:
                items.append((k, inline(m)))
        return block(type(self).__name__, items, comment=f" # {size_str(n, b)}" if n else "")

    def __treescope_repr__(self, path, subtree_renderer):
        raw = self._raw
        attrs: dict[str, Any] = {"value": raw if is_tracer(raw) else self.get_value()}
        for k, m in self._aux.metadata.items():
            if k not in PRIVATE_META:
                attrs[k] = m
        if self.hijax:
            attrs["hijax"] = True
        if self.ref:
            attrs["ref"] = True
        return treescope_object(self, attrs, path, subtree_renderer)

    def __deepcopy__(self, memo):
        import copy

        value = copy.deepcopy(self.get_value(), memo)
        return type(self)._from_raw(
            _store(self._aux.mode, value), self._aux, self._trace if self._aux.mode == 0 else None
        )

    def __copy__(self):
        return self.copy()

    def __reduce__(self):
        return (_rebuild_variable, (type(self), self.get_value(), self._aux))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not issubclass(cls, CellView):  # a hijax Variable's view is a JAX leaf
            _register_variable_type(cls)


def _rebuild_variable(cls, value, aux):
    return cls._from_raw(
        _store(aux.mode, value),
        aux,
        get_opaque_trace_state(convention="nnx") if aux.mode == PLAIN else None,
    )


_SLOT_NAMES = frozenset({"_raw", "_aux", "_trace", "_view"})
_set_raw = Variable._raw.__set__  # type: ignore[attr-defined]
_set_aux = Variable._aux.__set__  # type: ignore[attr-defined]
_set_trace = Variable._trace.__set__  # type: ignore[attr-defined]
_get_view = Variable._view.__get__  # type: ignore[attr-defined]
_set_view = Variable._view.__set__  # type: ignore[attr-defined]


def _ref_assign(ref, value):
    ref[...] = value


# -- JAX pytree registration -----------------------------------------------------
# A Variable is a pytree node with one child. For plain and ref Variables the child is
# the stored value (arrays, jax.Refs). For a hijax Variable outside a trace it is a
# view (`_LeafView`): an object of the Variable's own class that forwards to it and
# that JAX types as its cell, so `jax.jit` carries writes while `jax.tree.map`,
# checkpoint libraries and reprs see the Variable, never the cell (decision 0009). A
# hijax Variable whose cell holds no arrays (ShapeDtypeStructs of an abstract model,
# None, a library's per-leaf options) shows that content, as a plain Variable does:
# the form a checkpoint restore takes as its target.
def _child(v):
    raw = v._raw
    if type(raw) is not Cell:
        return raw
    content = raw._val
    if type(content) not in _VALUE_CLASSES and not _holds_values(content):
        return content  # abstract (ShapeDtypeStructs), None, a library's options
    return _view_of(v)


def _view_of(v):
    try:
        return _get_view(v)
    except AttributeError:  # the first flatten of this Variable
        view = object.__new__(_view_class(type(v)))
        _set_owner(view, v)
        _set_view(v, view)
        return view


def _var_flatten(v):
    return (_child(v),), v._aux


def _var_flatten_with_keys(v):
    return ((_VALUE_KEY, _child(v)),), v._aux


_VALUE_KEY = jax.tree_util.GetAttrKey("value")


def _hijax_unflatten(cls, aux: VarAux, child):
    """What a tree of hijax Variables rebuilds from ``child``.

    The Variable itself for its view (a `jax.tree.map` that returned its argument); the
    Variable a function returned (`jax.tree.map(make_opt_state, params)`); a Variable
    around a cell (inside `jax.jit`); otherwise a new hijax Variable of the same kind
    and metadata holding the new value (a `jax.tree.map` that computed new arrays, a
    checkpoint restore), as for plain Variables.
    """
    if isinstance(child, _LeafView):
        return child._nnx_owner
    if isinstance(child, Variable):
        return child
    if is_cell(child):
        return cls._from_raw(child, aux, None)
    if isinstance(child, np.ndarray):
        # a host copy (`np.asarray` of the Variable, as checkpoint libraries make before
        # writing): a snapshot, not state for JAX to carry, so a plain Variable
        plain = aux.replace(mode=PLAIN)
        return cls._from_raw(child, plain, get_opaque_trace_state(convention="nnx"))
    return cls._from_raw(_store(HIJAX, child), aux, None)


_ARRAYISH = (jax.Array, np.ndarray, np.generic, int, float, complex)
# the classes of concrete arrays, checked by identity before the isinstance checks
_VALUE_CLASSES = frozenset({type(jnp.zeros(())), np.ndarray})


def _holds_values(content) -> bool:
    """Whether JAX must see a cell: it holds arrays or numbers, or an empty container
    (a dict that gains keys inside `jax.jit`). ``None``, ShapeDtypeStructs and other
    objects that are not values (a library's per-leaf options) are shown as they are."""
    if isinstance(content, _ARRAYISH):
        return True
    if content is None:
        return False
    leaves = jax.tree_util.tree_leaves(content)
    return not leaves or any(isinstance(x, _ARRAYISH) for x in leaves)


def _register_variable_type(cls) -> None:
    def unflatten(aux, children, cls=cls):
        raw = children[0]
        if aux.mode == HIJAX:
            return _hijax_unflatten(cls, aux, raw)
        trace = get_opaque_trace_state(convention="nnx") if aux.mode == PLAIN else None
        return cls._from_raw(raw, aux, trace)

    jax.tree_util.register_pytree_with_keys(
        cls, _var_flatten_with_keys, unflatten, flatten_func=_var_flatten
    )
    _VARIABLE_CLASSES.add(cls)


# every registered Variable class (not the view classes): jax_leaf's identity check
_VARIABLE_CLASSES: set = set()


_register_variable_type(Variable)


# -- the kinds -------------------------------------------------------------------
class Param(Variable[A]):
    """A trainable parameter. ``nnx.grad`` and ``nnx.Optimizer`` select these by default."""


class BatchStat(Variable[A]):
    """A running statistic (BatchNorm's mean and variance)."""


class Cache(Variable[A]):
    """Decoding caches (attention keys and values)."""


class Intermediate(Variable[A]):
    """Values recorded during a call with ``Module.sow``."""


class Perturbation(Intermediate[A]):
    """Zeros added to an intermediate so its gradient can be read."""


class RngState(Variable[A]):
    """Base kind of the state of random streams."""


class RngKey(RngState[A]):
    """The key of a random stream."""


class RngCount(RngState[A]):
    """The number of keys a random stream has handed out."""


def is_variable(x) -> bool:
    """True for Variables of any kind."""
    return isinstance(x, Variable)
