"""``deprecated``: an alias of a renamed function that warns on every call (Flax's nnx.deprecations)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def deprecated(new_fn: F) -> F:
    """A deprecated alias of ``new_fn``: each call warns, then calls ``new_fn``.

    The alias keeps ``new_fn``'s name, signature and annotations (so IDEs and type
    checkers see the new function) and its docstring starts with a deprecation
    notice that names the replacement. Each call emits a :class:`DeprecationWarning`
    attributed to the caller's line.

    Example::

        >>> import warnings
        >>> from nnx.deprecations import deprecated
        >>> def new_api(x):
        ...     return x * 2
        >>> old_api = deprecated(new_api)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     old_api(3)
        6
        >>> print(caught[0].category.__name__, caught[0].message)
        DeprecationWarning This function is deprecated. Use new_api instead.
    """
    if not callable(new_fn):
        raise TypeError(
            f"nnx.deprecations.deprecated needs the function that replaces the old name, "
            f"got {type(new_fn).__name__} {new_fn!r}."
        )
    name = getattr(new_fn, "__qualname__", None) or getattr(new_fn, "__name__", repr(new_fn))

    @functools.wraps(new_fn)
    def wrapper(*args, **kwargs):
        warnings.warn(
            f"This function is deprecated. Use {name} instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return new_fn(*args, **kwargs)

    notice = f".. deprecated::\n   Use :func:`{name}` instead.\n\n"
    wrapper.__doc__ = notice + (new_fn.__doc__ or "")
    return wrapper  # type: ignore[return-value]
