"""Text reprs of modules, Variables, States and GraphDefs, and ``nnx.display``.

The text form shows the tree with shapes, dtypes and kinds, never dumps a
large array, marks shared objects once, and survives cycles. Treescope
(optional dependency) is imported only by ``display`` in a notebook.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.core  # Tracer; jax does not list `core` among its attributes for type checkers
import jax.numpy as jnp
import numpy as np

_SMALL = 8  # vectors with at most this many elements are shown by value
_PRIVATE_META = ("_nnx_prev_mode",)


def _array_summary(x) -> str:
    if type(x).__name__ == "Cell":
        return _value_repr(x._val, "")
    if isinstance(x, jax.core.Tracer):
        return f"Traced<{x.aval.str_short()}>" if hasattr(x, "aval") else "Traced"
    if isinstance(x, jax.Ref):
        return f"Ref({_array_summary(x[...])})"
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        return repr(x)
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return f"{dtype}[{','.join(map(str, shape))}]"
    if int(np.prod(shape)) <= _SMALL and len(shape) <= 1:
        return repr(x) if not isinstance(x, np.ndarray) else f"np.{x!r}"
    name = np.dtype(dtype).name
    return f"{name}[{','.join(map(str, shape))}]"


def _value_repr(value: Any, indent: str) -> str:
    if type(value).__name__ == "Cell":  # before the container checks, which narrow `value`
        return _value_repr(value._val, indent)
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = ",\n".join(
            f"{indent}  {k!r}: {_value_repr(v, indent + '  ')}" for k, v in value.items()
        )
        return "{\n" + inner + f"\n{indent}}}"
    if isinstance(value, (list, tuple)) and not hasattr(value, "shape"):
        body = ", ".join(_value_repr(v, indent) for v in value)
        return (
            f"[{body}]" if isinstance(value, list) else f"({body}{',' if len(value) == 1 else ''})"
        )
    if hasattr(value, "shape") and hasattr(value, "dtype") or isinstance(value, jax.Ref):
        return _array_summary(value)
    return repr(value)


def variable_repr(v, indent: str = "") -> str:
    from nnx.core._hijax import Cell
    from nnx.core._variables import HIJAX, REF

    aux = v._aux
    raw = v._raw
    if aux.mode == HIJAX and type(raw) is Cell:
        value = raw._val
    elif aux.mode == HIJAX:
        value = raw  # a tracer
    else:
        value = raw
    parts = [f"value={_value_repr(value, indent + '  ')}"]
    if aux.mode == HIJAX:
        parts.append("hijax=True")
    elif aux.mode == REF:
        parts.append("ref=True")
    if not aux.mutable:
        parts.append("mutable=False")
    for k, m in aux.metadata.items():
        if k not in _PRIVATE_META:
            parts.append(f"{k}={m!r}")
    one = f"{type(v).__name__}(" + ", ".join(parts) + ")"
    if len(one) <= 100 and "\n" not in one:
        return one
    body = ",\n".join(f"{indent}  {p}" for p in parts)
    return f"{type(v).__name__}(\n{body}\n{indent})"


def _counts(obj) -> str:
    from nnx.core._graph import flatten
    from nnx.core._variables import Variable

    try:
        flat = flatten(obj)
    except Exception:
        return ""
    totals: dict[str, list[int]] = {}
    for leaf in flat.leaves:
        if not isinstance(leaf, Variable):
            continue
        try:
            value = leaf.get_value()
            leaves = jax.tree.leaves(value)
        except Exception:
            continue
        n = b = 0
        for x in leaves:
            size = int(np.prod(getattr(x, "shape", ())))
            n += size
            itemsize = getattr(getattr(x, "dtype", None), "itemsize", 0) or 0
            b += size * itemsize
        t = totals.setdefault(type(leaf).__name__, [0, 0])
        t[0] += n
        t[1] += b
    if not totals:
        return ""
    return " # " + ", ".join(f"{k}: {n:,} ({_bytes(b)})" for k, (n, b) in totals.items())


def _bytes(b: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.1f} {unit}" if unit != "B" else f"{b} B"
        b /= 1024
    return f"{b} B"


def node_repr(obj) -> str:
    return _node(obj, "", {}, top=True)


def _node(obj, indent: str, seen: dict, top: bool = False) -> str:
    from nnx.core._pytree import Pytree, get_layout
    from nnx.core._variables import Variable

    if isinstance(obj, Variable):
        if id(obj) in seen:
            return f"<shared {type(obj).__name__} at {seen[id(obj)]}>"
        seen[id(obj)] = "..."
        return variable_repr(obj, indent)
    if isinstance(obj, Pytree):
        if id(obj) in seen:
            return f"<shared {type(obj).__name__}>"
        seen[id(obj)] = type(obj).__name__
        head = f"{type(obj).__name__}(" + (_counts(obj) if top else "")
        layout = get_layout(obj)
        d = obj.__dict__
        lines = []
        for k in sorted(d):
            lines.append(f"{indent}  {k}={_node(d[k], indent + '  ', seen)}")
        del layout
        if not lines:
            return f"{type(obj).__name__}()"
        return head + "\n" + ",\n".join(lines) + f"\n{indent})"
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        if not obj:
            return "[]" if isinstance(obj, list) else "()"
        if not any(_is_rich(x) for x in obj):
            return repr(list(obj) if isinstance(obj, list) else tuple(obj))
        open_, close = ("[", "]") if isinstance(obj, list) else ("(", ")")
        items = ",\n".join(f"{indent}  {_node(x, indent + '  ', seen)}" for x in obj)
        return f"{open_}\n{items}\n{indent}{close}"
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        if not any(_is_rich(x) for x in obj.values()):
            return repr(dict(obj))
        items = ",\n".join(
            f"{indent}  {k!r}: {_node(v, indent + '  ', seen)}" for k, v in obj.items()
        )
        return "{\n" + items + f"\n{indent}}}"
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return _array_summary(obj)
    return repr(obj)


def _is_rich(x) -> bool:
    from nnx.core._pytree import Pytree
    from nnx.core._variables import Variable

    return isinstance(x, (Pytree, Variable, dict, list, tuple)) or hasattr(x, "shape")


def state_repr(state) -> str:
    return "State(" + _state_body(state, "") + ")"


def _state_body(node, indent: str) -> str:
    from nnx.core._state import _sort_key
    from nnx.core._variables import Variable

    if not node:
        return "{}"
    lines = []
    for k in sorted(node, key=_sort_key):
        v = dict.__getitem__(node, k)
        if isinstance(v, dict):
            lines.append(f"{indent}  {k!r}: {_state_body(v, indent + '  ')}")
        elif isinstance(v, Variable):
            lines.append(f"{indent}  {k!r}: {variable_repr(v, indent + '  ')}")
        else:
            lines.append(f"{indent}  {k!r}: {_value_repr(v, indent + '  ')}")
    return "{\n" + ",\n".join(lines) + f"\n{indent}}}"


def graphdef_repr(g) -> str:
    return f"GraphDef({_def(g.tree, '')}, num_leaves={g.num_leaves})"


def _def(d, indent: str) -> str:
    from nnx.core import _graph as G

    tag = d[0]
    if tag == G._VAR:
        return f"VariableDef({d[1].__name__})"
    if tag == G._REF:
        return f"NodeRef({d[1]})"
    if tag == G._NODE:
        items = [f"{indent}  {k}={_def(c, indent + '  ')}" for k, c in zip(d[2].keys, d[3])]
        items += [f"{indent}  {k}={s!r}" for k, s in d[2].static_items]
        if not items:
            return f"NodeDef({d[1].__name__})"
        return f"NodeDef({d[1].__name__},\n" + ",\n".join(items) + f"\n{indent})"
    if tag in (G._LIST, G._TUPLE):
        return "[" + ", ".join(_def(c, indent + "  ") for c in d[2]) + "]"
    if tag == G._DICT:
        return "{" + ", ".join(f"{k!r}: {_def(c, indent + '  ')}" for k, c in zip(d[2], d[3])) + "}"
    if tag == G._LEAF:
        return "Leaf"
    if tag == G._STATIC:
        return repr(d[1])
    return "PytreeDef"


# -- treescope ---------------------------------------------------------------------
def treescope_variable(v, path, subtree_renderer):
    from treescope import repr_lib

    attrs: dict[str, Any] = {
        "value": v.get_value() if not isinstance(v._raw, jax.core.Tracer) else v._raw
    }
    for k, m in v._aux.metadata.items():
        if k not in _PRIVATE_META:
            attrs[k] = m
    if v.hijax:
        attrs["hijax"] = True
    if v.ref:
        attrs["ref"] = True
    return repr_lib.render_object_constructor(
        type(v), attrs, path=path, subtree_renderer=subtree_renderer, roundtrippable=False
    )


def treescope_node(obj, path, subtree_renderer):
    from treescope import repr_lib

    return repr_lib.render_object_constructor(
        type(obj),
        dict(sorted(obj.__dict__.items())),
        path=path,
        subtree_renderer=subtree_renderer,
        roundtrippable=False,
    )


def treescope_state(state, path, subtree_renderer):
    from treescope import repr_lib

    return repr_lib.render_dictionary_wrapper(
        object_type=type(state),
        wrapped_dict=dict(state),
        path=path,
        subtree_renderer=subtree_renderer,
        roundtrippable=False,
    )


def treescope_graphdef(g, path, subtree_renderer):
    from treescope import repr_lib

    return repr_lib.render_object_constructor(
        type(g),
        {"num_leaves": g.num_leaves, "num_nodes": g.num_nodes},
        path=path,
        subtree_renderer=subtree_renderer,
        roundtrippable=False,
    )


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def display(*objs: Any) -> None:
    """Show objects: a treescope view in notebooks, the text repr elsewhere.

    Example::

        nnx.display(model)              # prints the module tree with shapes
        graphdef, state = nnx.split(model)
        nnx.display(graphdef, state)    # several objects, one after the other
    """
    if _in_notebook():
        try:
            import treescope

            for obj in objs:
                treescope.display(obj, ignore_exceptions=True)
            return
        except ImportError:
            pass
    for obj in objs:
        print(repr(obj))
