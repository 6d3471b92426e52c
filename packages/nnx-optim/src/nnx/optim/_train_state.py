"""``TrainState``: Flax NNX's functional train state (a frozen dataclass pytree).

``nnx.TrainState`` (also ``nnx.helpers.TrainState``) holds a model's
``GraphDef``, its parameters as a ``State``, the optax state and the step, and
``apply_gradients`` returns a new one: the functional style of ``flax.training``
carried over to NNX. Subclasses add fields (``batch_stats: nnx.State``) and are
dataclasses and pytrees themselves.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from nnx.core import GraphDef, State, merge, split


def _is_static(f: dataclasses.Field) -> bool:
    return f.metadata.get("pytree_node", True) is False


def _register(cls: type) -> None:
    fields = dataclasses.fields(cls)
    data = tuple(f.name for f in fields if not _is_static(f))
    static = tuple(f.name for f in fields if _is_static(f))

    def flatten_with_keys(obj):
        children = [(jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in data]
        return children, tuple(getattr(obj, n) for n in static)

    def flatten(obj):
        return [getattr(obj, n) for n in data], tuple(getattr(obj, n) for n in static)

    def unflatten(aux, children):
        obj = object.__new__(cls)
        for n, v in zip(data, children):
            object.__setattr__(obj, n, v)
        for n, v in zip(static, aux):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)


class _Apply:
    """``state.apply('params')(x)`` or ``state.apply('params').method(x)``.

    Calling merges the GraphDef with the States, calls the module (or the
    method reached through the attribute chain), and returns ``(output,
    (graphdef, state))`` with the module's state after the call.
    """

    __slots__ = ("_graphdef", "_states", "_path")

    def __init__(self, graphdef: GraphDef, states: tuple, path: tuple = ()):
        self._graphdef = graphdef
        self._states = states
        self._path = path

    def __getattr__(self, name: str) -> _Apply:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Apply(self._graphdef, self._states, (*self._path, name))

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, tuple[GraphDef, State]]:
        module = merge(self._graphdef, *self._states)
        fn = module
        for name in self._path:
            fn = getattr(fn, name)
        out = fn(*args, **kwargs)
        graphdef, state = split(module)
        return out, (graphdef, state)


class TrainState:
    """A model's GraphDef, parameters, optax state and step, as one frozen pytree.

    Example::

        model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
        graphdef, params = nnx.split(model, nnx.Param)
        state = nnx.TrainState.create(graphdef, params=params, tx=optax.adam(1e-2))

        @jax.jit
        def train_step(state, x, y):
            def loss_fn(params):
                y_pred, _ = state.apply(params)(x)
                return ((y_pred - y) ** 2).mean()
            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            return state.apply_gradients(grads=grads), loss

        state, first = train_step(state, x, y)
        for _ in range(10):
            state, loss = train_step(state, x, y)
        print(int(state.step), bool(loss < first))   # 11 True
        model = nnx.merge(state.graphdef, state.params)   # back to a Module

        import dataclasses

        class TrainStateWithStats(nnx.TrainState):   # more fields
            batch_stats: nnx.State
            note: str = dataclasses.field(default="", metadata={"pytree_node": False})

    Subclasses add fields (as ``TrainStateWithStats`` above); each is a frozen
    dataclass and a pytree (a field with ``dataclasses.field(metadata={"pytree_node":
    False})`` is static, as ``note`` above).

    Attributes:
      graphdef: the model's structure (static).
      params: the parameters, a ``State``.
      opt_state: the optax state of ``params``.
      step: the number of ``apply_gradients`` calls, an array.
      tx: the optax transformation (static).
    """

    graphdef: GraphDef = dataclasses.field(metadata={"pytree_node": False})
    params: State
    opt_state: Any
    step: jax.Array
    tx: optax.GradientTransformation = dataclasses.field(metadata={"pytree_node": False})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(frozen=True)(cls)
        _register(cls)

    @classmethod
    def create(
        cls,
        graphdef: GraphDef,
        *,
        params: State,
        tx: optax.GradientTransformation,
        step: int = 0,
        **kwargs: Any,
    ) -> Any:
        """A new train state: ``opt_state = tx.init(params)``, ``step`` as an array.

        Example::

            model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
            graphdef, params = nnx.split(model, nnx.Param)
            state = nnx.TrainState.create(graphdef, params=params, tx=optax.sgd(0.1))
            print(int(state.step), state.opt_state)      # 0 (EmptyState(), EmptyState())

            class TrainStateWithStats(nnx.TrainState):
                batch_stats: nnx.State

            graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
            state = TrainStateWithStats.create(
                graphdef, params=params, tx=optax.sgd(0.1), batch_stats=stats
            )

        Extra keyword arguments fill the fields a subclass adds.
        """
        fields = dict(
            graphdef=graphdef,
            params=params,
            opt_state=tx.init(params),
            step=jnp.asarray(step),
            tx=tx,
            **kwargs,
        )
        return cls(**fields)

    def apply(self, state: State | str, *states: State | str) -> Any:
        """Call the model rebuilt from ``graphdef`` and the given States.

        Example::

            class Scale(nnx.Module):
                def __init__(self):
                    self.w = nnx.Param(jnp.array(2.0))
                    self.calls = nnx.BatchStat(jnp.array(0))

                def __call__(self, x):
                    self.calls[...] += 1
                    return self.w * x

                def half(self, x):
                    return self.w * x / 2

            graphdef, params, counts = nnx.split(Scale(), nnx.Param, nnx.BatchStat)
            ts = nnx.TrainState.create(graphdef, params=params, tx=optax.sgd(0.1))
            # a State, or the name of a field that holds one:
            y, (graphdef, new_state) = ts.apply("params", counts)(jnp.ones(2))
            print(y)                                   # [2. 2.]
            print(new_state["calls"][...])             # 1
            y, _ = ts.apply(params, counts).half(jnp.ones(2))   # a method
            print(y)                                   # [1. 1.]

        A string names a field of this train state holding a ``State``.
        Returns a caller whose call gives ``(output, (graphdef, state))``, the
        state being the model's after the call.
        """
        resolved = []
        for s in (state, *states):
            if isinstance(s, str):
                value = getattr(self, s)
                if not isinstance(value, State):
                    raise TypeError(
                        f"{type(self).__name__}.apply({s!r}): the field {s!r} holds a "
                        f"{type(value).__name__}, not an nnx.State. Pass States or names of "
                        f"fields that hold them (e.g. 'params')."
                    )
                s = value
            resolved.append(s)
        return _Apply(self.graphdef, tuple(resolved))

    def apply_gradients(self, grads: State, **kwargs: Any) -> Any:
        """One optax step: new ``params``, ``opt_state`` and ``step + 1``; ``kwargs`` replace fields.

        Example::

            model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
            graphdef, params = nnx.split(model, nnx.Param)
            state = nnx.TrainState.create(graphdef, params=params, tx=optax.sgd(0.1))
            grads = jax.tree.map(jnp.ones_like, state.params)
            new = state.apply_gradients(grads=grads)
            print(int(new.step), int(state.step))       # 1 0
            print(bool(jnp.allclose(new.params["bias"][...], state.params["bias"][...] - 0.1)))  # True

            class TrainStateWithStats(nnx.TrainState):
                batch_stats: nnx.State

            bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
            graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)
            state = TrainStateWithStats.create(graphdef, params=params, tx=optax.sgd(0.1), batch_stats=stats)
            _, (_, new_stats) = state.apply("params", "batch_stats")(jnp.ones((4, 3)))
            grads = jax.tree.map(jnp.zeros_like, state.params)
            state = state.apply_gradients(grads=grads, batch_stats=new_stats.filter(nnx.BatchStat))
            print(state.batch_stats["mean"][...])        # [0.01 0.01 0.01]

        """
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(params=params, opt_state=opt_state, step=self.step + 1, **kwargs)

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields replaced (``dataclasses.replace``).

        Example::

            model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
            graphdef, params = nnx.split(model, nnx.Param)
            state = nnx.TrainState.create(graphdef, params=params, tx=optax.sgd(0.1), step=100)
            restarted = state.replace(step=jnp.asarray(0))
            print(int(restarted.step), int(state.step))  # 0 100

        """
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


dataclasses.dataclass(frozen=True)(TrainState)
_register(TrainState)
