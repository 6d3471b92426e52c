"""``Optimizer``: an optax transformation applied in place to a model's Variables.

The optimizer keeps its step count and the optax state in :class:`OptState`
Variables, so it crosses ``nnx.jit``, ``nnx.split``/``nnx.merge`` and (with
ref or hijax Variables) a plain ``jax.jit`` like any module. It holds a
reference to the model:

- in the object graph (``nnx.split``, ``nnx.jit``) the model is an ordinary
  child, shared with the caller's model, so ``nnx.jit(step)(model, optimizer)``
  carries one copy of the parameters;
- as a JAX pytree (a plain ``jax.jit`` argument) the optimizer carries only its
  own state and keeps the model as a reference, so ``jax.jit(step)(model,
  optimizer)`` does not pass the parameters twice (JAX forbids two arguments
  holding the same ``jax.Ref``) and ``optimizer.update(model, grads)`` writes
  into the traced ``model``.

Storage of the optax state: the optax state pytree keeps its structure
(namedtuples, tuples); every subtree shaped like the parameters (Adam's
moments, accumulated gradients) is an ``nnx.State`` with the parameters' paths
whose leaves are :class:`OptVariable` s carrying their parameter's metadata
(sharding names), every other array (counts, injected hyperparameters) an
:class:`OptArray`, as in Flax NNX. So the state is addressable by path
(``opt_state[0].mu['l1']['kernel']``), ``nnx.state(optimizer)`` is keyed by path
(``opt_state/0/mu/l1/kernel``) and ``nnx.get_named_sharding`` of it has its
structure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.core import Tracer

from nnx.core import (
    FlattenCache,
    Param,
    Pytree,
    State,
    Variable,
    flatten,
    graph_ref,
    is_graph_node,
    key_order,
    static,
    to_predicate,
)
from nnx.core import update as update_graph
from nnx.optim._errors import GradientStructureError, OptimError


class OptState(Variable):
    """A Variable holding optimizer state: the step count and the optax state.

    Example::

        tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        nnx.state(optimizer, nnx.optim.OptState)   # step and Adam's count/mu/nu

        lr = optimizer.opt_state.hyperparams["learning_rate"]  # inject_hyperparams
        lr[...] = 1e-4          # stays a float32 array: a jitted step does not retrace

    A Python number written into a scalar array keeps that array's dtype (a
    bare ``0.5`` would otherwise be stored as a Python float, which ``jax.jit``
    sees as a new, weakly typed argument and traces again).
    """

    def set_value(self, value: Any) -> None:
        """Replace the value; a Python number keeps a scalar array's dtype.

        Example::

            step = nnx.optim.OptState(jnp.array(0, dtype=jnp.uint32))
            step.set_value(7)      # or step[...] = 7
            step.value             # Array(7, dtype=uint32)
        """
        if isinstance(value, (bool, int, float, complex)):
            current = self.get_value()
            dtype = getattr(current, "dtype", None)
            if dtype is not None and jnp.ndim(current) == 0:
                value = jnp.asarray(value, dtype=dtype)
        super().set_value(value)


class OptArray(OptState):
    """Optimizer state that is not shaped like a parameter (counts, hyperparameters).

    Example::

        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        optimizer.opt_state[0].count          # OptArray(value=Array(0, dtype=int32))
    """


class OptVariable(OptState):
    """Optimizer state shaped like a parameter (Adam's moments, ...), one per parameter.

    It carries the metadata of its parameter (``sharding_names``, ...), so
    ``nnx.get_named_sharding(nnx.state(optimizer), mesh)`` shards the moments
    like the parameters, and its array is placed like the parameter's.

    Example::

        model = nnx.Linear(2, 8, rngs=nnx.Rngs(0))
        model.kernel.set_metadata(sharding_names=(None, "model"))
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        mu = optimizer.opt_state[0].mu["kernel"]      # Adam's first moment of model.kernel
        print(type(mu).__name__)                      # OptVariable
        print(mu[...].shape, float(mu[...].sum()))    # (2, 8) 0.0
        print(mu.sharding_names)                      # (None, 'model')

    """


# -- paths ---------------------------------------------------------------------
def _path_key(path: tuple) -> tuple:
    # The order State uses for its leaves (nnx.key_order of each key), so that the
    # optimizer state lines up with nnx.state(model, wrt) leaf for leaf.
    return tuple(key_order(k) for k in path)


def _keystr(path: tuple) -> str:
    return "/".join(str(k) for k in path) or "<root>"


def _filter_name(wrt) -> str:
    return getattr(wrt, "__name__", None) or repr(wrt)


def _is_variable(x) -> bool:
    return isinstance(x, Variable)


def _is_state(x) -> bool:
    return isinstance(x, State)


# -- the Variables an optimizer updates ----------------------------------------
def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray))


class Selection:
    """The state leaves of one model graph that ``wrt`` selects, in State path order.

    A leaf is a Variable or a raw array attribute (``self.w = jnp.zeros(3)``,
    state as in Flax NNX). ``treedef`` is the pytree structure of the State
    that optax sees (one leaf per entry), so values go in and out with
    ``treedef.unflatten`` and ``treedef.flatten_up_to`` (C++ calls, no Python
    loop over the tree).
    """

    __slots__ = ("paths", "variables", "treedef", "raw_paths")

    def __init__(self, items: list[tuple[tuple, Any]]):
        items.sort(key=lambda item: _path_key(item[0]))
        self.paths = tuple(p for p, _ in items)
        self.variables = tuple(v for _, v in items)
        self.treedef = jax.tree.structure(State.from_flat((p, 0) for p in self.paths))
        # positions of raw arrays (written back with nnx.update, not set_value)
        self.raw_paths = tuple(i for i, v in enumerate(self.variables) if not _is_variable(v))

    def values(self) -> list:
        """The current values, in order."""
        return [v.get_value() if isinstance(v, Variable) else v for v in self.variables]


def select(model: Any, pred, flat=None, *, arrays: bool = True) -> Selection:
    """The Variables (and raw arrays, if ``arrays``) of ``model`` matched by ``pred``."""
    if flat is None:
        flat = flatten((model,))
    items = []
    for path, x in zip(flat.graphdef.paths, flat.leaves):
        if isinstance(x, Variable) or (arrays and _is_array(x)):
            p = path[1:]  # drop the index of the (model,) tuple
            if pred(p, x):
                items.append((p, x))
    return Selection(items)


class _Cache:
    """Per-optimizer memo of the last model's selection (plain Python, not data)."""

    __slots__ = ("flatten_cache", "flat", "selection", "wrt", "pred")

    def __init__(self, wrt):
        self.flatten_cache = FlattenCache()
        self.flat = None
        self.selection = None
        self.wrt = wrt
        self.pred = to_predicate(wrt)


# -- gradients -----------------------------------------------------------------
def _grad_items(grads: Any, pred) -> list[tuple[tuple, Any]]:
    """``(path, leaf)`` pairs of a State, a nested dict or a module-shaped gradient."""
    if isinstance(grads, Mapping):
        state = grads if isinstance(grads, State) else State(grads)
        return [(p, x) for p, x in state.flat_state() if not isinstance(x, Variable) or pred(p, x)]
    if is_graph_node(grads) and not isinstance(grads, Variable):
        flat = flatten(grads, with_paths=True)
        items = [(p, x) for p, x in zip(flat.paths, flat.leaves) if pred(p, x)]
        items.sort(key=lambda item: _path_key(item[0]))
        return items
    raise TypeError(
        f"Optimizer.update: gradients must be an nnx.State, a nested dict of arrays, or a "
        f"module-shaped tree of Variables (what jax.grad returns for "
        f"`nnx.vars_as(model, mutable=False)`); got {type(grads).__name__}."
    )


def _mismatch(sel: Selection, items, wrt) -> GradientStructureError:
    have = {p for p, _ in items}
    want = set(sel.paths)
    for p in sorted(have | want, key=_path_key):
        if p not in have:
            return GradientStructureError(
                f"Optimizer.update: the gradients have no entry at {_keystr(p)!r}, a "
                f"{type(sel.variables[sel.paths.index(p)]).__name__} that the optimizer "
                f"updates (wrt={_filter_name(wrt)}). Differentiate with respect to "
                f"`nnx.state(model, wrt)` (or pass the optimizer's `wrt` to nnx.grad)."
            )
        if p not in want:
            return GradientStructureError(
                f"Optimizer.update: the gradients have an entry at {_keystr(p)!r}, which is "
                f"not a Variable the optimizer updates (wrt={_filter_name(wrt)}). Pass "
                f"gradients for exactly `nnx.state(model, wrt)`, or create the optimizer "
                f"with a `wrt` filter that selects this path."
            )
    return GradientStructureError("Optimizer.update: the gradients do not match the parameters.")


def grad_values(sel: Selection, grads: Any, pred, wrt, params: list) -> list:
    """The gradient arrays in ``sel``'s order; raises naming the first mismatched path.

    ``params`` holds the current values of ``sel.variables`` (for the shape check).
    """
    items = _grad_items(grads, pred)
    if len(items) != len(sel.paths) or any(p != q for (p, _), q in zip(items, sel.paths)):
        lookup = dict(items)
        if set(lookup) != set(sel.paths):
            raise _mismatch(sel, items, wrt)
        items = [(p, lookup[p]) for p in sel.paths]
    values = []
    for (path, g), v, p in zip(items, sel.variables, params):
        if isinstance(g, Variable):
            g = g.get_value()
        gshape = getattr(g, "shape", None)
        if gshape is not None:
            pshape = jnp.shape(p)
            if tuple(gshape) != tuple(pshape):
                raise GradientStructureError(
                    f"Optimizer.update: the gradient at {_keystr(path)!r} has shape "
                    f"{tuple(gshape)}, but the {type(v).__name__} there has shape "
                    f"{tuple(pshape)}."
                )
        values.append(g)
    return values


# -- the optax state in Variables ----------------------------------------------
class ParamSpec:
    """The paths, shapes and dtypes of the Variables an optimizer was built for.

    Static (part of the optimizer's GraphDef, hashable): ``update`` checks the
    model it is given against it before optax sees anything, so a model of
    another structure is named rather than failing inside optax.
    """

    __slots__ = ("treedef", "paths", "shapes", "_hash")

    def __init__(self, sel: Selection, values: list):
        self.treedef = sel.treedef
        self.paths = sel.paths
        self.shapes = tuple(tuple(jnp.shape(x)) for x in values)
        self._hash = hash((self.treedef, self.shapes))

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is ParamSpec
            and self.treedef == other.treedef
            and self.shapes == other.shapes
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"<{len(self.paths)} parameters>"

    def check(self, model: Any, sel: Selection, values: list) -> None:
        """Raise GradientStructureError naming the first path where ``model`` differs."""
        if sel.treedef != self.treedef:
            have, want = set(sel.paths), set(self.paths)
            for p in sorted(have | want, key=_path_key):
                if p not in have:
                    where = f"has no selected Variable at {_keystr(p)!r}"
                    break
                if p not in want:
                    where = (
                        f"has a selected Variable at {_keystr(p)!r}, which the optimizer's has not"
                    )
                    break
            else:  # same paths, another container structure
                where = "has its Variables in other containers"
            raise GradientStructureError(
                f"Optimizer.update: the model passed ({type(model).__name__}) does not match "
                f"the optimizer's: it {where}. An optimizer updates the model it was built for "
                f"(`nnx.Optimizer(model, tx, wrt=...)`); pass that model (or one of the same "
                f"structure), or build a new optimizer for this one."
            )
        shapes = tuple(tuple(jnp.shape(x)) for x in values)
        if shapes != self.shapes:
            for path, a, b in zip(self.paths, shapes, self.shapes):
                if a != b:
                    raise GradientStructureError(
                        f"Optimizer.update: the model passed ({type(model).__name__}) does not "
                        f"match the optimizer's: the Variable at {_keystr(path)!r} has shape {a}, "
                        f"but the optimizer's state was built for shape {b}. Build a new "
                        f"optimizer for a model whose parameters changed shape."
                    )


def storage_mode(variables) -> dict:
    """``hijax=``/``ref=`` keywords for new Variables stored like ``variables``.

    The optimizer's state must cross the same boundaries as the model (a plain
    ``jax.jit`` carries writes only to ref or hijax Variables), so it follows the
    model's mode even when ``nnx.var_defaults()`` says otherwise; models mixing
    modes get the defaults.
    """
    modes = {(v.hijax, v.ref) for v in variables if isinstance(v, Variable)}
    if len(modes) != 1:
        return {}
    hijax, ref = modes.pop()
    return {"hijax": hijax, "ref": ref}


_SHARDING_KEYS = ("out_sharding",)


def _like_param(x: Any, param: Any, variable: Any) -> tuple[Any, dict]:
    """A param-shaped optax array placed like its parameter, and the metadata to carry.

    An array of the parameter's shape takes the parameter's sharding (Adam's
    moments of a ``P(None, 'model')`` kernel live sharded the same way) and all
    of its metadata; one of another shape (L-BFGS's memory) the metadata
    without the sharding names.
    """
    metadata = variable.metadata if isinstance(variable, Variable) else {}
    if tuple(jnp.shape(x)) != tuple(jnp.shape(param)):
        return x, {k: v for k, v in metadata.items() if k not in _SHARDING_KEYS}
    sharding = getattr(param, "sharding", None)
    if (
        sharding is not None
        and isinstance(x, jax.Array)
        and not isinstance(x, Tracer)
        and not isinstance(param, Tracer)
        and x.sharding != sharding
    ):
        x = jax.device_put(x, sharding)
    return x, metadata


def wrap_opt_state(raw: Any, sel: Selection, params: list, mode: dict) -> Any:
    """The optax state with every array in an ``OptArray`` or ``OptVariable``.

    A subtree with the parameters' structure (an ``nnx.State`` of the selected
    paths: Adam's moments, accumulated gradients) keeps that structure, so it is
    addressable by path (``opt_state[0].mu['l1']['kernel']``) and checkpoints
    are keyed by path; each of its arrays is an :class:`OptVariable` carrying
    its parameter's metadata. Every other array (counts, injected
    hyperparameters) is an :class:`OptArray`. ``mode`` is what
    :func:`storage_mode` returns.
    """

    def wrap(x):
        if isinstance(x, State):
            treedef = jax.tree.structure(x)
            if treedef == sel.treedef:
                leaves = []
                for a, p, v in zip(treedef.flatten_up_to(x), params, sel.variables):
                    a, metadata = _like_param(a, p, v)
                    leaves.append(OptVariable(a, **{**metadata, **mode}))
                return treedef.unflatten(leaves)
            return jax.tree.map(lambda a: OptArray(jnp.asarray(a), **mode), x)
        return OptArray(jnp.asarray(x), **mode)

    return jax.tree.map(wrap, raw, is_leaf=_is_state)


def _value(v: Any) -> Any:
    return v.get_value() if isinstance(v, Variable) else v


def read_opt_state(wrapped: Any) -> tuple[list, Any, Any]:
    """``(variables, treedef, raw)``: the OptState Variables, optax's structure, its values."""
    variables, treedef = jax.tree.flatten(wrapped, is_leaf=_is_variable)
    return variables, treedef, treedef.unflatten([_value(v) for v in variables])


def strip_variables(tree: Any) -> Any:
    """``tree`` with every Variable replaced by its value (what optax may see)."""
    return jax.tree.map(_value, tree, is_leaf=_is_variable)


def write_all(pairs: list) -> None:
    """Write ``(variable, value)`` pairs all or nothing: on an error, undo the writes made."""
    done = []
    try:
        for v, x in pairs:
            old = v.get_value()
            v.set_value(x)
            done.append((v, old))
    except BaseException:
        for v, old in reversed(done):
            v.set_value(old)
        raise


class _TxPickleGuard:
    """Stands for ``tx`` in a pickled optimizer: pickles it, or says why it cannot."""

    __slots__ = ("tx",)

    def __init__(self, tx):
        self.tx = tx

    def __reduce__(self):
        import pickle

        try:
            pickle.dumps(self.tx)
        except Exception as e:
            raise OptimError(
                f"Cannot pickle an nnx.Optimizer: its optax transformation "
                f"({type(self.tx).__name__}) cannot be pickled (optax builds transformations "
                f"from local functions: {e}). Pickle or checkpoint the optimizer's state "
                f"instead and rebuild the optimizer: `blob = pickle.dumps((model, "
                f"nnx.state(optimizer)))`; later `model, opt_state = pickle.loads(blob); "
                f"optimizer = nnx.Optimizer(model, tx, wrt=...); nnx.update(optimizer, "
                f"opt_state)` (or save `nnx.state(optimizer).to_pure_dict()` and restore with "
                f"`replace_by_pure_dict`)."
            ) from None
        return (_identity, (self.tx,))


def _identity(x):
    return x


_MISSING = object()


M = TypeVar("M")


class Optimizer(Pytree, Generic[M]):
    """An optax transformation that updates a model's Variables in place.

    Example::

        model = MLP(2, 16, 1, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

        @nnx.jit
        def train_step(model, optimizer, x, y):
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
            optimizer.update(model, grads)       # writes the new parameters into model
            return loss

        first = train_step(model, optimizer, x, y)
        for _ in range(20):
            loss = train_step(model, optimizer, x, y)
        print(bool(loss < first))                # True
        print(optimizer.step[...])               # 21
        # Adam's first moment, stored by parameter path:
        print(optimizer.opt_state[0].mu["linear1"]["kernel"][...].shape)   # (2, 16)

    ``update(grads)`` uses the model given here; ``update(model, grads)`` the
    one passed (the traced copy inside a plain ``jax.jit``). Gradients may be an
    ``nnx.State`` (of Variables or arrays), a nested dict of arrays, or a
    module-shaped tree of Variables such as ``jax.grad`` returns for
    ``nnx.vars_as(model, mutable=False)``; entries not selected by ``wrt`` are
    ignored when they are Variables. Extra keyword arguments of ``update`` go
    to ``tx.update`` with Variables replaced by their values (``value=``,
    ``grad=``, ``value_fn=`` for optax line searches such as ``optax.lbfgs``).

    An update is all or nothing: when anything fails (a gradient or model of
    another structure, an error inside optax, a write that is refused), the
    model and the optimizer's state are left exactly as they were.

    Attributes:
      model: the model (a reference, shared with the caller's).
      tx: the optax transformation (static).
      wrt: the filter selecting the updated Variables (static).
      step: ``OptState`` uint32 count of updates.
      opt_state: the optax state, with optax's own structure (namedtuples,
        tuples for chains); a subtree shaped like the parameters is an
        ``nnx.State`` of :class:`OptVariable` by parameter path
        (``opt_state[0].mu['l1']['kernel']``), every other array an
        :class:`OptArray` (``opt_state.hyperparams['learning_rate'][...] =
        1e-4`` changes an ``optax.inject_hyperparams`` hyperparameter between
        steps, also between jitted steps without retracing).

    The ``OptState`` Variables are stored like the model's selected Variables
    (plain, ref or hijax), whatever ``nnx.var_defaults()`` says, so the
    optimizer crosses the same JAX boundaries as its model.

    Checkpoints: ``nnx.state(optimizer)`` holds the model's Variables too (the
    model is a graph child). Save ``nnx.state((model, optimizer))`` (one copy
    of each array) or ``{'model': nnx.state(model), 'optimizer':
    nnx.state(optimizer, nnx.optim.OptState)}``. The optimizer itself cannot be
    pickled (optax transformations are local functions): rebuild it from
    ``tx`` and restore its state with ``nnx.update``.

    Args:
      model: the object graph holding the Variables to optimize.
      tx: any ``optax.GradientTransformation`` (chains, ``optax.MultiSteps``,
        schedules, ``inject_hyperparams``, ``GradientTransformationExtraArgs``).
      wrt: a filter (default ``nnx.Param``); e.g. ``nnx.LoRAParam`` to train
        only LoRA adapters.
    """

    __slots__ = ("_nnx_optim_cache",)

    opt_state: Any  # set in __init__ through __dict__ (keeps optax's node types)

    # As a JAX pytree the model is a reference (see the module docstring).
    _model_by_reference = True

    def __init__(self, model: M, tx: optax.GradientTransformation, *, wrt: Any = Param):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(
                f"Optimizer: `tx` must be an optax GradientTransformation (with `init` and "
                f"`update`), got {type(tx).__name__}. Example: "
                f"`nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)`."
            )
        self.model = graph_ref(model) if self._model_by_reference else model
        self.tx = tx
        self.wrt = wrt
        sel = self._selection(model)
        if not sel.variables:
            raise OptimError(
                f"Optimizer: {type(model).__name__} has no Variable or array attribute matching "
                f"wrt={_filter_name(wrt)}, so there is nothing to optimize. Check the filter "
                f"(e.g. `wrt=nnx.Param`, or a predicate `lambda path, value: ...`)."
            )
        values = sel.values()
        self.param_spec = static(ParamSpec(sel, values))
        mode = storage_mode(sel.variables)
        self.step = OptState(jnp.array(0, dtype=jnp.uint32), **mode)
        # Bypass the tracking of plain dicts/lists in data attributes: the optax
        # state must keep its exact node types for tx.update.
        Pytree.__setattr__(self, "opt_state", None)
        raw = tx.init(sel.treedef.unflatten(values))
        self.__dict__["opt_state"] = wrap_opt_state(raw, sel, values, mode)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "wrt":
            object.__setattr__(self, "_nnx_optim_cache", None)
        super().__setattr__(name, value)

    def __getstate__(self):
        d, forced = super().__getstate__()
        d["tx"] = _TxPickleGuard(d["tx"])
        return d, forced

    def __setstate__(self, state):
        d, forced = state
        if isinstance(d.get("tx"), _TxPickleGuard):
            d = {**d, "tx": d["tx"].tx}
        super().__setstate__((d, forced))

    def _selection(self, model: Any) -> Selection:
        try:
            cache = self._nnx_optim_cache
        except AttributeError:
            cache = None
        wrt = self.__dict__["wrt"]
        if cache is None or cache.wrt is not wrt:
            cache = _Cache(wrt)
            object.__setattr__(self, "_nnx_optim_cache", cache)
        flat = cache.flatten_cache.flatten((model,))
        if flat is not cache.flat:
            cache.selection = select(model, cache.pred, flat)
            cache.flat = flat
        return cache.selection  # type: ignore[return-value]

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Apply one optax step: ``update(grads)`` or ``update(model, grads)``; returns None.

        Example::

            model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
            optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
            kernel = model.kernel[...]
            grads = nnx.grad(loss_fn)(model, x, y)
            optimizer.update(grads)                  # the model given to the constructor
            print(bool(jnp.allclose(model.kernel[...], kernel - 0.1 * grads["kernel"][...])))  # True
            optimizer.update(model, grads)           # an explicit model (the traced one in jax.jit)

            # all or nothing: gradients of another shape change nothing
            bad = nnx.State({"kernel": jnp.zeros((3, 1)), "bias": jnp.zeros(1)})
            before = model.kernel[...]
            try:
                optimizer.update(model, bad)
            except nnx.GradientStructureError as e:
                print(type(e).__name__)              # GradientStructureError
            print(bool((model.kernel[...] == before).all()), int(optimizer.step[...]))   # True 2

            # extra keyword arguments go to tx.update, e.g. the line search of L-BFGS
            graphdef, _ = nnx.split(model)
            lbfgs = nnx.Optimizer(model, optax.lbfgs(), wrt=nnx.Param)
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
            lbfgs.update(model, grads, value=loss, grad=grads,
                         value_fn=lambda params: loss_fn(nnx.merge(graphdef, params), x, y))
            print(bool(loss_fn(model, x, y) < loss))     # True

        Inside a plain ``jax.jit`` that takes the model as an argument, use
        ``update(model, grads)`` with that traced model: ``update(grads)`` writes
        into the caller's model, which the trace also receives, and JAX rejects
        that for ref Variables and drops the write for hijax ones.

        Extra keyword arguments go to ``tx.update`` with every Variable replaced
        by its value; one given the gradients object itself (``grad=grads``)
        receives the gradients as optax sees them.

        Nothing is written unless everything succeeded: on any error the model
        and the optimizer are as they were before the call.

        Raises:
          GradientStructureError: the model passed does not match the
            optimizer's, or the gradients miss a selected path, have one that
            is not selected, or have a different shape; the message names the
            first such path.
        """
        if len(args) == 2:
            model, grads = args
        elif len(args) == 1:
            model, grads = self.model, args[0]
            if "grads" in kwargs:  # update(model, grads=...)
                model, grads = args[0], kwargs.pop("grads")
        elif not args and "grads" in kwargs:
            model, grads = kwargs.pop("model", self.model), kwargs.pop("grads")
        else:
            raise TypeError(
                f"Optimizer.update takes `(grads)` or `(model, grads)`, got {len(args)} "
                "positional arguments."
            )
        if grads is model or grads is self.model:
            raise TypeError(
                "Optimizer.update got the model where the gradients go (a model's own "
                "Variables would be applied as gradients). Call `optimizer.update(grads)` or "
                "`optimizer.update(model, grads)` with the gradients of the loss."
            )
        sel = self._selection(model)
        cache = self._nnx_optim_cache
        values = sel.values()
        spec = self.__dict__.get("param_spec")
        if spec is not None:
            spec.check(model, sel, values)
        grads_state = sel.treedef.unflatten(grad_values(sel, grads, cache.pred, self.wrt, values))
        extra = {k: grads_state if v is grads else strip_variables(v) for k, v in kwargs.items()}
        params = sel.treedef.unflatten(values)
        opt_vars, opt_treedef, opt_state = read_opt_state(self.opt_state)
        updates, new_opt_state = self.tx.update(grads_state, opt_state, params, **extra)
        new_params = sel.treedef.flatten_up_to(optax.apply_updates(params, updates))
        try:
            new_opt = opt_treedef.flatten_up_to(new_opt_state)
        except (ValueError, TypeError) as e:
            detail = str(e).split("\n", 1)[0][:120]
            raise OptimError(
                f"Optimizer.update: {type(self.tx).__name__}.update returned a state of "
                f"another structure than the optimizer holds (the one its init gave): "
                f"{detail}... Nothing was written. A transformation must keep its state's "
                f"structure from step to step."
            ) from None
        pairs = [
            *((v, x) for v, x in zip(sel.variables, new_params) if isinstance(v, Variable)),
            *zip(opt_vars, new_opt),
            (self.step, self.step.get_value() + 1),
        ]
        if not sel.raw_paths:
            write_all(pairs)
            return
        # raw array attributes: written by nnx.update (which checks before it writes)
        raw = [(sel.paths[i], new_params[i]) for i in sel.raw_paths]
        update_graph(model, State.from_flat(raw))
        try:
            write_all(pairs)
        except BaseException:
            update_graph(model, State.from_flat((sel.paths[i], values[i]) for i in sel.raw_paths))
            raise


class ModelAndOptimizer(Optimizer):
    """A model and its optimizer as one object: ``update(grads)``, and calls go to the model.

    Example::

        state = nnx.ModelAndOptimizer(model, optax.sgd(0.1), wrt=nnx.Param)
        grads = nnx.grad(loss_fn)(model, x, y)
        y = state(x)                 # model(x)
        state.update(grads)          # updates state.model in place

    Unlike :class:`Optimizer`, the model is a full JAX pytree child, so
    ``jax.jit(step)(state)`` carries the model on its own (do not also pass the
    model separately).
    """

    _model_by_reference = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)
