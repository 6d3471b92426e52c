"""Sharding of trees: PartitionSpecs and shardings from Variables' ``sharding_names``,
abstract models that carry shardings, shardings for ``nnx.jit`` by filter.

Variables carry the mesh axis name (or a logical axis name, mapped by
:func:`logical_axis_rules`) of each dimension as ``sharding_names`` metadata,
set directly or by an initializer wrapped with :func:`with_partitioning`.

- Under ``jax.set_mesh(mesh)`` (and while :func:`using_eager_sharding` is
  true, the default) a Variable with ``sharding_names`` is sharded when it is
  created, so a model never sits whole on one device.
- :func:`get_partition_spec` / :func:`get_named_sharding` turn a model or
  State into the matching tree of ``PartitionSpec``/``NamedSharding`` for
  ``jax.jit``'s ``in_shardings``/``out_shardings``, ``jax.device_put`` or a
  checkpoint restore; :func:`get_abstract_model` and
  :func:`abstract_with_sharding` give abstract states that carry shardings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
from jax.extend.core import get_opaque_trace_state
from jax.sharding import NamedSharding, PartitionSpec

from nnx.core._paths import path_str
from nnx.core._sharding_rules import _spec_of
from nnx.core._state import State
from nnx.core._variables import PLAIN, Variable


def _spec(v: Variable) -> PartitionSpec:
    names = v.get_metadata("sharding_names", None)
    if names is None:
        return PartitionSpec()
    return _spec_of(names, v.get_metadata("sharding_rules", None))


def get_var_pspec(v: Variable) -> PartitionSpec:
    """The ``PartitionSpec`` of one Variable (Flax NNX's ``nnx.spmd.get_var_pspec``).

    Its ``sharding_names`` mapped by :class:`logical_axis_rules` and its
    ``sharding_rules``; ``PartitionSpec()`` (replicated) when it has none.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> nnx.get_var_pspec(nnx.Param(jnp.ones((2, 3)), sharding_names=("a", None)))
    P('a', None)
    >>> nnx.get_var_pspec(nnx.Param(jnp.ones((2, 3))))
    P()
    """
    return _spec(v)


# -- trees of specs and shardings --------------------------------------------------------


def _plain(v: Variable, value) -> Variable:
    """A plain Variable of ``v``'s kind and metadata holding ``value`` (a spec, a
    sharding, an abstract value: nothing that belongs in a ref or a hijax cell)."""
    return type(v)._from_raw(
        value, v._aux.replace(mode=PLAIN), get_opaque_trace_state(convention="nnx")
    )


def _map_variables(f, tree: Any) -> Any:
    from nnx.core._graph import flatten, unflatten

    if isinstance(tree, Variable):
        return _plain(tree, f(tree))
    flat = flatten(tree)
    leaves = [_plain(x, f(x)) if isinstance(x, Variable) else PartitionSpec() for x in flat.leaves]
    return unflatten(flat.graphdef, leaves)


def get_partition_spec(tree: Any) -> Any:
    """The same tree with each Variable's value replaced by its ``PartitionSpec``.

    Example::

        init = nnx.with_partitioning(jax.nn.initializers.ones, (None, "model"))
        state = nnx.State({"w": nnx.Param(init(jax.random.key(0), (4, 8)))})
        nnx.get_partition_spec(state)["w"][...]   # PartitionSpec(None, 'model')

    Variables without ``sharding_names`` get ``PartitionSpec()`` (replicated);
    logical names are mapped by :class:`logical_axis_rules` and the Variable's
    ``sharding_rules``. The Variables of the result are plain, whatever the
    mode of the input.
    """
    return _map_variables(_spec, tree)


def get_named_sharding(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """Like :func:`get_partition_spec`, with ``NamedSharding(mesh, spec)`` values.

    Example::

        mesh = jax.make_mesh((1, len(jax.devices())), ("data", "model"))
        shardings = nnx.get_named_sharding(nnx.state(model), mesh)
        state = jax.device_put(nnx.state(model), shardings)
    """
    return _map_variables(lambda v: NamedSharding(mesh, _spec(v)), tree)


def shard_state(state: State, mesh: jax.sharding.Mesh) -> State:
    """Put every Variable of ``state`` on ``mesh`` as its ``sharding_names`` say, in place.

    Example::

        mesh = jax.make_mesh((1, len(jax.devices())), ("data", "model"))
        nnx.shard_state(nnx.state(model), mesh)   # the model's Variables now live sharded
    """
    for _, v in state.flat_state():
        if isinstance(v, Variable):
            v.set_value(jax.device_put(v.get_value(), NamedSharding(mesh, _spec(v))))
    return state


def _with_sharding(v: Variable, mesh) -> Any:
    value = v.get_value()
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        return value
    if getattr(value, "sharding", None) is not None and not isinstance(value, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=value.sharding)
    m = v.get_metadata("mesh", None) or mesh
    current = getattr(value, "sharding", None)
    if current is not None:
        if (
            isinstance(current, NamedSharding)
            and isinstance(m, jax.sharding.Mesh)
            and not isinstance(current.mesh, jax.sharding.Mesh)
        ):  # eval_shape gives shardings on the abstract mesh; a restore needs devices
            return jax.ShapeDtypeStruct(
                value.shape, value.dtype, sharding=NamedSharding(m, current.spec)
            )
        return value
    if m is None or (v.get_metadata("sharding_names", None) is None and m.empty):
        return jax.ShapeDtypeStruct(value.shape, value.dtype)
    return jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=NamedSharding(m, _spec(v)))


def abstract_with_sharding(tree: Any, mesh: Any = None) -> Any:
    """The tree with each Variable holding a ``jax.ShapeDtypeStruct`` that carries its
    sharding: the target of a sharded checkpoint restore.

    Example::

        mesh = jax.make_mesh((1, 1), ("data", "model"), devices=jax.devices()[:1])
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
        with jax.set_mesh(mesh):
            abstract = nnx.eval_shape(lambda: nnx.Linear(2, 4, kernel_init=init, rngs=nnx.Rngs(0)))
            abstract = nnx.abstract_with_sharding(abstract)
        kernel = abstract.kernel[...]
        print(type(kernel).__name__, kernel.shape)          # ShapeDtypeStruct (2, 4)
        print(kernel.sharding.spec)                         # P(None, 'model')

    A value that has a sharding keeps it; otherwise the sharding is
    ``NamedSharding(mesh, spec)`` from the Variable's ``sharding_names``, with
    the mesh from the Variable's ``mesh`` metadata, the ``mesh`` argument, or
    the mesh set by ``jax.set_mesh``. Concrete arrays become their abstract
    ``ShapeDtypeStruct``. The result's Variables are plain.
    """
    if mesh is None:
        concrete = jax.sharding.get_mesh()
        current = concrete if not concrete.empty else jax.sharding.get_abstract_mesh()
        mesh = None if current.empty else current
    return _map_variables(lambda v: _with_sharding(v, mesh), tree)


def as_abstract(tree: Any, graph: bool | None = None) -> Any:
    """``tree`` with a ``NamedSharding`` on each abstract Variable that has sharding
    metadata but no sharding yet (Flax's name; the target of a sharded restore).

    >>> import jax
    >>> import jax.numpy as jnp
    >>> import nnx
    >>> sds = jax.ShapeDtypeStruct((4, 8), jnp.float32)   # as nnx.eval_shape leaves it
    >>> abstract = nnx.Dict(kernel=nnx.Param(sds, sharding_names=(None, "model")))
    >>> with jax.set_mesh(jax.make_mesh((1,), ("model",))):
    ...     abstract = nnx.as_abstract(abstract)
    >>> abstract["kernel"].get_value().sharding.spec == jax.P(None, "model")
    True

    A Variable whose value is abstract (has a shape and a dtype, no sharding) and
    that has ``sharding_names`` (``out_sharding``) metadata gets a copy holding
    ``jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec))``:
    the spec is the one :func:`get_partition_spec` gives, the mesh is the
    Variable's ``mesh`` metadata or the mesh set by ``jax.set_mesh``. Every other
    Variable (concrete arrays, values that already have a sharding, no
    metadata) is copied unchanged. Unlike :func:`abstract_with_sharding`, the
    Variables keep their kind and storage mode and concrete arrays stay concrete.
    A Variable with sharding metadata and no mesh to place it on is a
    ``ValueError`` naming its path.

    Args:
        tree: a graph node (a Module from ``nnx.eval_shape``), a State or a Variable.
        graph: accepted for Flax's signature; the result is the same in both modes.

    Returns:
        A new tree (as :func:`nnx.map` builds it) with the sharded abstract values.
    """
    from nnx.core._graph_api import map as map_graph
    from nnx.core._state import map_state

    del graph
    concrete = jax.sharding.get_mesh()
    current = concrete if not concrete.empty else jax.sharding.get_abstract_mesh()

    def add_sharding(path, v):
        if not isinstance(v, Variable):
            return v
        value = v.get_value()
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            return v
        if getattr(value, "sharding", None) is not None:
            return v
        if v.get_metadata("sharding_names", None) is None:
            return v
        mesh = v.get_metadata("mesh", None) or (None if current.empty else current)
        if mesh is None:
            where = path_str(path)
            raise ValueError(
                f"nnx.as_abstract: the {type(v).__name__} at {where!r} has sharding_names "
                f"{v.get_metadata('sharding_names', None)!r} but there is no mesh to place it on. "
                "Call it inside `with jax.set_mesh(mesh):` or give the Variable `mesh` "
                "metadata."
            )
        sharding = NamedSharding(mesh, _spec(v))
        return v.replace(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding))

    if isinstance(tree, Variable):
        return add_sharding((), tree)
    if isinstance(tree, State):
        return map_state(add_sharding, tree)
    return map_graph(add_sharding, tree)


def get_abstract_model(init_fn: Callable[[], Any], mesh: jax.sharding.Mesh):
    """``(graphdef, abstract_state)`` of the model ``init_fn()`` would build on ``mesh``,
    without allocating it; the state's values are ``jax.ShapeDtypeStruct``\\ s with
    ``NamedSharding``\\ s (a checkpoint restore target).

    Example::

        import pathlib, tempfile

        import orbax.checkpoint as ocp

        mesh = jax.make_mesh((1, 1), ("data", "model"), devices=jax.devices()[:1])
        init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))

        def make_model():
            return nnx.Linear(2, 4, kernel_init=init, rngs=nnx.Rngs(0))

        graphdef, abstract_state = nnx.get_abstract_model(make_model, mesh)
        kernel = abstract_state["kernel"][...]              # nothing allocated yet
        print(type(kernel).__name__, kernel.shape)          # ShapeDtypeStruct (2, 4)
        print(kernel.sharding.spec)                         # P(None, 'model')

        path = pathlib.Path(tempfile.mkdtemp()) / "ckpt"    # a checkpoint to restore
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(path, nnx.state(make_model()))
        checkpointer.wait_until_finished()

        state = checkpointer.restore(path, abstract_state)  # placed on the mesh
        model = nnx.merge(graphdef, state)
        print(model.kernel[...].sharding.spec)              # P(None, 'model')

    """
    from nnx.core._graph import split

    box: list = []

    def build():
        graphdef, state = split(init_fn())
        box.append(graphdef)
        return _plain_values(state)

    with jax.set_mesh(mesh):
        abstract = jax.eval_shape(build)
        state = abstract_with_sharding(abstract, mesh)
    return box[0], state


def _plain_values(state: State) -> State:
    """The state as plain Variables (a value JAX can return from a trace)."""
    return State.from_flat(
        (p, _plain(v, v.get_value()) if isinstance(v, Variable) else v)
        for p, v in state.flat_state()
    )


# -- shardings for nnx.jit by filter -----------------------------------------------------


class StateSharding:
    """Shardings chosen by filter, for an nnx object argument of ``nnx.jit``.

    Example::

        from jax.sharding import NamedSharding, PartitionSpec as P

        mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
        split, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
        by_filter = nnx.StateSharding({nnx.Param: replicated, ...: None})
        print(by_filter.sharding_for(("linear1", "kernel"), model.linear1.kernel) == replicated)  # True
        print(by_filter.sharding_for(("bn", "mean"), model.bn.mean))   # None

        @nnx.jit(in_shardings=(by_filter, split))   # the model's Params replicated, x split
        def predict(model, x):
            return model(x)

        print(predict(model, x).shape)              # (4, 1)

    ``filter_sharding`` is a mapping (or a sequence of pairs) from filters to
    shardings; a Variable takes the sharding of the first filter that matches
    its path and value (``None`` when none does).
    """

    def __init__(self, filter_sharding: Mapping | Iterable[tuple[Any, Any]], /):
        items = (
            tuple(filter_sharding.items())
            if isinstance(filter_sharding, Mapping)
            else tuple(filter_sharding)
        )
        self._filters = tuple(f for f, _ in items)
        self._shardings = tuple(s for _, s in items)

    @property
    def filters(self) -> tuple:
        """The filters, in order."""
        return self._filters

    @property
    def shardings(self) -> tuple:
        """The sharding of each filter."""
        return self._shardings

    def sharding_for(self, path: tuple, variable: Any) -> Any:
        """The sharding of the first filter that matches ``(path, variable)``."""
        from nnx.core._filters import to_predicate

        for f, s in zip(self._filters, self._shardings):
            if to_predicate(f)(path, variable):
                return s
        return None

    map_prefix = sharding_for

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, StateSharding)
            and self._filters == other._filters
            and self._shardings == other._shardings
        )

    def __hash__(self) -> int:
        return hash((self._filters, self._shardings))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f!r}: {s!r}" for f, s in zip(self._filters, self._shardings))
        return f"StateSharding({{{inner}}})"
