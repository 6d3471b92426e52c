"""``nnx.tabulate``: a summary table of a model, computed abstractly.

The model's methods are traced once under :func:`nnx.eval_shape` (no array is
computed, nothing is written to the model); every call of a module method made
during that trace becomes a row with the module's path, type, input and output
shapes, and the count and bytes of its Variables, per kind. The table is drawn
with ``rich`` when it is installed (``pip install nnx-transforms[summary]``) and
as plain text otherwise. See docs/decisions/0008-tabulate-in-transforms.md for
why this lives in nnx-transforms.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import math
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core import (
    Pytree,
    RngState,
    RngStream,
    Variable,
    clone,
    is_graph_node,
    iter_graph,
    merge,
    split,
    vars_as,
)
from nnx.transforms._jit import jit
from nnx.transforms._lifted import eval_shape

__all__ = ["tabulate", "CallInfo", "filter_rng_streams"]

_ID_ATTR = "_nnx_tabulate_id"
_LOCK = threading.Lock()  # methods are patched on the classes while a table is built


@dataclasses.dataclass
class CallInfo:
    """One row of :func:`tabulate`: a call of a module method during the trace.

    ``input_args``, ``input_kwargs`` and ``outputs`` hold shape descriptions
    (arrays as ``float32[1,32]``, nnx objects as ``Linear(...)``), ``path`` is
    the module's path in the model (with the method name appended when it is
    not ``__call__``), ``flops``/``vjp_flops`` are filled when asked for.
    """

    object_id: int
    type: type
    path: tuple
    input_args: tuple
    input_kwargs: dict
    outputs: Any
    flops: int | None = None
    vjp_flops: int | None = None


def filter_rng_streams(row: CallInfo) -> bool:
    """The default ``row_filter`` of :func:`tabulate`: hide ``RngStream`` calls."""
    return not issubclass(row.type, RngStream)


# -- shape descriptions ------------------------------------------------------------------
class _ArrayRepr:
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


class _ObjectRepr:
    __slots__ = ("type",)

    def __init__(self, obj):
        self.type = type(obj)

    def __repr__(self) -> str:
        return f"{self.type.__name__}(...)"


def _describe(x):
    if is_graph_node(x):
        return _ObjectRepr(x)
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return _ArrayRepr(x.shape, x.dtype)
    if type(x) in (list, tuple):
        return type(x)(_describe(y) for y in x)
    if type(x) is dict:
        return {k: _describe(v) for k, v in x.items()}
    fields = getattr(x, "_fields", None)
    if isinstance(x, tuple) and fields is not None:  # namedtuple
        return {k: _describe(v) for k, v in zip(fields, x)}
    return x


def _abstract(x):
    """``x`` with arrays as ``ShapeDtypeStruct`` (for lowering a row again), or None."""
    leaves = jax.tree.leaves(x, is_leaf=is_graph_node)
    if any(is_graph_node(y) for y in leaves):
        return None
    return jax.tree.map(
        lambda y: jax.ShapeDtypeStruct(y.shape, y.dtype) if hasattr(y, "shape") else y, x
    )


def _render(value, indent: str = "") -> str:
    """A short YAML-like text for a description (what Flax's table shows)."""
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        lines = []
        for v in value:
            sub = _render(v, indent + "  ")
            first, *rest = sub.split("\n") if sub else [""]
            lines.append(f"{indent}- {first.strip()}")
            lines.extend(rest)
        return "\n".join(lines)
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (list, tuple, dict)) and v:
                lines.append(f"{indent}{k}:")
                lines.append(_render(v, indent + "  "))
            else:
                lines.append(f"{indent}{k}: {_render(v)}")
        return "\n".join(lines)
    if value is None:
        return "None"
    return repr(value) if not isinstance(value, str) else value


def _render_inputs(args: tuple, kwargs: dict) -> str:
    parts = []
    if args:
        parts.append(_render(args[0] if len(args) == 1 and not kwargs else args))
    if kwargs:
        parts.append(_render(kwargs))
    return "\n".join(p for p in parts if p)


# -- sizes ---------------------------------------------------------------------------------
def _key_bytes(dtype) -> int:
    return int(getattr(dtype, "itemsize", 8))


def _sizes(value) -> tuple[int, int]:
    size = nbytes = 0
    for x in jax.tree.leaves(value):
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            continue
        n = math.prod(x.shape)
        size += n
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            nbytes += n * _key_bytes(x.dtype)  # the key data (two uint32 for threefry)
        else:
            nbytes += n * np.dtype(x.dtype).itemsize
    return size, nbytes


def _bytes_repr(n: int) -> str:
    if n > 1e9:
        return f"{n / 1e9:,.1f} GB"
    if n > 1e6:
        return f"{n / 1e6:,.1f} MB"
    if n > 1e3:
        return f"{n / 1e3:,.1f} KB"
    return f"{n:,} B"


