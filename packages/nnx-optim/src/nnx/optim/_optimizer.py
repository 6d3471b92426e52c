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
moments, accumulated gradients) is held by one ``OptState`` Variable as the
flat list of its arrays (``OptState.tree`` gives the ``State`` back), every
other array (counts, injected hyperparameters) by its own. The number of
Variables therefore does not grow with the model: with hijax Variables each
one is a separate argument of ``jax.jit`` (about 10 µs of dispatch each on
CPU), and in every mode each is an object on the ``nnx.jit`` fast path. A flat
list rather than nested dicts, because ``jax.jit`` flattens dicts key by key
on every call (measured: about 4x the cost of a list of the same arrays, ~1 µs
per call for one layer, ~100 µs for 300).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from nnx.core import (
    FlattenCache,
    Param,
    Pytree,
    State,
    Variable,
    flatten,
    graph_ref,
    is_graph_node,
    to_predicate,
)
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

    @property
    def tree(self) -> Any:
        """The value as optax sees it: a param-shaped subtree as an ``nnx.State``.

        Example::

            optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
            optimizer.opt_state[0].mu.value           # [Array, ...]: the flat storage
            optimizer.opt_state[0].mu.tree["linear1"] # State({'bias': ..., 'kernel': ...})
            optimizer.opt_state[0].count.tree         # Array(0, dtype=int32): other arrays as is
        """
        return _read(self)


# -- paths ---------------------------------------------------------------------
def _sort_key(k):
    # The order State uses for its keys: integers first, then names.
    return (0, k, "") if isinstance(k, int) else (1, 0, str(k))


def _path_key(path: tuple) -> tuple:
    return tuple(_sort_key(k) for k in path)


def _keystr(path: tuple) -> str:
    return "/".join(str(k) for k in path) or "<root>"


def _filter_name(wrt) -> str:
    return getattr(wrt, "__name__", None) or repr(wrt)


def _is_variable(x) -> bool:
    return isinstance(x, Variable)


def _is_state(x) -> bool:
    return isinstance(x, State)


# -- the Variables an optimizer updates ----------------------------------------
class Selection:
    """The Variables of one model graph that ``wrt`` selects, in State path order.

    ``treedef`` is the pytree structure of the State that optax sees (one leaf
    per Variable), so values go in and out with ``treedef.unflatten`` and
    ``treedef.flatten_up_to`` (C++ calls, no Python loop over the tree).
    """

    __slots__ = ("paths", "variables", "treedef")

    def __init__(self, items: list[tuple[tuple, Variable]]):
        items.sort(key=lambda item: _path_key(item[0]))
        self.paths = tuple(p for p, _ in items)
        self.variables = tuple(v for _, v in items)
        self.treedef = jax.tree.structure(State.from_flat((p, 0) for p in self.paths))

    def values(self) -> list:
        """The current values, in order."""
        return [v.get_value() for v in self.variables]

    def write(self, new: Any) -> None:
        for v, x in zip(self.variables, self.treedef.flatten_up_to(new)):
            v.set_value(x)


def select(model: Any, pred, flat=None) -> Selection:
    """The Variables of ``model`` matched by the predicate ``pred``."""
    if flat is None:
        flat = flatten((model,))
    items = []
    for path, x in zip(flat.graphdef.paths, flat.leaves):
        if isinstance(x, Variable):
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
class StateStructure:
    """The pytree structure of one param-shaped optax subtree (``OptState`` metadata).

    Such a subtree is stored as the flat list of its arrays: ``jax.jit`` flattens a
    list several times faster than nested dicts (which it sorts key by key), and
    this structure rebuilds the ``State`` optax expects. It is hashable (part of
    a GraphDef) and prints briefly.
    """

    __slots__ = ("treedef",)

    def __init__(self, treedef: Any):
        self.treedef = treedef

    def __eq__(self, other: object) -> bool:
        return type(other) is StateStructure and self.treedef == other.treedef

    def __hash__(self) -> int:
        return hash(self.treedef)

    def __repr__(self) -> str:
        return f"<{self.treedef.num_leaves} arrays in the parameters' structure>"


def storage_mode(variables) -> dict:
    """``hijax=``/``ref=`` keywords for new Variables stored like ``variables``.

    The optimizer's state must cross the same boundaries as the model (a plain
    ``jax.jit`` carries writes only to ref or hijax Variables), so it follows the
    model's mode even when ``nnx.var_defaults()`` says otherwise; models mixing
    modes get the defaults.
    """
    modes = {(v.hijax, v.ref) for v in variables}
    if len(modes) != 1:
        return {}
    hijax, ref = modes.pop()
    return {"hijax": hijax, "ref": ref}


def wrap_opt_state(raw: Any, mode: dict) -> Any:
    """The optax state with each param-shaped State and each other array in an OptState.

    A param-shaped State is stored as the list of its arrays, with its structure
    in the ``state_tree`` metadata (see :class:`StateStructure`); optax sees the
    State again in ``update``. ``mode`` is what :func:`storage_mode` returns.
    """

    def wrap(x):
        if isinstance(x, State):
            leaves, treedef = jax.tree.flatten(x)
            return OptState(leaves, state_tree=StateStructure(treedef), **mode)
        return OptState(jnp.asarray(x), **mode)

    return jax.tree.map(wrap, raw, is_leaf=_is_state)


