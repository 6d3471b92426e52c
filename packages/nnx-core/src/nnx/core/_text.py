"""Generic text helpers for reprs: array summaries, nested values, treescope glue.

The bottom of the display code: it knows arrays, refs, tracers and hijax cells
(through :mod:`nnx.core._hijax`'s functions), never an nnx type. Each nnx type
renders itself in its own module with these helpers (``Variable`` in
``_variables.py``, ``Pytree`` in ``_pytree.py``, ``State`` in ``_state.py``,
``GraphDef`` beside its tags in ``_graphdef.py``); ``display()`` is on top, in
``_display.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.core  # Tracer; jax does not list `core` among its attributes for type checkers
import jax.numpy as jnp
import numpy as np

from nnx.core._hijax import cell_content, is_cell, is_tracer

SMALL = 8  # vectors with at most this many elements are shown by value
PRIVATE_META = ("_nnx_prev_mode",)  # metadata keys nnx keeps for itself, never shown


def array_summary(x) -> str:
    """``float32[64,64]`` for a large array, the array itself for a small vector."""
    if is_tracer(x):
        return f"Traced<{x.aval.str_short()}>" if hasattr(x, "aval") else "Traced"
    if is_cell(x):
        return value_repr(cell_content(x), "")
    if isinstance(x, jax.Ref):
        return f"Ref({array_summary(x[...])})"
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        return repr(x)
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return f"{dtype}[{','.join(map(str, shape))}]"
    if int(np.prod(shape)) <= SMALL and len(shape) <= 1:
        return repr(x) if not isinstance(x, np.ndarray) else f"np.{x!r}"
    name = np.dtype(dtype).name
    return f"{name}[{','.join(map(str, shape))}]"


def value_repr(value: Any, indent: str) -> str:
    """A value held by a Variable or a State: nested dicts/lists, arrays summarised."""
    if is_cell(value) and not is_tracer(value):  # before the container checks
        return value_repr(cell_content(value), indent)
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = ",\n".join(
            f"{indent}  {k!r}: {value_repr(v, indent + '  ')}" for k, v in value.items()
        )
        return "{\n" + inner + f"\n{indent}}}"
    if isinstance(value, (list, tuple)) and not hasattr(value, "shape"):
        body = ", ".join(value_repr(v, indent) for v in value)
        return (
            f"[{body}]" if isinstance(value, list) else f"({body}{',' if len(value) == 1 else ''})"
        )
    if hasattr(value, "shape") and hasattr(value, "dtype") or isinstance(value, jax.Ref):
        return array_summary(value)
    return repr(value)


def bytes_str(b: float) -> str:
    """``1.5 KB``: a byte count for humans."""
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{b} B"
        b /= 1024
    return f"{b} B"


def count_arrays(values) -> tuple[int, int]:
    """``(elements, bytes)`` of the arrays in ``values`` (a list of pytrees)."""
    n = b = 0
    for x in jax.tree.leaves(values):
        size = int(np.prod(getattr(x, "shape", ())))
        n += size
        itemsize = getattr(getattr(x, "dtype", None), "itemsize", 0) or 0
        b += size * itemsize
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