def _size_repr(size: int, nbytes: int) -> str:
    return f"{size:,} ({_bytes_repr(nbytes)})"


def _kind(v: Variable) -> type:
    return RngState if isinstance(v, RngState) else type(v)


class _NodeInfo:
    __slots__ = ("path", "node", "stats", "direct")

    def __init__(self, path, node):
        self.path = path
        self.node = node
        self.stats: dict[type, list[int]] = {}  # kind -> [count, bytes], this subtree
        self.direct: dict[type, list[tuple[str, Variable]]] = {}  # own Variables


def _collect(root) -> tuple[dict[tuple, _NodeInfo], list[type]]:
    """Per module path: its own Variables and the totals of its subtree.

    Each Variable counts once, where it is first reached (a shared one is not
    counted twice).
    """
    entries = list(iter_graph(root))
    infos: dict[tuple, _NodeInfo] = {
        p: _NodeInfo(p, x) for p, x in entries if isinstance(x, Pytree)
    }
    if () not in infos:
        infos[()] = _NodeInfo((), root)
    kinds: set[type] = set()
    for path, x in entries:
        if not isinstance(x, Variable):
            continue
        kind = _kind(x)
        kinds.add(kind)
        size, nbytes = _sizes(x.get_value())
        owner = next(path[:i] for i in range(len(path) - 1, -1, -1) if path[:i] in infos)
        name = "/".join(map(str, path[len(owner) :]))
        infos[owner].direct.setdefault(kind, []).append((name, x))
        for i in range(len(owner), -1, -1):
            info = infos.get(path[:i])
            if info is not None:
                total = info.stats.setdefault(kind, [0, 0])
                total[0] += size
                total[1] += nbytes
    return infos, sorted(kinds, key=lambda t: t.__name__)


# -- recording the calls ---------------------------------------------------------------------
def _methods(types) -> dict[tuple[type, str], Callable]:
    """``(defining class, name) -> function`` of the methods to record."""
    out: dict[tuple[type, str], Callable] = {}
    for t in types:
        names = {"__call__"}
        for klass in t.__mro__:
            if klass.__module__.startswith("nnx.core") or klass is object:
                continue
            names.update(
                n for n, f in vars(klass).items() if inspect.isfunction(f) and not n.startswith("_")
            )
        for name in names:
            for klass in t.__mro__:
                f = vars(klass).get(name)
                if f is not None:
                    if inspect.isfunction(f):
                        out[(klass, name)] = f
                    break
    return out


class _Recorder:
    def __init__(self, infos_by_id: dict[int, _NodeInfo]):
        self.infos_by_id = infos_by_id
        self.rows: list[CallInfo] = []
        self.abstract: list[tuple[str, Any, Any]] = []
        self.seen: set = set()

    def wrap(self, name: str, f: Callable) -> Callable:
        recorder = self

        @functools.wraps(f)
        def recorded(obj, *args, **kwargs):
            tid = getattr(obj, _ID_ATTR, None)
            if tid is None or tid not in recorder.infos_by_id:  # not of the model tabulated
                return f(obj, *args, **kwargs)
            info = recorder.infos_by_id[tid]
            ins: Any = _describe(args)
            kws: Any = _describe(kwargs)
            key = (tid, name, repr(ins), repr(kws))
            if key in recorder.seen:
                return f(obj, *args, **kwargs)
            recorder.seen.add(key)
            path = info.path if name == "__call__" else (*info.path, name)
            row = CallInfo(tid, type(obj), path, tuple(ins), dict(kws), None)
            recorder.rows.append(row)  # before the call: a parent row comes first
            recorder.abstract.append((name, _abstract(args), _abstract(kwargs)))
            out = f(obj, *args, **kwargs)
            row.outputs = _describe(out)
            return out

        return recorded


def _cost(lowered) -> int:
    cost = lowered.cost_analysis()
    if not cost:
        cost = lowered.compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return 0 if not cost or "flops" not in cost else int(cost["flops"])


def _flops(module, name: str, args, kwargs) -> int:
    method = getattr(type(module), name)
    plain = vars_as(module, ref=False, hijax=False)
    jitted: Any = jit(lambda m, *a, **k: method(m, *a, **k))
    return _cost(jitted.lower(plain, *args, **kwargs))


def _vjp_flops(module, name: str, args, kwargs) -> int:
    method = getattr(type(module), name)
    graphdef, st = split(vars_as(module, ref=False, hijax=False))

    def forward(st, *a):
        return method(merge(graphdef, st), *a, **kwargs)

    def backward(st, *a):
        out, pullback = jax.vjp(forward, st, *a)
        return pullback(out)

    return _cost(jax.jit(backward).lower(st, *args))