def _read(v: Variable) -> Any:
    value = v.get_value()
    structure = v.get_metadata("state_tree")
    return value if structure is None else structure.treedef.unflatten(value)


def _write(v: Variable, x: Any) -> None:
    structure = v.get_metadata("state_tree")
    v.set_value(x if structure is None else structure.treedef.flatten_up_to(x))


def read_opt_state(wrapped: Any) -> Any:
    return jax.tree.map(_read, wrapped, is_leaf=_is_variable)


def write_opt_state(wrapped: Any, raw: Any) -> None:
    jax.tree.map(_write, wrapped, raw, is_leaf=_is_variable)


_MISSING = object()


class Optimizer(Pytree):
    """An optax transformation that updates a model's Variables in place.

    Example::

        model = MLP(2, 16, 1, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

        @nnx.jit
        def train_step(model, optimizer, x, y):
            grads = nnx.grad(lambda m: ((m(x) - y) ** 2).mean())(model)
            optimizer.update(model, grads)     # or optimizer.update(grads)

        train_step(model, optimizer, x, y)
        optimizer.step.value                   # Array(1, dtype=uint32)

    ``update(grads)`` uses the model given here; ``update(model, grads)`` the
    one passed (the traced copy inside a plain ``jax.jit``). Gradients may be an
    ``nnx.State`` (of Variables or arrays), a nested dict of arrays, or a
    module-shaped tree of Variables such as ``jax.grad`` returns for
    ``nnx.vars_as(model, mutable=False)``; entries not selected by ``wrt`` are
    ignored when they are Variables. Extra keyword arguments of ``update`` go
    to ``tx.update`` (``value=``, ``grad=``, ``value_fn=`` for optax line
    searches).

    Attributes:
      model: the model (a reference, shared with the caller's).
      tx: the optax transformation (static).
      wrt: the filter selecting the updated Variables (static).
      step: ``OptState`` uint32 count of updates.
      opt_state: the optax state, with optax's own structure (namedtuples,
        tuples for chains); its arrays live in ``OptState`` Variables, so
        ``optimizer.opt_state.hyperparams['learning_rate'][...] = 1e-4`` changes
        an ``optax.inject_hyperparams`` hyperparameter between steps (inside a
        chain: ``opt_state[i].hyperparams``), also between jitted steps without
        retracing.

    The ``OptState`` Variables are stored like the model's selected Variables
    (plain, ref or hijax), whatever ``nnx.var_defaults()`` says, so the
    optimizer crosses the same JAX boundaries as its model.

    Args:
      model: the object graph holding the Variables to optimize.
      tx: any ``optax.GradientTransformation`` (chains, ``optax.MultiSteps``,
        schedules, ``inject_hyperparams``, ``GradientTransformationExtraArgs``).
      wrt: a filter (default ``nnx.Param``); e.g. ``nnx.LoRAParam`` to train
        only LoRA adapters. Only Variables are updated, never raw arrays.
    """

    __slots__ = ("_nnx_optim_cache",)

    opt_state: Any  # set in __init__ through __dict__ (keeps optax's node types)

    # As a JAX pytree the model is a reference (see the module docstring).
    _model_by_reference = True

    def __init__(self, model: Any, tx: optax.GradientTransformation, *, wrt: Any = Param):
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
                f"Optimizer: {type(model).__name__} has no Variable matching "
                f"wrt={_filter_name(wrt)}, so there is nothing to optimize. Check the filter "
                f"(e.g. `wrt=nnx.Param`)."
            )
        mode = storage_mode(sel.variables)
        self.step = OptState(jnp.array(0, dtype=jnp.uint32), **mode)
        # Bypass the tracking of plain dicts/lists in data attributes: the optax
        # state must keep its exact node types for tx.update.
        Pytree.__setattr__(self, "opt_state", None)
        raw = tx.init(sel.treedef.unflatten(sel.values()))
        self.__dict__["opt_state"] = wrap_opt_state(raw, mode)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "wrt":
            object.__setattr__(self, "_nnx_optim_cache", None)
        super().__setattr__(name, value)

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
        """Apply one optax step: ``update(grads)`` or ``update(model, grads)``.

        Example::

            grads = nnx.grad(loss_fn)(model, x, y)
            optimizer.update(grads)               # the model given to the constructor
            optimizer.update(model, grads)        # an explicit (e.g. traced) model
            # optax line searches (optax.lbfgs) take more: update(model, grads, value=loss,
            # grad=grads, value_fn=f)

        Inside a plain ``jax.jit`` that takes the model as an argument, use
        ``update(model, grads)`` with that traced model: ``update(grads)`` writes
        into the caller's model, which the trace also receives, and JAX rejects
        that for ref Variables and drops the write for hijax ones.

        Raises:
          GradientStructureError: the gradients miss a selected path, have one
            that is not selected, or have a different shape; the message names
            the first such path.
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
        grads_state = sel.treedef.unflatten(grad_values(sel, grads, cache.pred, self.wrt, values))
        params = sel.treedef.unflatten(values)
        opt_state = read_opt_state(self.opt_state)
        updates, new_opt_state = self.tx.update(grads_state, opt_state, params, **kwargs)
        sel.write(optax.apply_updates(params, updates))
        write_opt_state(self.opt_state, new_opt_state)
        self.step[...] = self.step[...] + 1


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
