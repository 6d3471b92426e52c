"""``Module``: a Pytree with what models need (submodule iteration, train/eval, sow)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from nnx.core._graph import _children, iter_graph
from nnx.core._pytree import Pytree
from nnx.core._variables import Intermediate, Variable

_missing = object()


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
            if isinstance(x, Module):
                yield path, x

    def iter_children(self) -> Iterator[tuple[Any, Module]]:
        """Yield ``(name, module)`` for the direct submodules (also inside containers)."""
        seen: set[int] = set()
        for key, value in _children(self):
            yield from _direct_modules(key, value, seen)

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


def _direct_modules(key, value, seen):
    if isinstance(value, Module):
        if id(value) not in seen:
            seen.add(id(value))
            yield key, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _direct_modules(
                (key, i) if not isinstance(key, tuple) else (*key, i), v, seen
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _direct_modules(
                (key, k) if not isinstance(key, tuple) else (*key, k), v, seen
            )


def iter_children(node: Module) -> Iterator[tuple[Any, Module]]:
    """Functional form of :meth:`Module.iter_children`."""
    return node.iter_children()


def iter_modules(node: Module) -> Iterator[tuple[tuple, Module]]:
    """Functional form of :meth:`Module.iter_modules`."""
    return node.iter_modules()
