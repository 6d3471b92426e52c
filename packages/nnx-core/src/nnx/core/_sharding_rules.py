"""Sharding names and rules, and eager sharding of a Variable as it is created.

Variables carry the mesh axis name (or a logical axis name, mapped by
:func:`logical_axis_rules`) of each dimension as ``sharding_names`` metadata.
Under ``jax.set_mesh(mesh)`` (and while :func:`using_eager_sharding` is true,
the default) a Variable with ``sharding_names`` is sharded when it is created
(:func:`shard_new_value`, called by ``Variable.__init__``). This module knows
no nnx type; the trees of specs and shardings are in :mod:`nnx.core._sharding`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec

from nnx.core._hijax import _eager, is_tracer

# -- logical axis rules ------------------------------------------------------------------


class _Context(threading.local):
    def __init__(self):
        self.rules: tuple = ()
        self.eager: list[bool] = []


_ctx = _Context()


class logical_axis_rules:  # noqa: N801  (Flax spells it as a function-like context manager)
    """Map logical axis names to mesh axis names inside a ``with`` block.

    Example::

        rules = (("batch", "data"), ("hidden", "model"), ("embed", None))
        with nnx.logical_axis_rules(rules):
            p = nnx.Param(jnp.ones((4, 8)), sharding_names=("embed", "hidden"))
            nnx.get_partition_spec(p)[...]    # PartitionSpec(None, 'model')

    ``rules`` is a sequence of ``(logical_name, mesh_axes)`` pairs in order of
    precedence (``mesh_axes``: a mesh axis name, a tuple of them, or ``None``).
    A logical name takes the first rule whose mesh axes no other dimension of
    the same array already uses; names without a rule are not sharded. A
    Variable's own ``sharding_rules`` metadata adds rules for that Variable.
    The rules apply wherever nnx reads ``sharding_names``: eager sharding at
    creation, :func:`get_partition_spec`, :func:`get_named_sharding`.
    """

    def __init__(self, rules: Iterable[tuple[str, Any]]):
        self.rules = _check_rules(rules)
        self._before: list[tuple] = []

    def __enter__(self) -> logical_axis_rules:
        self._before.append(_ctx.rules)
        _ctx.rules = self.rules
        return self

    def __exit__(self, *exc) -> None:
        _ctx.rules = self._before.pop()


def _check_rules(rules) -> tuple:
    out = []
    for rule in rules:
        if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
            raise ValueError(
                f"nnx.logical_axis_rules: each rule is a (logical_name, mesh_axes) pair, got "
                f"{rule!r}. Example: (('batch', 'data'), ('hidden', 'model'))."
            )
        out.append((rule[0], rule[1]))
    return tuple(out)


def _merge_rules(context: tuple, local) -> tuple:
    if not local:
        return context
    local = _check_rules(local)
    if not context:
        return local
    merged = dict(context)
    for name, axes in local:
        if name in merged and merged[name] != axes:
            raise ValueError(
                f"Logical axis {name!r} is mapped to {merged[name]!r} by nnx.logical_axis_rules "
                f"but to {axes!r} by the Variable's sharding_rules. Use one mapping."
            )
        merged[name] = axes
    return tuple(merged.items())


def _axes_of(axes) -> set:
    if axes is None:
        return set()
    return set(axes) if isinstance(axes, (tuple, list)) else {axes}


def _logical_to_mesh(names: tuple, rules: tuple) -> tuple:
    """Mesh axes for each dimension name, by ``rules`` (see :class:`logical_axis_rules`)."""
    strs = [n for n in names if isinstance(n, str)]
    dups = {n for n in strs if strs.count(n) > 1}
    if dups:
        raise ValueError(
            f"sharding_names {names!r} name the logical axes {sorted(dups)} more than once; "
            "each dimension of an array needs its own name."
        )
    unassigned = object()
    out: list = [unassigned if isinstance(n, str) else n for n in names]
    for logical, axes in rules:
        if logical not in names:
            continue
        pos = names.index(logical)
        used = set().union(*(_axes_of(a) for a in out if a is not unassigned))
        if out[pos] is unassigned and not (_axes_of(axes) & used):
            out[pos] = axes
    return tuple(None if a is unassigned else a for a in out)


def _resolve_names(names, local_rules=None) -> tuple:
    names = tuple(names)
    rules = _merge_rules(_ctx.rules, local_rules)
    return _logical_to_mesh(names, rules) if rules else names


def _spec_of(names, local_rules=None) -> PartitionSpec:
    return PartitionSpec(*_resolve_names(names, local_rules))


# -- eager sharding ----------------------------------------------------------------------


def using_eager_sharding() -> bool:
    """Whether Variables with ``sharding_names`` are sharded when they are created.

    True unless turned off with :func:`use_eager_sharding`. It acts only where
    a mesh is set (``jax.set_mesh(mesh)``) or the Variable has ``mesh``
    metadata (``nnx.with_partitioning(init, names, mesh=mesh)``); elsewhere
    the names are recorded and the array stays where it is.
    """
    return _ctx.eager[-1] if _ctx.eager else True


class use_eager_sharding:  # noqa: N801  (a call that also works as a context manager)
    """Turn eager sharding on or off: now, or for a ``with`` block or a function.

    Example::

        mesh = jax.make_mesh((1,), ("model",), devices=jax.devices()[:1])
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))

        print(nnx.using_eager_sharding())                   # True
        with jax.set_mesh(mesh):
            layer = nnx.Linear(2, 4, kernel_init=init, rngs=nnx.Rngs(0))
            with nnx.use_eager_sharding(False):             # for this block only
                lazy = nnx.Linear(2, 4, kernel_init=init, rngs=nnx.Rngs(0))
                print(nnx.using_eager_sharding())           # False
        print(nnx.using_eager_sharding())                   # True
        print(layer.kernel[...].sharding.spec)              # P(None, 'model')
        print(lazy.kernel[...].sharding.spec)               # P(None, None)
        print(lazy.kernel.sharding_names)                   # (None, 'model')

        nnx.use_eager_sharding(False)                       # from now on
        print(nnx.using_eager_sharding())                   # False
        nnx.use_eager_sharding(True)                        # back to the default

    Used as a decorator (``@nnx.use_eager_sharding(False)``), the setting holds
    while the function runs. One Variable decides for itself with
    ``nnx.Param(x, sharding_names=..., eager_sharding=False)``.
    """

    def __init__(self, value: bool, /):
        self.value = bool(value)
        self._had = bool(_ctx.eager)
        self._prev = _ctx.eager[-1] if _ctx.eager else None
        if _ctx.eager:
            _ctx.eager[-1] = self.value
        else:
            _ctx.eager.append(self.value)

    def _undo(self) -> None:
        if self._had:
            _ctx.eager[-1] = self._prev  # type: ignore[assignment]
        elif _ctx.eager:
            _ctx.eager.pop()

    def __enter__(self) -> use_eager_sharding:
        return self

    def __exit__(self, *exc) -> None:
        self._undo()

    def __call__(self, f: Callable) -> Callable:
        self._undo()
        value = self.value

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            _ctx.eager.append(value)
            try:
                return f(*args, **kwargs)
            finally:
                _ctx.eager.pop()

        return wrapper

    def __repr__(self) -> str:
        return f"<nnx.use_eager_sharding({self.value})>"  # not an expression: a setting made


def _is_traced(x) -> bool:
    return is_tracer(x)


def _shard_one(x, spec: PartitionSpec, mesh):
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        return x
    if len(spec) > len(x.shape):
        raise ValueError(
            f"sharding_names {tuple(spec)!r} name {len(spec)} dimensions, but the value has "
            f"shape {tuple(x.shape)}. Give one name (or None) per dimension."
        )
    if isinstance(x, jax.ShapeDtypeStruct):
        return x  # abstract: nnx.abstract_with_sharding adds the sharding
    if not _is_traced(x) and _eager():
        # eagerly: put the array on the mesh (inside a trace, a constant made there, as in
        # a vmapped constructor, is constrained like a traced value below)
        concrete = mesh if isinstance(mesh, jax.sharding.Mesh) else jax.sharding.get_mesh()
        if not concrete.empty:
            return jax.device_put(x, NamedSharding(concrete, spec))
    target = NamedSharding(mesh, spec) if mesh is not None else spec
    named = {a for d in spec for a in _axes_of(d)}
    abstract = mesh.abstract_mesh if isinstance(mesh, jax.sharding.Mesh) else mesh
    if abstract is None:
        abstract = jax.sharding.get_abstract_mesh()
    explicit = jax.sharding.AxisType.Explicit
    types = dict(zip(abstract.axis_names, abstract.axis_types))
    if named and all(types.get(a) == explicit for a in named):
        return jax.sharding.reshard(x, target)
    return jax.lax.with_sharding_constraint(x, target)


def shard_new_value(value: Any, metadata: dict, eager: bool | None) -> Any:
    """The value a new Variable stores: sharded as ``metadata`` says, when eager
    sharding is on and a mesh is known (``Variable.__init__`` calls this)."""
    if eager is None:
        eager = using_eager_sharding()
    if not eager:
        return value
    mesh = metadata.get("mesh")
    if mesh is None:
        mesh_now = jax.sharding.get_abstract_mesh()
        if mesh_now.empty:
            return value
    names = metadata["out_sharding"]
    if not names:
        return value
    spec = _spec_of(names, metadata.get("sharding_rules"))
    return jax.tree.map(lambda x: _shard_one(x, spec, mesh), value)
