"""Generic text helpers for reprs: the block layout, values, sizes, treescope glue.

The bottom of the display code: it knows arrays, refs, tracers and hijax cells
(through :mod:`nnx.core._hijax`'s functions), never an nnx type. Each nnx type
renders itself in its own module with these helpers (``Variable`` in
``_variables.py``, ``Pytree`` in ``_pytree.py``, ``State`` in ``_state.py``,
``GraphDef`` beside its tags in ``_graphdef.py``); ``display()`` is on top, in
``_display.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.core  # Tracer; jax does not list `core` among its attributes for type checkers
import numpy as np

from nnx.core._hijax import cell_content, is_cell, is_tracer

PRIVATE_META = ("_nnx_prev_mode",)  # metadata keys nnx keeps for itself, never shown


# -- the text layout (Flax NNX's: one attribute per line, nested blocks indented) ----
def block(
    head: str,
    items: list[tuple[str, str]],
    *,
    comment: str = "",
    open_: str = "(",
    close: str = ")",
    sep: str = "=",
) -> str:
    """``Head( # comment`` / one ``key=value`` per line, indented / ``)``.

    ``items`` are already rendered; their own line breaks are indented one level,
    so nested blocks line up. No items: ``Head()``.
    """
    if not items:
        return f"{head}{open_}{close}"
    body = ",\n".join(f"  {k}{sep}{v.replace(chr(10), chr(10) + '  ')}" for k, v in items)
    return f"{head}{open_}{comment}\n{body}\n{close}"


_CONTAINERS = (list, tuple, dict)


def inline(x: Any, leaf: Callable[[Any], str] = repr) -> str:
    """A value on one line as Flax NNX prints it: plain lists, tuples and dicts
    element by element (``leaf`` renders everything else), a class by its name."""
    t = type(x)
    if t is list:
        return "[" + ", ".join(inline(i, leaf) for i in x) + "]"
    if t is tuple:
        if len(x) == 1:
            return "(" + inline(x[0], leaf) + ",)"
        return "(" + ", ".join(inline(i, leaf) for i in x) + ")"
    if t is dict:
        return "{" + ", ".join(f"{k!r}: {inline(v, leaf)}" for k, v in x.items()) + "}"
    if isinstance(x, type):
        return x.__name__
    return leaf(x)


def value_text(x: Any) -> str:
    """A Variable's or a State's value: arrays in full (numpy elides large ones),
    tracers by their abstract value, a hijax cell by its content."""
    if is_tracer(x):
        return f"Traced<{x.aval.str_short()}>" if hasattr(x, "aval") else "Traced"
    if is_cell(x):
        return value_text(cell_content(x))
    if isinstance(x, jax.Ref):
        return f"Ref({value_text(x[...])})"
    if type(x) in _CONTAINERS or isinstance(x, type):
        return inline(x, value_text)
    return repr(x)


class ShapeDtype:
    """What a module's repr shows for an array of more than one element."""

    __slots__ = ("dtype", "shape")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype

    def __repr__(self) -> str:
        return f"Array(shape={self.shape!r}, dtype={self.dtype!r})"


def shape_summary(x: Any) -> Any:
    """``x`` for a module's repr: an array of more than one element becomes its
    shape and dtype (tracers stay, they print their abstract value)."""
    if is_tracer(x) or not isinstance(x, (jax.Array, np.ndarray)):
        return x  # anything else (a donated buffer, a cell) says what it is itself
    if int(np.prod(x.shape)) <= 1:
        return x
    return ShapeDtype(x.shape, x.dtype)


def bytes_str(b: float) -> str:
    """``1.5 KB``: a byte count for humans, in decimal units (Flax NNX's)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b > scale:
            return f"{b / scale:,.1f} {unit}"
    return f"{int(b):,} B"


def size_str(n: int, b: int) -> str:
    """``6 (24 B)``: an element count and its bytes."""
    return f"{n:,} ({bytes_str(b)})"


def count_arrays(values) -> tuple[int, int]:
    """``(elements, bytes)`` of the arrays in ``values`` (a list of pytrees)."""
    n = b = 0
    for x in jax.tree.leaves(values):
        shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
        if shape is None or dtype is None:
            continue  # a Python number is not an array (Flax NNX counts arrays only)
        size = int(np.prod(shape))
        n += size
        b += size * (getattr(dtype, "itemsize", 0) or 0)
    return n, b


# -- treescope (an optional dependency, imported only when treescope renders) -------
def treescope_object(obj, attrs: dict, path, subtree_renderer):
    """Render ``obj`` in treescope as a constructor call with ``attrs``."""
    from treescope import repr_lib

    return repr_lib.render_object_constructor(
        type(obj), attrs, path=path, subtree_renderer=subtree_renderer, roundtrippable=False
    )


def treescope_mapping(obj, items: dict, path, subtree_renderer):
    """Render the mapping ``obj`` in treescope as a dict wrapped in its type."""
    from treescope import repr_lib

    return repr_lib.render_dictionary_wrapper(
        object_type=type(obj),
        wrapped_dict=items,
        path=path,
        subtree_renderer=subtree_renderer,
        roundtrippable=False,
    )
