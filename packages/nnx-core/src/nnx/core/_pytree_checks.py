"""Checks and declarations over Pytree classes: ``has_data``, ``check_pytree``,
``nnx.dataclass``, and the ``nnx.data`` / ``nnx.static`` markers (field specifiers too)."""

from __future__ import annotations

import dataclasses
from typing import Any

from nnx.core._errors import PytreeStaticError
from nnx.core._pytree import (
    Pytree,
    _contains_data,
    _get_forced,
    _short,
    compute_layout,
)
from nnx.core._pytree_marks import (
    _MISSING,
    _class_annotations,
    _Marker,
    holds_marker,
    marker_inside_error,
)


def _field(is_static: bool, kwargs: dict) -> Any:
    meta = dict(kwargs.pop("metadata", None) or {})
    if "static" in meta:
        raise ValueError(
            f"nnx.{'static' if is_static else 'data'}(metadata=...): the 'static' key is "
            "set by the specifier itself; leave it out of metadata."
        )
    meta["static"] = is_static
    return dataclasses.field(metadata=meta, **kwargs)


def _mark(value: Any, kwargs: dict, *, is_static: bool) -> Any:
    # nnx.data / nnx.static: a marked value, or (no value) a dataclass field specifier
    if value is _MISSING:
        return _field(is_static, kwargs)
    if kwargs:
        name = "static" if is_static else "data"
        raise TypeError(
            f"nnx.{name}() takes either a value or dataclasses.field keywords, not both."
        )
    return _Marker(value, not is_static)


def data(value: Any = _MISSING, /, **kwargs: Any) -> Any:
    """Mark an attribute value as data (a pytree child) whatever its type.

    >>> import dataclasses, jax, jax.numpy as jnp, nnx
    >>> class Model(nnx.Pytree):
    ...     def __init__(self):
    ...         self.scale = nnx.data(2.0)   # traced by jax.jit, not baked in
    >>> jax.tree.leaves(Model())
    [2.0]
    >>> @dataclasses.dataclass
    ... class Conf(nnx.Pytree):
    ...     n: int = nnx.data(default=3)     # a dataclass field specifier
    ...     name: str = "c"
    >>> jax.tree.leaves(Conf())
    [3]

    Called with no value and the keywords of :func:`dataclasses.field`
    (``default``, ``default_factory``, ``init``, ``kw_only``, ...), it is a
    dataclass field specifier, as in Flax NNX.

    Args:
        value: the attribute's value.
        **kwargs: :func:`dataclasses.field` arguments, when ``value`` is not given.
    """
    return _mark(value, kwargs, is_static=False)


def static(value: Any = _MISSING, /, **kwargs: Any) -> Any:
    """Mark an attribute value as static (part of the tree structure).

    >>> import dataclasses, jax, jax.numpy as jnp, nnx
    >>> class Model(nnx.Pytree):
    ...     def __init__(self):
    ...         self.sizes = nnx.static((2, 3))
    ...         self.w = jnp.ones(2)
    >>> len(jax.tree.leaves(Model()))
    1
    >>> @dataclasses.dataclass
    ... class Conf(nnx.Pytree):
    ...     w: jax.Array
    ...     tag: str = nnx.static(default="t", kw_only=True)   # a field specifier
    >>> Conf(jnp.ones(1)).tag, len(jax.tree.leaves(Conf(jnp.ones(1))))
    ('t', 1)

    Called with no value and the keywords of :func:`dataclasses.field`, it is a
    dataclass field specifier, as in Flax NNX.

    Args:
        value: the attribute's value.
        **kwargs: :func:`dataclasses.field` arguments, when ``value`` is not given.
    """
    return _mark(value, kwargs, is_static=True)


def has_data(value: Any) -> bool:
    """Whether ``value`` is or holds data: an array, a Variable, a Pytree or a registered
    data type, directly or inside lists, dicts, tuples and registered JAX pytrees.

    >>> import jax.numpy as jnp, nnx
    >>> nnx.has_data([1, "relu", jnp.ones(2)]), nnx.has_data((1, 2.0, "x")), nnx.has_data([])
    (True, False, False)
    """
    return _contains_data(value)


def check_pytree(pytree: Any) -> None:
    """Check that no static attribute of ``pytree`` holds arrays or Variables.

    Assignments are checked as they happen; this also finds a static value that
    was changed in place afterwards (``self.cfg.append(jnp.ones(2))`` on a static
    list) and ``nnx.data(...)``/``nnx.static(...)`` markers stored inside
    containers instead of being assigned directly. Raises :class:`PytreeStaticError`
    (a ``ValueError``) naming the attribute, or ``TypeError`` for a non-Pytree.
    """
    if not isinstance(pytree, Pytree):
        raise TypeError(f"nnx.check_pytree expects a Pytree, got {type(pytree).__name__}")
    layout = compute_layout(pytree)
    static_names = {k for k, _ in layout.static_items}
    cls = type(pytree).__name__
    for name, value in pytree.__dict__.items():
        if name in static_names and _contains_data(value):
            how = (
                "declared static (nnx.static or nnx.Static[...])"
                if (_get_forced(pytree) or {}).get(name) is False
                or type(pytree)._nnx_annotated.get(name) is False
                else "static"
            )
            raise PytreeStaticError(
                f"Found arrays in attribute {cls}.{name}, which is {how}: {_short(value)}. "
                "Static attributes are baked into the compiled program; hold arrays in a "
                f"data attribute (`self.{name} = nnx.data(...)`) or in an nnx.Variable."
            )
        if holds_marker(value):
            raise marker_inside_error(pytree, name)


def dataclass(cls: Any = None, /, **kwargs: Any) -> Any:
    """Make a Pytree subclass a dataclass; each field is data or static as an attribute is.

    A field's status follows the rules of every Pytree attribute (arrays,
    Variables and Pytrees are data, an ``int`` or ``str`` is static), unless the
    field says: ``nnx.data()`` / ``nnx.static()`` as field specifiers (with the
    arguments of ``dataclasses.field``), ``dataclasses.field(metadata={'static':
    True})``, or an ``nnx.Data[...]`` / ``nnx.Static[...]`` annotation.

    >>> import jax, jax.numpy as jnp, nnx
    >>> @nnx.dataclass
    ... class Foo(nnx.Pytree):
    ...     i: int = nnx.data()
    ...     x: jax.Array
    ...     a: int
    ...     s: str = nnx.static(default="hi", kw_only=True)
    >>> jax.tree.leaves(Foo(1, jnp.ones(2), 3))
    [1, Array([1., 1.], dtype=float32)]

    Keyword arguments are those of :func:`dataclasses.dataclass` (``init``, ``eq``,
    ``order``, ``unsafe_hash``, ``match_args``, ``kw_only``); ``repr`` stays the
    Pytree's, and ``frozen``/``slots`` are not accepted (a Pytree records its
    attribute writes).
    """
    for bad in ("repr", "frozen", "slots"):
        if kwargs.get(bad):
            raise TypeError(
                f"nnx.dataclass does not accept {bad}=True: a Pytree keeps its own repr and "
                "records its attribute writes"
            )
        kwargs.pop(bad, None)

    def wrap(c):
        if not (isinstance(c, type) and issubclass(c, Pytree)):
            raise ValueError(
                f"nnx.dataclass can only be used with a subclass of nnx.Pytree (nnx.Module, "
                f"nnx.Object), got {c!r}"
            )
        c._nnx_annotated = _class_annotations(c)
        return dataclasses.dataclass(c, repr=False, **kwargs)

    return wrap if cls is None else wrap(cls)
