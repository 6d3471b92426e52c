"""``Module``: a Pytree with what models need (submodule iteration, train/eval, sow)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp

from nnx.core._filters import to_predicate
from nnx.core._graph_mode import resolve_graph_mode
from nnx.core._graph_tools import _node_items, recursive_map
from nnx.core._pytree import Dict, List, Pytree, is_user_container
from nnx.core._pytree_marks import trace_checks_off
from nnx.core._variables import Intermediate, Perturbation, Variable
from nnx.core._walk import _children, iter_graph, require_tree

_missing = object()
N = TypeVar("N")


class Module(Pytree):
    """Base class of models and layers.

    Example::

        class MLP(nnx.Module):
            def __init__(self, din, dmid, dout, *, rngs: nnx.Rngs):
                self.w1 = nnx.Param(rngs.normal((din, dmid)))
                self.w2 = nnx.Param(rngs.normal((dmid, dout)))

            def __call__(self, x):
                return jax.nn.relu(x @ self.w1) @ self.w2

        model = MLP(2, 16, 1, rngs=nnx.Rngs(0))
        y = model(jnp.ones((4, 2)))

    Submodules may be held directly or inside lists, dicts and tuples, shared
    between parents, and replaced at any time (model surgery).
    """

    def iter_modules(self) -> Iterator[tuple[tuple, Module]]:
        """Yield ``(path, module)`` for this module and every submodule, each once.

        Submodules come before their parents; ``self`` comes last with path ``()``.
        """
        for path, x in iter_graph(self):
            if isinstance(x, Module) or is_user_container(x):  # Flax's List/Dict are Modules
                yield path, x

    def iter_children(self) -> Iterator[tuple[Any, Any]]:
        """Yield ``(name, child)`` for the direct children that are graph nodes
        (submodules, Variables, ``nnx.List``/``nnx.Dict``), as :func:`nnx.iter_children`."""
        return iter_children(self)

    def set_attributes(
        self,
        *filters: type | Callable[[Module], bool],
        raise_if_not_found: bool = True,
        **attributes: Any,
    ) -> None:
        """Set attributes on every submodule (and self) that already has them.

        Example::

            model.set_attributes(deterministic=True, use_running_average=True)
            model.set_attributes(nnx.Dropout, rate=0.2)   # only Dropout layers

        Args:
          *filters: module types or predicates that select the modules; all
            modules when empty.
          raise_if_not_found: raise if no module has one of the attributes.
        """
        found = set()
        for _, module in self.iter_modules():
            if not isinstance(module, Module):  # an nnx.List / nnx.Dict: no attributes
                continue
            if filters and not any(
                isinstance(module, f) if isinstance(f, type) else f(module) for f in filters
            ):
                continue
            for name, value in attributes.items():
                if hasattr(module, name):
                    setattr(module, name, value)
                    found.add(name)
        missing = set(attributes) - found
        if missing and raise_if_not_found:
            raise AttributeError(
                f"set_attributes: no module in {type(self).__name__} has "
                f"{sorted(missing)}. Pass raise_if_not_found=False to ignore."
            )

    def train(self, **attributes: Any) -> None:
        """Training mode: ``deterministic=False``, ``use_running_average=False``."""
        self.set_attributes(
            deterministic=False,
            use_running_average=False,
            **attributes,
            raise_if_not_found=False,
        )

    def eval(self, **attributes: Any) -> None:
        """Evaluation mode: ``deterministic=True``, ``use_running_average=True``."""
        self.set_attributes(
            deterministic=True,
            use_running_average=True,
            **attributes,
            raise_if_not_found=False,
        )

    def sow(
        self,
        variable_type: type[Variable] | str,
        name: str,
        value: Any,
        reduce_fn: Callable[[Any, Any], Any] = lambda xs, x: (*xs, x),
        init_fn: Callable[[], Any] = lambda: (),
    ) -> None:
        """Record an intermediate value in a Variable attribute ``name``.

        Example::

            class Block(nnx.Module):
                def __call__(self, x):
                    y = x * 2
                    self.sow(nnx.Intermediate, "doubled", y)
                    return y

            block = Block(); block(jnp.ones(2)); block(jnp.ones(2))
            block.doubled[...]   # (Array([2., 2.]), Array([2., 2.]))
            nnx.pop(block, nnx.Intermediate)   # takes them out again

        By default values accumulate in a tuple; ``reduce_fn``/``init_fn``
        change that.
        """
        if isinstance(variable_type, str):
            variable_type = Intermediate
        current = self.__dict__.get(name, _missing)
        if current is _missing:
            setattr(self, name, variable_type(reduce_fn(init_fn(), value)))
            return
        if not isinstance(current, variable_type):
            raise ValueError(
                f"sow: {type(self).__name__}.{name} holds a {type(current).__name__}, "
                f"not a {variable_type.__name__}; choose another name."
            )
        current.set_value(reduce_fn(current.get_value(), value))

    def perturb(
        self, name: str, value: Any, variable_type: type[Variable] | str = Perturbation
    ) -> Any:
        """Add a zero-valued Variable ``name`` to an intermediate value, to get its gradient.

        Example::

            class Model(nnx.Module):
                def __call__(self, x):
                    h = self.linear1(x)
                    h = self.perturb("h_grad", h)   # h + 0 on the first call
                    return self.linear2(h)

            model(x)                      # a sample run creates model.h_grad (zeros)
            # the gradient with respect to model.h_grad (an nnx.Perturbation) is the
            # gradient with respect to the intermediate h

        The first call creates ``variable_type(zeros_like(value))`` (shape and
        dtype of ``value``) and returns ``value`` plus it; differentiate with
        respect to the Perturbation Variables (``nnx.DiffState(0, nnx.Any(nnx.Param,
        nnx.Perturbation))``) to read intermediate gradients. A Variable of another
        kind already at ``name`` is a ``ValueError``. It costs memory of the size
        of ``value``: use it to debug gradients.
        """
        if isinstance(variable_type, str):
            variable_type = Perturbation
        current = self.__dict__.get(name, _missing)
        if current is _missing:
            current = variable_type(jax.tree.map(jnp.zeros_like, value))
            setattr(self, name, current)
        if not isinstance(current, variable_type):
            raise ValueError(
                f"perturb: {type(self).__name__}.{name} holds a {type(current).__name__}, "
                f"not a {variable_type.__name__}; choose another name."
            )
        return jax.tree.map(lambda p, v: p + v, current.get_value(), value)


def _direct_children(key, value, seen):
    # graph nodes, as in Flax NNX; nnx: the lists and dicts that attributes hold too
    if isinstance(value, (Pytree, Variable, List, Dict)):
        if id(value) not in seen:
            seen.add(id(value))
            yield key, value
    elif isinstance(value, (list, tuple)):  # nnx: a plain list of modules is data too
        for i, v in enumerate(value):
            yield from _direct_children(
                (key, i) if not isinstance(key, tuple) else (*key, i), v, seen
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _direct_children(
                (key, k) if not isinstance(key, tuple) else (*key, k), v, seen
            )


def iter_children(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple[Any, Any]]:
    """Yield ``(key, child)`` for each direct child of ``node`` that is a graph node.

    Graph nodes are submodules (any Pytree), Variables and ``nnx.List``/``nnx.Dict``,
    as in Flax NNX; a child shared by two attributes is yielded once, and the
    children inside a plain list, tuple or dict attribute are yielded with the key
    ``(attribute, index)``. :func:`iter_module_children` keeps the modules only.

    >>> import nnx
    >>> model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    >>> print(*(k for k, _ in nnx.iter_children(model)))
    bias kernel

    Args:
      node: a graph node (a module, ``nnx.List``, ``nnx.Dict``).
      graph: Flax NNX's argument: False (tree mode) also checks that ``node`` is a
        tree (a Variable reachable twice is an :class:`nnx.AliasingError`); the
        children are the same.
    """
    if not resolve_graph_mode(graph).graph:
        require_tree(node, "nnx.iter_children")
    seen: set[int] = set()
    for key, value in _children(node):
        yield from _direct_children(key, value, seen)


def iter_modules(node: Module) -> Iterator[tuple[tuple, Module]]:
    """Functional form of :meth:`Module.iter_modules`."""
    return node.iter_modules()


def iter_module_children(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple]:
    """Yield ``(key, module)`` for each direct child of ``node`` that is a Module.

    Example::

        for name, layer in nnx.iter_module_children(model):
            print(name, type(layer).__name__)

    Only ``node``'s own attributes (or items, for a list or dict) are looked
    at; submodules inside a list attribute are children of that list. ``graph``
    is accepted for Flax's signature; the children are the same in graph and
    tree mode.
    """
    del graph
    if not isinstance(node, (Pytree, list, tuple, dict)):
        raise ValueError(
            f"iter_module_children: expected a graph node (a Module, list or dict), got "
            f"{type(node).__name__}."
        )
    for k, v in _node_items(node):
        if isinstance(v, Module) or is_user_container(v):  # Flax's List and Dict are Modules
            yield k, v


def _on_selected_modules(
    node, only, graph, names, visit: Callable[[Module], Iterable[str]]
) -> tuple[Any, set[str]]:
    """The body of :func:`with_attributes` and :func:`view`: copy the structure of
    ``node`` (``recursive_map``: Variables shared) and call ``visit`` on each copied
    Module that the filter ``only`` selects. ``visit`` returns the names it used;
    the result is the copy and the ``names`` that no ``visit`` used."""
    pred = to_predicate(only)
    remaining = set(names)

    def apply(path, x):
        if isinstance(x, Module) and pred(path, x):
            remaining.difference_update(visit(x))
        return x

    return recursive_map(apply, node, graph=graph), remaining


def with_attributes(
    node: N,
    /,
    *,
    only: Any = ...,
    raise_if_not_found: bool = True,
    graph: bool | None = None,
    **attributes: Any,
) -> N:
    """A new graph whose Modules (those ``only`` selects) have ``attributes`` set.

    Example::

        eval_model = nnx.with_attributes(model, deterministic=True, use_running_average=True)
        print(model.dropout.deterministic, eval_model.dropout.deterministic)   # False True
        print(model.bn.use_running_average, eval_model.bn.use_running_average)   # False True
        # the structure is copied, the Variables are shared:
        print(eval_model.linear1.kernel is model.linear1.kernel)   # True

        only_bn = nnx.with_attributes(model, use_running_average=True, only=nnx.BatchNorm)
        print(only_bn.bn.use_running_average)   # True

    Unlike :meth:`Module.set_attributes`, the original graph is left alone: the
    structure is copied and the Variables (and arrays) are shared. Only Modules
    that already have an attribute get it. With ``raise_if_not_found`` (the
    default) an attribute that no selected Module has is a ``ValueError``.
    ``only`` is a filter over ``(path, module)``.
    """

    def set_on(module: Module) -> Iterable[str]:
        found = [name for name in attributes if hasattr(module, name)]
        for name in found:
            setattr(module, name, attributes[name])
        return found

    out, remaining = _on_selected_modules(node, only, graph, attributes, set_on)
    if remaining and raise_if_not_found:
        raise ValueError(
            f"with_attributes: no selected Module has {sorted(remaining)}. Check the "
            "names, or pass raise_if_not_found=False."
        )
    return out


def _view_params(method) -> tuple[set[str], bool]:
    params = inspect.signature(method).parameters.values()
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return named, var_kw


def view(
    node: N,
    /,
    *,
    only: Any = ...,
    raise_if_not_found: bool = True,
    graph: bool | None = None,
    **kwargs: Any,
) -> N:
    """A new graph in another mode: each Module's ``set_view`` gets the kwargs it takes.

    Example::

        class Noisy(nnx.Module):
            def __init__(self, rngs):
                self.scale = nnx.Param(jnp.ones(3))
                self.rngs = rngs
                self.deterministic = False

            def set_view(self, deterministic: bool | None = None):
                if deterministic is not None:
                    self.deterministic = deterministic

            def __call__(self, x):
                noise = 0 if self.deterministic else jax.random.normal(self.rngs(), x.shape)
                return self.scale * x + noise

        model = nnx.Sequential(Noisy(nnx.Rngs(0)), Noisy(nnx.Rngs(1)))
        train_model = nnx.view(model, deterministic=False)
        eval_model = nnx.view(model, deterministic=True)
        print(eval_model(jnp.ones(3)))                              # [1. 1. 1.]
        # both views share the Variables (and the original's):
        print(train_model.layers[0].scale is eval_model.layers[0].scale)   # True
        print(model.layers[0].deterministic)                         # False
        try:
            nnx.view(model, use_running_average=True)                # no set_view takes it
        except ValueError as e:
            print(type(e).__name__)                                  # ValueError

    The structure is copied and the Variables are shared, so both views train
    the same parameters. Every Module that ``only`` selects and that defines
    ``set_view(self, ...)`` is called with the kwargs its signature names (all
    of them if it takes ``**kwargs``). A kwarg that no ``set_view`` takes is a
    ``ValueError`` (unless ``raise_if_not_found=False``). :func:`view_info`
    lists what each Module accepts.
    """

    def apply(module: Module) -> Iterable[str]:
        set_view = getattr(module, "set_view", None)
        if not callable(set_view):
            return ()
        named, var_kw = _view_params(set_view)
        if var_kw:
            set_view(**kwargs)
            return kwargs
        set_view(**{k: v for k, v in kwargs.items() if k in named})
        return named

    out, remaining = _on_selected_modules(node, only, graph, kwargs, apply)
    if raise_if_not_found and remaining:
        raise ValueError(
            f"nnx.view: no Module's set_view takes {sorted(remaining)}. "
            "nnx.view_info(model) lists the arguments each Module accepts."
        )
    return out


def view_info(node: Module, /, *, only: Any = ..., graph: bool | None = None) -> str:
    """What :func:`view` accepts for ``node``: each Module class with a ``set_view``,
    its arguments (name, annotation, default) and their documentation.

    Example::

        print(nnx.view_info(model))
        # Dropout:
        #   deterministic: bool | None = None
        #     if True, disables dropout masking.
    """
    pred = to_predicate(only)
    classes: set[type] = set()
    del graph
    for path, x in iter_graph(node):
        if isinstance(x, Module) and callable(getattr(x, "set_view", None)) and pred(path, x):
            classes.add(type(x))
    lines: list[str] = []
    for cls in sorted(classes, key=lambda c: c.__qualname__):
        lines.append(f"{cls.__qualname__}:")
        method = cls.set_view  # type: ignore[attr-defined]
        sig = inspect.signature(method)
        docs = _arg_docs(inspect.getdoc(method))
        if docs is None:
            lines.append(f"  set_view{sig}")
            continue
        for name, p in sig.parameters.items():
            if name in ("self", "args", "kwargs"):
                continue
            annotation = p.annotation if p.annotation is not inspect.Parameter.empty else ""
            head = f"  {name}: {annotation}" if annotation != "" else f"  {name}"
            if p.default is not inspect.Parameter.empty:
                head += f" = {p.default}"
            lines.append(head)
            if name in docs:
                lines.append(docs[name])
    return "\n".join(lines)


def _arg_docs(doc: str | None) -> dict[str, str] | None:
    """The ``Args:`` entries of a Google-style docstring, each indented by four spaces."""
    if not doc:
        return None
    start = doc.find("Args:\n")
    if start == -1:
        return {}
    body = doc[start + len("Args:\n") :]
    end = body.find("Returns:\n")
    if end != -1:
        body = body[:end]
    out: dict[str, list[str]] = {}
    current = None
    for line in body.split("\n"):
        if line.startswith("  ") and not line.startswith("    ") and ":" in line:
            name, _, rest = line.strip().partition(":")
            current = name.strip()
            out[current] = ["    " + rest.strip()]
        elif current is not None and line.strip():
            out[current].append("    " + line.strip())
    return {k: "\n".join(v) for k, v in out.items()}


def capture(
    fn: Any,
    *var_types: type[Variable],
    init: Any = None,
    method_outputs: type[Variable] | None = None,
) -> Callable:
    """Wrap ``fn`` so that it also returns the intermediates sown during the call.

    Example::

        class Foo(nnx.Module):
            def __call__(self, x):
                self.sow(nnx.Intermediate, "features", x)
                return 2 * x

        forward = nnx.capture(Foo(), nnx.Intermediate)
        y, intermediates = forward(x)      # intermediates["features"]: Intermediate((x,))

    ``fn`` is a Module (its ``__call__``), a bound method of a Module, or a
    function whose first argument is the Module. Each of ``var_types`` gives one
    State in the result, ``(result, state)`` for one type and ``(result,
    *states)`` for several (only ``result`` for none); values of those types
    sown (``Module.sow``) or perturbed (``Module.perturb``) during the call are
    taken out of the model and returned, keyed by module path and name, so the
    model holds none of them afterwards (those it held before are put back).
    ``init`` (a State, such as one a previous capture returned) provides the
    starting values, e.g. the Perturbation values to differentiate.
    ``method_outputs`` (a Variable type) also records the output of every
    public method and ``__call__`` of every Module, under the method's name.
    Called with a Variable type first (``nnx.capture(nnx.Intermediate)``), it
    returns a decorator.
    """
    if isinstance(fn, type) and issubclass(fn, Variable):
        types = (fn, *var_types)

        def decorator(actual):
            return capture(actual, *types, init=init, method_outputs=method_outputs)

        return decorator
    bound = None
    if isinstance(fn, Module):
        bound = fn
    elif inspect.ismethod(fn) and isinstance(fn.__self__, Module):
        bound = fn.__self__
    kinds = tuple(var_types) + ((method_outputs,) if method_outputs is not None else ())
    call = cast(Callable, fn)

    def wrapper(*args, **kwargs):
        with trace_checks_off():  # every write below is undone before it returns
            return run(*args, **kwargs)

    def run(*args, **kwargs):
        from nnx.core._state import State

        module = bound if bound is not None else args[0]
        exact = [_exactly(t) for t in kinds]
        held = _pop_all(module, exact)  # put back afterwards
        if init is not None:
            _plant(module, init)
        recorded: dict[tuple, list] = {}
        patched = _record_methods(module, recorded) if method_outputs is not None else []
        try:
            result = call(*args, **kwargs)
        finally:
            for cls, name, original in patched:
                setattr(cls, name, original)
        for (path, name), outputs in recorded.items():
            assert method_outputs is not None
            _plant(module, State.from_flat([((*path, name), method_outputs(tuple(outputs)))]))
        taken = _pop_all(module, exact)
        for state in held:
            _plant(module, state)
        if not var_types:
            return result
        states = taken[: len(var_types)]
        return (result, states[0]) if len(var_types) == 1 else (result, *states)

    return wrapper


def _pop_all(module: Module, filters: list) -> tuple:
    """``nnx.pop`` with one State per filter, always as a tuple."""
    from nnx.core._graph import pop
    from nnx.core._state import State

    if not filters:
        return ()
    out = pop(module, *filters)
    return (out,) if isinstance(out, State) else tuple(out)


def _plant(module: Module, state) -> None:
    """Put each Variable of ``state`` at its path (the Modules on the way must exist)."""
    from nnx.core._state import State

    state = state if isinstance(state, State) else State(state)
    for path, leaf in state.flat_state():
        owner: Any = module
        for k in path[:-1]:
            owner = owner[k] if isinstance(owner, (list, tuple, dict)) else getattr(owner, k)
        setattr(owner, path[-1], leaf.copy() if isinstance(leaf, Variable) else Intermediate(leaf))


def _exactly(t: type) -> Callable:
    return lambda path, x: type(x) is t  # noqa: ARG005


def _record_methods(module: Module, recorded: dict) -> list:
    # the Modules only (iter_modules also yields nnx.List/nnx.Dict, whose list and
    # dict methods are not a model's methods)
    modules = [(p, m) for p, m in module.iter_modules() if isinstance(m, Module)]
    paths = {id(m): p for p, m in modules}
    patched = []
    for cls in {type(m) for _, m in modules}:
        for name, method in list(vars(cls).items()):
            if not callable(method) or isinstance(method, type):
                continue
            if name.startswith("_") and name != "__call__":
                continue

            def wrapped(self, *a, _method=method, _name=name, **k):
                out = _method(self, *a, **k)
                path = paths.get(id(self))
                if path is not None:
                    recorded.setdefault((path, _name), []).append(out)
                return out

            patched.append((cls, name, method))
            setattr(cls, name, wrapped)
    return patched