# -- the table -------------------------------------------------------------------------------
def _kind_cell(info: _NodeInfo, kind: type) -> tuple[str, str]:
    """(own Variables listed, subtree total) for one kind column."""
    lines = []
    for name, v in info.direct.get(kind, ()):
        value = v.get_value()
        text = f"{name}: {_describe(value)!r}" if hasattr(value, "shape") else name
        meta = {k: m for k, m in v.metadata.items() if not (kind is RngState and k == "tag")}
        lines.append(text)
        lines.extend(f"  {k}: {m!r}" for k, m in meta.items())
    total = info.stats.get(kind)
    return "\n".join(lines), (_size_repr(*total) if total and total[0] else "")


def _table_cells(rows, infos_by_id, kinds, compute_flops, compute_vjp_flops):
    header = ["path", "type", "inputs", "outputs"]
    if compute_flops:
        header.append("flops")
    if compute_vjp_flops:
        header.append("vjp_flops")
    header += [k.__name__ for k in kinds]
    body = []
    for row in rows:
        info = infos_by_id[row.object_id]
        cells: list[tuple[str, str]] = [
            ("/".join(map(str, row.path)), ""),
            (row.type.__name__, ""),
            (_render_inputs(row.input_args, row.input_kwargs), ""),
            (_render(row.outputs), ""),
        ]
        if compute_flops:
            cells.append((str(row.flops), ""))
        if compute_vjp_flops:
            cells.append((str(row.vjp_flops), ""))
        cells += [_kind_cell(info, k) for k in kinds]
        body.append(cells)
    return header, body


def _render_rich(title, header, body, footer, caption, table_kwargs, column_kwargs, console_kwargs):
    import rich.console
    import rich.table
    import rich.text

    table = rich.table.Table(
        show_header=True, show_lines=True, show_footer=True, title=title, **table_kwargs
    )
    for name, foot in zip(header, footer):
        # Flax NNX's footer: "Total" right-aligned under the label columns, the totals of
        # the Variable kinds left-aligned under their listings
        justify = "right" if foot in ("", "Total") else "left"
        table.add_column(name, footer=rich.text.Text(foot, justify=justify), **column_kwargs)
    for cells in body:
        texts = []
        for listing, total in cells:
            t = rich.text.Text(listing)
            if total:
                if listing:
                    t.append("\n\n")
                t.append(total, style="bold")
            texts.append(t)
        table.add_row(*texts)
    table.caption = "\n" + caption
    table.caption_style = "bold"
    out = io.StringIO()
    options = {"force_terminal": True, "force_jupyter": _in_ipython(), **console_kwargs}
    rich.console.Console(file=out, **options).print(table)
    return out.getvalue()


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    return get_ipython() is not None


def _render_text(title, header, body, footer, caption) -> str:
    rows = [[c.split("\n") for c in header]]
    for cells in body:
        rows.append([(f"{a}\n\n{b}" if a and b else a or b).split("\n") for a, b in cells])
    rows.append([[f] for f in footer])
    widths = [max(len(line) for r in rows for line in r[i]) for i in range(len(header))]

    def rule(left, mid, right, fill="─"):
        return left + mid.join(fill * (w + 2) for w in widths) + right

    def lines(row, footer=False):
        height = max(len(c) for c in row)
        out = []
        for k in range(height):
            parts = []
            for c, w in zip(row, widths):
                text = c[k] if k < len(c) else ""
                # the footer as the rich table lays it out: "Total" right-aligned, each
                # kind's total left-aligned under its listing
                right = footer and text in ("", "Total")
                parts.append(f" {text.rjust(w) if right else text.ljust(w)} ")
            out.append("│" + "│".join(parts) + "│")
        return out

    width = sum(widths) + 3 * len(widths) + 1
    out = [title.center(width), rule("┌", "┬", "┐"), *lines(rows[0]), rule("╞", "╪", "╡", "═")]
    for i, row in enumerate(rows[1:-1]):
        if i:
            out.append(rule("├", "┼", "┤"))
        out.extend(lines(row))
    out.append(rule("╞", "╪", "╡", "═"))
    out.extend(lines(rows[-1], footer=True))
    out.append(rule("└", "┴", "┘"))
    out += ["", caption.center(width)]
    return "\n".join(out) + "\n"


