"""Filters: which Variables a function applies to.

A filter is anything :func:`to_predicate` turns into a ``(path, value) ->
bool`` predicate:

=====================  ==============================================
filter                 matches
=====================  ==============================================
a Variable type        Variables of that kind (``nnx.Param``)
a string               paths that contain that component (``'bias'``),
                       and Variables tagged with it (a random stream's
                       name: ``'dropout'``, as Flax's string filters)
a callable             whatever it returns True for
``...`` / ``True``     everything
``False`` / ``None``   nothing
a list or tuple        any of its filters
=====================  ==============================================

Combinators: :class:`All`, :class:`Any`, :class:`Not`, :class:`PathContains`,
:class:`OfType`, :class:`WithTag`, :data:`Everything`, :data:`Nothing`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any as _Any
from typing import cast, overload

from nnx.core._errors import FilterError

Path = tuple
Predicate = Callable[[Path, _Any], bool]
Filter = _Any


class OfType:
    """Values that are instances of ``type`` (Variables of a kind, modules of a class).

    As in Flax NNX, a value whose ``type`` attribute is a subclass of ``type`` matches
    too: ``nnx.VariableState(type=nnx.Param, value=0)`` is a Param for this filter.
    """

    def __init__(self, type: type):
        self.type = type

    def __call__(self, path, x) -> bool:  # noqa: ARG002
        if isinstance(x, self.type):
            return True
        # a Variable: its metadata, not its value's attributes (a slow miss)
        get_metadata = getattr(builtins.type(x), "get_metadata", None)
        kind = (
            get_metadata(x, "type", None) if get_metadata is not None else getattr(x, "type", None)
        )
        return isinstance(kind, builtins.type) and issubclass(kind, self.type)

    def __repr__(self):
        return f"OfType({self.type.__name__})"

    def __eq__(self, other):
        return isinstance(other, OfType) and self.type == other.type

    def __hash__(self):
        return hash((OfType, self.type))


class PathContains:
    """Paths that contain ``key`` as one of their components.

    With ``exact=False`` a component matches when ``str(key)`` is a substring of
    ``str(component)``: ``PathContains("attn", exact=False)`` matches
    ``("layers", 0, "self_attn", "kernel")``.
    """

    def __init__(self, key, exact: bool = True):
        self.key = key
        self.exact = exact

    def __call__(self, path, x) -> bool:  # noqa: ARG002
        if self.exact:
            return self.key in path
        key = str(self.key)
        return builtins.any(key in str(p) for p in path)

    def __repr__(self):
        return (
            f"PathContains({self.key!r})"
            if self.exact
            else (f"PathContains({self.key!r}, exact=False)")
        )

    def __eq__(self, other):
        return (
            isinstance(other, PathContains) and self.key == other.key and self.exact == other.exact
        )

    def __hash__(self):
        return hash((PathContains, self.key, self.exact))


class PathIn:
    """Values at exactly one of the given paths.

    ``PathIn(("linear", "kernel"), ("bias",))`` matches the leaves at those two paths
    and nothing below or above them (compare :class:`PathContains`, which matches a
    component anywhere in the path).

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> state = nnx.State({"linear": {"kernel": jnp.ones(2), "bias": jnp.zeros(2)}})
    >>> state.filter(nnx.PathIn(("linear", "kernel"))).flat_state().paths
    (('linear', 'kernel'),)
    """

    def __init__(self, *paths: tuple):
        self.paths = frozenset(tuple(p) for p in paths)
        self._order = tuple(dict.fromkeys(tuple(p) for p in paths))  # for the repr

    def __call__(self, path, x) -> bool:  # noqa: ARG002
        return tuple(path) in self.paths

    def __repr__(self):
        return f"PathIn({', '.join(map(repr, self._order))})"

    def __eq__(self, other):
        return isinstance(other, PathIn) and self.paths == other.paths

    def __hash__(self):
        return hash((PathIn, self.paths))


class WithTag:
    """Values whose ``tag`` metadata equals ``tag`` (random streams carry their name)."""

    def __init__(self, tag: str):
        self.tag = tag

    def __call__(self, path, x) -> bool:  # noqa: ARG002
        try:
            return getattr(x, "tag", None) == self.tag
        except Exception:
            return False

    def __repr__(self):
        return f"WithTag({self.tag!r})"

    def __eq__(self, other):
        return isinstance(other, WithTag) and self.tag == other.tag

    def __hash__(self):
        return hash((WithTag, self.tag))


class Any:
    """Matches when any of the filters matches."""

    def __init__(self, *filters: Filter):
        self.filters = filters
        self.predicates = tuple(to_predicate(f) for f in filters)

    def __call__(self, path, x) -> bool:
        return builtins.any(p(path, x) for p in self.predicates)

    def __repr__(self):
        return f"Any({_reprs(self.filters)})"

    def __eq__(self, other):
        return isinstance(other, Any) and self.predicates == other.predicates

    def __hash__(self):
        return hash((Any, self.predicates))


class All:
    """Matches when every filter matches."""

    def __init__(self, *filters: Filter):
        self.filters = filters
        self.predicates = tuple(to_predicate(f) for f in filters)

    def __call__(self, path, x) -> bool:
        return builtins.all(p(path, x) for p in self.predicates)

    def __repr__(self):
        return f"All({_reprs(self.filters)})"

    def __eq__(self, other):
        return isinstance(other, All) and self.predicates == other.predicates

    def __hash__(self):
        return hash((All, self.predicates))


class Not:
    """Matches when ``filter`` does not."""

    def __init__(self, filter: Filter):
        self.filter = filter
        self.predicate = to_predicate(filter)

    def __call__(self, path, x) -> bool:
        return not self.predicate(path, x)

    def __repr__(self):
        return f"Not({_reprs((self.filter,))})"

    def __eq__(self, other):
        return isinstance(other, Not) and self.predicate == other.predicate

    def __hash__(self):
        return hash((Not, self.predicate))


def _reprs(filters: tuple) -> str:
    # a combinator prints its filters as predicates (a type as OfType(Name)), except a
    # string, which prints as written: its predicate is the DSL's tag-or-path pair
    return ", ".join(repr(f if isinstance(f, str) else to_predicate(f)) for f in filters)


class _Everything:
    """The filter that matches every Variable (``nnx.Everything``, like ``...`` or ``True``).

    ``nnx.Everything()``, Flax NNX's spelling (a class there), gives the same filter.
    """

    @overload
    def __call__(self) -> _Everything: ...
    @overload
    def __call__(self, path: Path, x: _Any, /) -> bool: ...
    def __call__(self, *args: _Any) -> _Any:
        if not args:
            return self
        return True

    def __repr__(self):
        return "Everything()"


class _Nothing:
    """The filter that matches no Variable (``nnx.Nothing``, like ``False``).

    ``nnx.Nothing()``, Flax NNX's spelling (a class there), gives the same filter.
    """

    @overload
    def __call__(self) -> _Nothing: ...
    @overload
    def __call__(self, path: Path, x: _Any, /) -> bool: ...
    def __call__(self, *args: _Any) -> _Any:
        if not args:
            return self
        return False

    def __repr__(self):
        return "Nothing()"


Everything = _Everything()
Nothing = _Nothing()


def to_predicate(filter: Filter) -> Predicate:
    """Turn any filter form into a ``(path, value) -> bool`` predicate.

    Example::

        is_param = nnx.to_predicate(nnx.Param)
        print(is_param(("linear1", "kernel"), model.linear1.kernel))  # True
    """
    if isinstance(
        filter, (OfType, PathContains, PathIn, WithTag, Any, All, Not, _Everything, _Nothing)
    ):
        return filter
    if filter is Ellipsis or filter is True:
        return Everything
    if filter is False or filter is None:
        return Nothing
    if isinstance(filter, type):
        return OfType(filter)
    if isinstance(filter, str):  # a path component, or a random stream's name (Flax: tag)
        return Any(WithTag(filter), PathContains(filter))
    if isinstance(filter, (list, tuple)):
        return Any(*filter)
    if callable(filter):
        return cast(Predicate, filter)  # a user predicate; its signature is its contract
    raise TypeError(
        f"Invalid filter {filter!r}: use a Variable type, a string, a predicate "
        "(path, value) -> bool, `...`, True/False, a list of filters, or a combinator "
        "(nnx.All, nnx.Any, nnx.Not, nnx.PathContains, nnx.OfType, nnx.WithTag)."
    )


def filters_to_predicates(filters: tuple) -> tuple[Predicate, ...]:
    """Predicates for a list of filters where ``...`` may only come last.

    >>> import nnx
    >>> is_param, rest = nnx.filters_to_predicates((nnx.Param, ...))
    >>> is_param(("w",), nnx.Param(1.0)), is_param(("s",), nnx.BatchStat(1.0)), rest(("s",), 1)
    (True, False, True)
    """
    for i, f in enumerate(filters[:-1]):
        if f is Ellipsis:
            raise FilterError(
                f"`...` matches everything, so it must be the last filter; it is "
                f"filter {i} of {len(filters)}: {filters!r}"
            )
    return tuple(to_predicate(f) for f in filters)


def group_by_filters(pairs, filters: tuple) -> tuple[list[list], list]:
    """Sort ``(path, leaf)`` pairs into one group per filter, the first that matches.

    Returns ``(groups, rest)``: ``groups[i]`` holds the pairs filter ``i`` took, in
    their order, and ``rest`` those no filter matched (for the callers that need
    the filters to be exhaustive: ``nnx.split``, ``State.split``, ``FlatState.split``).
    """
    preds = filters_to_predicates(filters)
    groups: list[list] = [[] for _ in preds]
    rest: list = []
    for pair in pairs:
        path, leaf = pair
        for group, p in zip(groups, preds):
            if p(path, leaf):
                group.append(pair)
                break
        else:
            rest.append(pair)
    return groups, rest
