"""``Rngs``: named random streams whose state is Variables.

A stream is a key and a count (both Variables). Each call returns
``fold_in(key, count)`` and increments the count, so randomness advances
inside transforms exactly like any other state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core._defaults import _current, var_defaults
from nnx.core._filters import to_predicate
from nnx.core._graph_mode import resolve_graph_mode
from nnx.core._pytree import Pytree
from nnx.core._variables import RngCount, RngKey


def _as_key(value) -> jax.Array:
    if isinstance(value, int) and not isinstance(value, bool):
        return jax.random.key(value)
    if not isinstance(value, (jax.Array, np.ndarray, np.generic)):
        raise TypeError(
            f"An Rngs stream needs an int seed or a JAX key, got {type(value).__name__} "
            f"{value!r}. Pass e.g. nnx.Rngs(0) or nnx.Rngs(params=jax.random.key(0))."
        )
    value = jnp.asarray(value) if not isinstance(value, jax.Array) else value
    if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        return value
    if value.dtype == jnp.uint32 and value.shape[-1:] == (2,):
        return jax.random.wrap_key_data(value)  # a legacy jax.random.PRNGKey
    if jnp.issubdtype(value.dtype, jnp.integer):
        return jax.random.key(value)
    raise TypeError(
        f"An Rngs stream needs an int seed or a JAX key, got {value.dtype}{list(value.shape)}."
    )


def _fold_in(key, data):
    if key.ndim == 0:
        return jax.random.fold_in(key, data)
    flat_k, flat_d = key.reshape(-1), jnp.broadcast_to(data, key.shape).reshape(-1)
    return jax.vmap(jax.random.fold_in)(flat_k, flat_d).reshape(key.shape)


if TYPE_CHECKING:

    class _RandomMethods:
        """What type checkers see of the methods `_install_methods` puts on `RngStream`
        and `Rngs` (kept equal to SAMPLERS and INITIALIZERS by a test)."""

        ball: Callable[..., jax.Array]
        bernoulli: Callable[..., jax.Array]
        beta: Callable[..., jax.Array]
        binomial: Callable[..., jax.Array]
        bits: Callable[..., jax.Array]
        categorical: Callable[..., jax.Array]
        cauchy: Callable[..., jax.Array]
        chisquare: Callable[..., jax.Array]
        choice: Callable[..., jax.Array]
        dirichlet: Callable[..., jax.Array]
        double_sided_maxwell: Callable[..., jax.Array]
        exponential: Callable[..., jax.Array]
        f: Callable[..., jax.Array]
        gamma: Callable[..., jax.Array]
        generalized_normal: Callable[..., jax.Array]
        geometric: Callable[..., jax.Array]
        gumbel: Callable[..., jax.Array]
        laplace: Callable[..., jax.Array]
        loggamma: Callable[..., jax.Array]
        logistic: Callable[..., jax.Array]
        lognormal: Callable[..., jax.Array]
        maxwell: Callable[..., jax.Array]
        multinomial: Callable[..., jax.Array]
        multivariate_normal: Callable[..., jax.Array]
        normal: Callable[..., jax.Array]
        orthogonal: Callable[..., jax.Array]
        pareto: Callable[..., jax.Array]
        permutation: Callable[..., jax.Array]
        poisson: Callable[..., jax.Array]
        rademacher: Callable[..., jax.Array]
        randint: Callable[..., jax.Array]
        rayleigh: Callable[..., jax.Array]
        t: Callable[..., jax.Array]
        triangular: Callable[..., jax.Array]
        truncated_normal: Callable[..., jax.Array]
        uniform: Callable[..., jax.Array]
        wald: Callable[..., jax.Array]
        weibull_min: Callable[..., jax.Array]
        delta_orthogonal: Callable[..., Callable[..., jax.Array]]
        glorot_normal: Callable[..., Callable[..., jax.Array]]
        glorot_uniform: Callable[..., Callable[..., jax.Array]]
        he_normal: Callable[..., Callable[..., jax.Array]]
        he_uniform: Callable[..., Callable[..., jax.Array]]
        kaiming_normal: Callable[..., Callable[..., jax.Array]]
        kaiming_uniform: Callable[..., Callable[..., jax.Array]]
        lecun_normal: Callable[..., Callable[..., jax.Array]]
        lecun_uniform: Callable[..., Callable[..., jax.Array]]
        variance_scaling: Callable[..., Callable[..., jax.Array]]
        xavier_normal: Callable[..., Callable[..., jax.Array]]
        xavier_uniform: Callable[..., Callable[..., jax.Array]]

else:
    _RandomMethods = object


class RngStream(Pytree, _RandomMethods):
    """One named random stream: ``stream()`` returns a new key each call.

    Example::

        stream = nnx.Rngs(params=0).params
        k1, k2 = stream(), stream()   # different keys
    """

    def __init__(self, key, *, tag: str):
        key = _as_key(key)
        self.tag = tag  # first: the repr lists attributes in this order, as Flax NNX's
        self.key = RngKey(key, tag=tag)
        self.count = RngCount(jnp.zeros(key.shape, jnp.uint32), tag=tag)

    def __call__(self) -> jax.Array:
        count = self.count[...]
        key = _fold_in(self.key[...], count)
        self.count[...] = count + 1
        return key

    def broadcast(self, k: int | tuple[int, ...]) -> RngStream:
        """A new stream whose key is one new key of this stream repeated to shape ``k``
        (prepended to the key's shape): every member of a map draws the same keys.

        >>> import nnx
        >>> s = nnx.Rngs(0).default.broadcast(3)
        >>> keys = s.key.get_value()
        >>> s.key.shape, bool(keys[0] == keys[2])
        ((3,), True)
        """
        return _broadcast_stream(self, k)

    def fork(self, *, split: int | tuple[int, ...] | None = None) -> RngStream:
        """A new independent stream; with ``split=n`` its key has shape ``(n,)``.

        A split stream exists to be mapped over. Under hijax defaults its key and
        count are stored as refs instead of hijax cells: a plain ``jax.vmap`` or
        ``jax.lax.scan`` maps over refs (and carries their writes), not over cells,
        and a plain ``jax.jit`` carries writes to both.
        """
        key = self()
        if split is None:
            return RngStream(key, tag=self.tag)
        key = jax.random.split(key, split)
        if not _current().hijax:
            return RngStream(key, tag=self.tag)
        with var_defaults(ref=True):
            return RngStream(key, tag=self.tag)


class Rngs(Pytree, _RandomMethods):
    """Named random streams with a default.

    Example::

        rngs = nnx.Rngs(0)                      # a 'default' stream
        rngs = nnx.Rngs(0, params=1, dropout=2) # a default and named streams
        key = rngs.params()                     # a new key from 'params'
        key = rngs.dropout()                    # ... from 'dropout'
        key = rngs()                            # ... from 'default'
        x = rngs.normal((2, 3))                 # sample with the default stream
        stacked = nnx.Rngs(0).fork(split=8)     # keys of shape (8,), for nnx.vmap

    A stream that does not exist falls back to ``default``. A stream's first key
    is ``jax.random.fold_in(seed_key, 0)``, its next ``fold_in(seed_key, 1)``, as
    in Flax NNX, so ``nnx.Rngs(params=0)`` and ``nnx.Rngs(dropout=0)`` hand out the
    same keys: give streams different seeds.

    Every ``jax.random`` sampler is a method that draws from the default stream
    (``rngs.normal((2, 3))``, ``rngs.bernoulli(0.5, (4,))``), and every keyed
    ``jax.nn.initializers`` factory returns that initializer bound to a fresh key
    (``rngs.lecun_normal()((4, 8))``); streams have the same methods
    (``rngs.params.uniform((3,))``).
    """

    def __init__(self, default: Any = None, /, **streams: Any):
        if isinstance(default, Mapping):
            streams = {**default, **streams}
        elif default is not None and "default" not in streams:
            streams = {**streams, "default": default}  # after the named ones, as in Flax NNX
        for name, value in streams.items():
            if name.startswith("_") or name in _RESERVED:
                raise ValueError(
                    f"Rngs: {name!r} cannot name a stream: it is "
                    + ("private" if name.startswith("_") else f"the Rngs method rngs.{name}")
                    + ". Choose another name, e.g. nnx.Rngs(params=0, dropout=1)."
                )
            if isinstance(value, RngStream):
                setattr(self, name, value)
            else:
                setattr(self, name, RngStream(value, tag=name))

    # -- stream access ---------------------------------------------------------
    def _stream(self, name: str) -> RngStream:
        d = self.__dict__
        s = d.get(name)
        if isinstance(s, RngStream):
            return s
        s = d.get("default")
        if isinstance(s, RngStream):
            return s
        raise AttributeError(
            f"No RngStream named {name!r} found in Rngs, and it has no 'default' stream to "
            f"fall back to. Streams: {self.stream_names()}. Create it: "
            f"nnx.Rngs({name}=0, ...), or give a default: nnx.Rngs(0, ...)."
        )

    def __getattr__(self, name: str) -> RngStream:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._stream(name)

    def __getitem__(self, name: str) -> RngStream:
        try:
            return self._stream(name)
        except AttributeError as e:
            raise KeyError(str(e)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.stream_names())

    def __len__(self) -> int:
        return len(self.stream_names())

    def __call__(self) -> jax.Array:
        return self._stream("default")()

    def __contains__(self, name: str) -> bool:
        return isinstance(self.__dict__.get(name), RngStream)

    def stream_names(self) -> list[str]:
        return [k for k, v in self.__dict__.items() if isinstance(v, RngStream)]

    def items(self):
        return [(k, v) for k, v in self.__dict__.items() if isinstance(v, RngStream)]

    # -- deriving new streams --------------------------------------------------
    def fork(
        self, *, split: int | tuple[int, ...] | Mapping[Any, int | tuple | None] | None = None
    ) -> Rngs:
        """New independent streams, one per stream; each of these advances by one key.

        Example::

            rngs = nnx.Rngs(params=0, dropout=1)
            child = rngs.fork()                # independent of `rngs` from now on
            stacked = rngs.fork(split=8)       # stacked.params() has shape (8,)
            some = rngs.fork(split={"dropout": 4})   # only dropout is split

        ``split=n`` gives every new stream keys of shape ``(n,)``, to be used
        with ``nnx.vmap`` (one member per key). ``split={filter: n, ...}``
        splits only the streams whose name the filter matches.
        """
        out = Rngs.__new__(Rngs)
        for name, stream in self.items():
            n: int | tuple[int, ...] | None
            if isinstance(split, Mapping):
                n = None
                for f, size in split.items():
                    pred = to_predicate(f) if not isinstance(f, str) else (lambda p, x, f=f: x == f)  # noqa: ARG005
                    if pred((name,), name):
                        n = size
                        break
            else:
                n = split
            setattr(out, name, stream.fork(split=n))
        return out

    def split(self, n: int | tuple[int, ...]) -> Rngs:
        """Same as ``fork(split=n)``."""
        return self.fork(split=n)

    def broadcast(self, k: int | tuple[int, ...] | None | Mapping[Any, Any]) -> Rngs:
        """New streams whose keys are one new key each, repeated to shape ``k``.

        ``k`` is a shape for every stream, or ``{filter: shape | None, ...}`` (the first
        filter that matches a stream's name decides; None, or no match: the stream
        itself, shared with this Rngs). Each broadcast stream draws one key.

        >>> import nnx
        >>> rngs = nnx.Rngs(params=1, dropout=2).broadcast({"params": 5, ...: None})
        >>> rngs.params.key.shape, rngs.dropout.key.shape
        ((5,), ())
        """
        rules = [(to_predicate(f), n) for f, n in _rule_items(k if k is not None else {...: None})]
        out = Rngs.__new__(Rngs)
        for name, stream in self.items():
            n = next((n for pred, n in rules if pred((), stream)), None)
            setattr(out, name, stream if n is None else stream.broadcast(n))
        return out


# -- jax.random samplers and jax.nn initializers as methods -----------------------
# jax.random functions whose first argument is a key; `rngs.normal(...)` is
# `jax.random.normal(rngs.default(), ...)`, `rngs.params.normal(...)` uses 'params'.
SAMPLERS = (
    "ball bernoulli beta binomial bits categorical cauchy chisquare choice dirichlet "
    "double_sided_maxwell exponential f gamma generalized_normal geometric gumbel laplace "
    "loggamma logistic lognormal maxwell multinomial multivariate_normal normal orthogonal "
    "pareto permutation poisson rademacher randint rayleigh t triangular truncated_normal "
    "uniform wald weibull_min"
).split()
# jax.nn.initializers factories of keyed initializers. The names that are also samplers
# (normal, uniform, truncated_normal, orthogonal) are samplers, as in Flax NNX.
INITIALIZERS = (
    "delta_orthogonal glorot_normal glorot_uniform he_normal he_uniform kaiming_normal "
    "kaiming_uniform lecun_normal lecun_uniform variance_scaling xavier_normal xavier_uniform"
).split()


def _stream_sampler(name: str):
    fn = getattr(jax.random, name)

    def method(self: RngStream, *args, **kwargs):
        return fn(self(), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``jax.random.{name}`` with a new key from this stream."
    return method


def _rngs_sampler(name: str):
    def method(self: Rngs, *args, **kwargs):
        return getattr(self._stream("default"), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``jax.random.{name}`` with a new key from the ``default`` stream."
    return method


class _BoundInitializer:
    """A ``jax.nn.initializers`` initializer bound to one key: call it with ``(shape, dtype)``."""

    __slots__ = ("init", "key", "name")

    def __init__(self, name: str, init, key):
        self.name = name
        self.init = init
        self.key = key

    def __call__(self, shape, dtype=jnp.float32):
        return self.init(self.key, shape, dtype)

    def __repr__(self):
        return f"<jax.nn.initializers.{self.name} bound to a key>"


def _stream_initializer(name: str):
    factory = getattr(jax.nn.initializers, name)

    def method(self: RngStream, *args, **kwargs) -> Callable:
        return _BoundInitializer(name, factory(*args, **kwargs), self())

    method.__name__ = method.__qualname__ = name
    method.__doc__ = (
        f"``jax.nn.initializers.{name}(*args, **kwargs)`` bound to a new key from this "
        "stream: call the result with ``(shape, dtype=float32)``."
    )
    return method


def _rngs_initializer(name: str):
    def method(self: Rngs, *args, **kwargs) -> Callable:
        return getattr(self._stream("default"), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = (
        f"``jax.nn.initializers.{name}(*args, **kwargs)`` bound to a new key from the "
        "``default`` stream: call the result with ``(shape, dtype=float32)``."
    )
    return method


def _install_methods() -> None:
    for name in SAMPLERS:
        setattr(RngStream, name, _stream_sampler(name))
        setattr(Rngs, name, _rngs_sampler(name))
    for name in INITIALIZERS:
        setattr(RngStream, name, _stream_initializer(name))
        setattr(Rngs, name, _rngs_initializer(name))


_install_methods()

_RESERVED = frozenset(n for n in dir(Rngs) if not n.startswith("_"))


# -- rewriting the random streams of a graph --------------------------------------
F = TypeVar("F", bound=Callable[..., Any])
_MISSING: Any = object()


def _streams(node) -> list[tuple[tuple, RngStream]]:
    from nnx.core._walk import iter_graph

    return [(path, x) for path, x in iter_graph(node) if isinstance(x, RngStream)]


def _replace_state(stream: RngStream, key, count) -> None:
    """Give ``stream`` a new key and count, in place when the shapes allow it."""
    if stream.key.shape == key.shape:
        stream.key[...] = key
        stream.count[...] = count
    else:  # a new shape: new Variables of the same kind and storage mode
        stream.key = stream.key.replace(key)  # pyright: ignore[reportAttributeAccessIssue]
        stream.count = stream.count.replace(count)  # pyright: ignore[reportAttributeAccessIssue]


def _scalars_only(path, key, shape):
    if shape != ():
        raise ValueError(
            f"nnx.reseed: the stream at path {path!r} has a key of shape {shape}, not a "
            "scalar key. Pass policy='match_shape' to split the new key to that shape, or "
            "a callable (path, scalar_key, shape) -> key."
        )
    return key


def _match_shape(key, shape):
    return key if shape == () else jax.random.split(key, shape)


def reseed(node: Any, /, *, policy: Any = "scalars_only", **stream_keys: Any) -> None:
    """Give the random streams of ``node`` new seeds, in place, and reset their counts.

    Each stream whose tag (its name in the ``Rngs`` it came from) is a keyword gets the
    key that a fresh ``nnx.Rngs(**stream_keys)`` would hand out for that tag, so a
    model reseeded with the seed it was built with draws its first keys again:

    >>> import jax, jax.numpy as jnp, nnx
    >>> rngs = nnx.Rngs(dropout=42)
    >>> stream = rngs.dropout.fork()   # e.g. what a Dropout layer keeps
    >>> k1 = stream()
    >>> nnx.reseed(stream, dropout=42)
    >>> bool(jnp.all(jax.random.key_data(stream()) == jax.random.key_data(k1)))
    True

    Args:
      node: any graph (a module, an ``Rngs``, a list of them).
      policy: what to do with streams whose key is not a scalar (split ones):
        ``'scalars_only'`` (raise), ``'match_shape'`` (split the new key to the
        stream's shape), or a callable ``(path, scalar_key, shape) -> key``.
      **stream_keys: stream tag -> int seed or key.
    """
    if policy == "scalars_only":
        policy = _scalars_only
    elif policy != "match_shape" and not callable(policy):
        raise ValueError(
            f"nnx.reseed: policy must be 'scalars_only', 'match_shape' or a callable "
            f"(path, scalar_key, shape) -> key, got {policy!r}"
        )
    fresh = Rngs(**stream_keys)
    for path, stream in _streams(node):
        if stream.tag in stream_keys:
            key: Any = fresh[stream.tag]()
            shape = tuple(stream.key.shape)
            key = _match_shape(key, shape) if policy == "match_shape" else policy(path, key, shape)
            _replace_state(stream, key, jnp.zeros(key.shape, jnp.uint32))


class SplitBackups:
    """What :func:`fork_rngs` returns: the streams' previous state, for :func:`restore_rngs`.

    It is also a context manager that restores on exit::

        with nnx.fork_rngs(model, split={"params": 4}):
            ...                    # params streams hold 4 keys here
        # ... and their previous key and count again here
    """

    def __init__(self, backups: list):
        self.backups = backups

    def __iter__(self):
        return iter(self.backups)

    def __len__(self) -> int:
        return len(self.backups)

    def __enter__(self) -> SplitBackups:
        return self

    def __exit__(self, *exc) -> None:
        restore_rngs(self)


def _split_rule(split) -> list[tuple[Any, Any]]:
    if split is None:
        return []
    if isinstance(split, (int, tuple)):
        return [(to_predicate(...), split)]
    if isinstance(split, Mapping):
        return [(to_predicate(f), n) for f, n in split.items()]
    raise TypeError(
        f"split must be an int, a tuple of ints, or a mapping filter -> int | tuple | None, "
        f"got {split!r}"
    )


def _first(rules, path, x):
    for pred, value in rules:
        if pred(path, x):
            return True, value
    return False, None


def fork_rngs(
    node: Any = _MISSING,
    /,
    *,
    split: Any = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """Fork the random streams of ``node`` in place; return backups to undo it.

    Each stream matched by ``split`` (``None``: every stream, unsplit; ``n`` or a shape:
    every stream, split; a mapping ``{filter: n | shape | None}``: the first filter that
    matches the stream, by its path and value, decides) is replaced by its fork:
    ``stream.fork(split=...)``, a new key drawn from it (the stream's count advances),
    split to that shape. Without ``node`` it is a decorator that forks the streams in
    the function's arguments for the call and restores them afterwards.

    >>> import nnx
    >>> rngs = nnx.Rngs(params=0, dropout=1)
    >>> with nnx.fork_rngs(rngs, split={"params": 4}):
    ...     rngs.params.key.shape, rngs.dropout.key.shape
    ((4,), ())
    >>> rngs.params.key.shape
    ()

    With ``graph_updates=False`` or ``graph=False`` (or those settings of
    :func:`nnx.set_graph_updates` / :func:`nnx.set_graph_mode`), as in Flax NNX, ``node``
    is left as it is (but for the counts of the streams forked) and a copy with the
    forked streams is returned; the decorator then calls the function with copies.

    >>> copy = nnx.fork_rngs(rngs, split=4, graph_updates=False)
    >>> copy.params.key.shape, rngs.params.key.shape
    ((4,), ())

    Args:
      node: what holds the streams (a module, an ``Rngs``, a pytree of them); leave it
        out for the decorator form.
      split: which streams, split to what shape (see above).
      graph: False for tree mode: a copy is returned. None: the current setting.
      graph_updates: False: a copy is returned. None: the current setting.
    """
    in_place = _in_place(graph, graph_updates)
    if node is _MISSING:

        def decorator(f: F) -> F:
            @functools.wraps(f)
            def wrapper(*args, **kwargs):
                if not in_place:
                    args, kwargs = fork_rngs((args, kwargs), split=split, graph_updates=False)
                    return f(*args, **kwargs)
                with fork_rngs((args, kwargs), split=split, graph=True, graph_updates=True):
                    return f(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorator
    rules = _split_rule(split) if split is not None else [(to_predicate(...), None)]
    target = node if in_place else _clone(node)
    backups = []
    for (path, stream), (_, dest) in zip(_streams(node), _streams(target)):
        matched, n = _first(rules, path, stream)
        if matched:
            forked = stream.fork(split=n)
            backups.append((dest, dest.key, dest.count))
            dest.key = forked.key
            dest.count = forked.count
    return SplitBackups(backups) if in_place else target


def _in_place(graph: bool | None, graph_updates: bool | None) -> bool:
    # Flax NNX's rule for the rng helpers: in place (with backups) only in graph mode
    # with graph updates; otherwise the caller gets a copy
    mode = resolve_graph_mode(graph, graph_updates)
    return mode.graph and mode.graph_updates


def _clone(node: Any) -> Any:
    from nnx.core._graph import clone

    return clone(node)


def backup_keys(node: Any, /, *, graph: bool | None = None) -> list:
    """The current key of every random stream in ``node``, for :func:`restore_rngs`.

    The counts are not saved: drawing advances them, restoring puts the keys back.

    >>> import nnx
    >>> rngs = nnx.Rngs(0)
    >>> backups = nnx.backup_keys(rngs)
    >>> rngs.default.key = nnx.RngKey(rngs.default.fork().key[...])   # e.g. a transform's split
    >>> nnx.restore_rngs(backups)
    >>> int(rngs.default.count[...])
    1

    Args:
      node: what holds the streams (a module, an ``Rngs``, a pytree of them).
      graph: False (tree mode): ``node`` must be a tree (``AliasingError`` otherwise).
    """
    if not resolve_graph_mode(graph, None).graph:
        from nnx.core._walk import require_tree

        require_tree(node, "nnx.backup_keys")
    return [(stream, stream.key.replace(stream.key.get_value())) for _, stream in _streams(node)]


def restore_rngs(backups: Any, /) -> None:
    """Put back the streams' key and count saved by :func:`fork_rngs` (or a transform)."""
    for backup in backups:
        stream, key, count = backup[0], backup[1], backup[2] if len(backup) > 2 else None
        stream.key = key
        if count is not None:
            stream.count = count


def _broadcast_stream(stream: RngStream, shape) -> RngStream:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    key = stream()
    return RngStream(jnp.broadcast_to(key, (*shape, *key.shape)), tag=stream.tag)


def with_rngs(
    node: Any = _MISSING,
    /,
    *,
    split: Any = None,
    fork: Any = None,
    broadcast: Any = None,
    only: Any = True,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """A copy of ``node`` whose random streams are split, forked or broadcast.

    ``node`` is not changed, except that each rewritten stream draws one key (its count
    advances). Rules, each matched against the stream's path and value:

    - ``split``: ``n``, a shape, or ``{filter: n | shape}``: the stream becomes
      ``stream.fork(split=...)``, keys of that shape, one per member of a ``vmap``;
    - ``broadcast``: same forms: one new key repeated to that shape;
    - ``fork``: a filter or list of filters: the stream becomes ``stream.fork()``;
    - ``only``: the streams considered at all.

    Streams that match no rule are copied unchanged. Two rules with specific filters
    (not ``...``/``True``) matching one stream are an error. Without ``node`` it is a
    decorator that rewrites the function's arguments.

    >>> import nnx
    >>> rngs = nnx.Rngs(params=0, dropout=1)
    >>> new = nnx.with_rngs(rngs, split={"params": 4}, fork=...)
    >>> new.params.key.shape, new.dropout.key.shape, rngs.params.key.shape
    ((4,), (), ())

    ``graph`` and ``graph_updates`` are Flax NNX's arguments: the result is a copy in
    every mode (the copy keeps sharing inside ``node``); ``graph=False`` (tree mode)
    also checks that ``node`` is a tree (a Variable reachable twice is an
    :class:`nnx.AliasingError`).
    """
    del graph_updates  # always a copy: there is nothing to update in place
    if node is not _MISSING and not resolve_graph_mode(graph).graph:
        from nnx.core._walk import require_tree

        require_tree(node, "nnx.with_rngs")
    if node is _MISSING:

        def decorator(f: F) -> F:
            @functools.wraps(f)
            def wrapper(*args, **kwargs):
                args, kwargs = with_rngs(
                    (args, kwargs),
                    split=split,
                    fork=fork,
                    broadcast=broadcast,
                    only=only,
                    graph=graph,
                )
                return f(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorator
    from nnx.core._graph import clone

    split_rules = [(f, to_predicate(f), n) for f, n in _rule_items(split)]
    bcast_rules = [(f, to_predicate(f), n) for f, n in _rule_items(broadcast)]
    if fork is None:
        forks: list = []
    elif isinstance(fork, (list, tuple)):
        forks = list(fork)
    else:
        forks = [fork]
    fork_rules = [(f, to_predicate(f), None) for f in forks]
    only_pred = to_predicate(only)

    copy = clone(node)
    originals = _streams(node)
    copies = _streams(copy)
    for (path, stream), (_, new) in zip(originals, copies):
        if not only_pred(path, stream):
            continue
        hits = {}
        for kind, rules in (
            ("split", split_rules),
            ("broadcast", bcast_rules),
            ("fork", fork_rules),
        ):
            for f, pred, n in rules:
                if pred(path, stream):
                    hits[kind] = (f, n)
                    break
        specific = [k for k, (f, _) in hits.items() if f is not Ellipsis and f is not True]
        if len(hits) > 1 and len(specific) > 1:
            detail = "; ".join(f"{k} matches {f!r}" for k, (f, _) in hits.items())
            raise ValueError(
                f"nnx.with_rngs: the RngStream at path {path!r} matches several rules ({detail}). "
                "Make the filters disjoint, or use `...` for the catch-all rule."
            )
        if "split" in hits:
            made = stream.fork(split=hits["split"][1])
        elif "broadcast" in hits:
            made = _broadcast_stream(stream, hits["broadcast"][1])
        elif "fork" in hits:
            made = stream.fork()
        else:
            continue
        new.key = made.key
        new.count = made.count
    return copy


def _rule_items(rule) -> list[tuple[Any, Any]]:
    if rule is None:
        return []
    if isinstance(rule, (int, tuple)):
        return [(..., rule)]
    return list(rule.items())


def split_rngs_keys(rngs: Rngs, n: int) -> Rngs:
    """Functional form of ``rngs.fork(split=n)``."""
    return rngs.fork(split=n)