def tabulate(
    obj,
    *input_args,
    depth: int | None = None,
    method: str = "__call__",
    row_filter: Callable[[CallInfo], bool] = filter_rng_streams,
    table_kwargs: Mapping[str, Any] = MappingProxyType({}),
    column_kwargs: Mapping[str, Any] = MappingProxyType({}),
    console_kwargs: Mapping[str, Any] = MappingProxyType({}),
    compute_flops: bool = False,
    compute_vjp_flops: bool = False,
    **input_kwargs,
) -> str:
    """A summary table of ``obj``: one row per module method call, with shapes and sizes.

    Example:

    >>> import jax.numpy as jnp, nnx
    >>> class Dense(nnx.Module):
    ...     def __init__(self):
    ...         self.kernel = nnx.Param(jnp.ones((2, 3)))
    ...     def __call__(self, x):
    ...         return x @ self.kernel
    >>> table = nnx.tabulate(Dense(), jnp.ones((1, 2)))
    >>> "Total Parameters: 6 (24 B)" in table
    True

    The columns are the module's path in the model, its type, the inputs and
    outputs of the call (shapes and dtypes), then one column per Variable kind
    (``Param``, ``BatchStat``, ``RngState`` for every RNG kind, ...): the
    module's own Variables with their shapes, and the count and bytes of all
    Variables below it. Each Variable counts once, where it is first reached,
    even when shared. The footer gives the totals per kind and the caption the
    total over all kinds.

    ``obj.<method>(*input_args, **input_kwargs)`` is traced once with
    :func:`nnx.eval_shape` on a copy of ``obj``: no array is computed and
    ``obj`` is left exactly as it was. Inputs may be arrays or
    ``jax.ShapeDtypeStruct``\\ s. Calls of the same method of the same module
    with the same input shapes give one row.

    Args:
      obj: a module (or any Pytree) to summarize.
      *input_args: the arguments of the call.
      **input_kwargs: as ``input_args``.
      depth: show only rows whose path has at most this many parts.
      method: the method of ``obj`` to call (default ``"__call__"``).
      row_filter: keeps the rows (:class:`CallInfo`) it returns True for;
        the default hides ``RngStream`` calls.
      table_kwargs: passed to
        ``rich.table.Table``, ``Table.add_column`` and ``rich.console.Console``
        (``force_terminal=True`` by default); unused without rich.
      column_kwargs: as ``table_kwargs``.
      console_kwargs: as ``table_kwargs``.
      compute_flops: add a ``flops`` column: XLA's cost estimate of each
        call, from lowering it (compiles, computes nothing).
      compute_vjp_flops: add a ``vjp_flops`` column: the same for the
        backward pass (through ``jax.vjp`` over the module's state and inputs).
        Rows whose inputs hold nnx objects get ``None`` in both.

    Returns:
      The table as a string (rendered by rich when installed, else plain text).
    """
    model = clone(obj)  # the table is built on a copy: obj is never touched
    infos, kinds = _collect(model)
    infos_by_id = {}
    for info in infos.values():
        if isinstance(info.node, Pytree):
            setattr(info.node, _ID_ATTR, id(info.node))  # static: copies inside keep it
            infos_by_id[id(info.node)] = info
    methods = _methods({type(i.node) for i in infos.values() if isinstance(i.node, Pytree)})
    recorder = _Recorder(infos_by_id)
    if not hasattr(model, method):
        raise AttributeError(
            f"nnx.tabulate: {type(obj).__name__} has no method {method!r} to call "
            "(pass the name of one of its methods as `method=`)."
        )
    with _LOCK:
        try:
            for (klass, name), f in methods.items():
                setattr(klass, name, recorder.wrap(name, f))
            eval_shape(lambda m, a, k: getattr(m, method)(*a, **k), model, input_args, input_kwargs)
        finally:
            for (klass, name), f in methods.items():
                setattr(klass, name, f)

    rows = recorder.rows
    for row, (name, args, kwargs) in zip(rows, recorder.abstract):
        module = infos_by_id[row.object_id].node
        if args is None or kwargs is None:
            continue
        if compute_flops:
            row.flops = _flops(module, name, args, kwargs)
        if compute_vjp_flops:
            row.vjp_flops = _vjp_flops(module, name, args, kwargs)
    rows = [r for r in rows if (depth is None or len(r.path) <= depth) and row_filter(r)]

    header, body = _table_cells(rows, infos_by_id, kinds, compute_flops, compute_vjp_flops)
    root = infos[()]
    n_before = len(header) - len(kinds)
    footer = [""] * (n_before - 1) + ["Total"]
    footer += [_size_repr(*root.stats[k]) for k in kinds]
    total = [sum(v[0] for v in root.stats.values()), sum(v[1] for v in root.stats.values())]
    caption = f"Total Parameters: {_size_repr(*total)}"
    title = f"{type(obj).__name__} Summary"
    try:
        import rich  # noqa: F401
    except ImportError:
        return _render_text(title, header, body, footer, caption)
    return _render_rich(
        title,
        header,
        body,
        footer,
        caption,
        dict(table_kwargs),
        dict(column_kwargs),
        dict(console_kwargs),
    )
