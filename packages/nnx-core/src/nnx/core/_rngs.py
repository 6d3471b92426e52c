"""``Rngs``: named random streams whose state is Variables.

A stream is a key and a count (both Variables). Each call returns
``fold_in(key, count)`` and increments the count, so randomness advances
inside transforms exactly like any other state.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core._defaults import _current, var_defaults
from nnx.core._filters import to_predicate
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


def _stream_salt(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _fold_in(key, data):
    if key.ndim == 0:
        return jax.random.fold_in(key, data)
    flat_k, flat_d = key.reshape(-1), jnp.broadcast_to(data, key.shape).reshape(-1)
    return jax.vmap(jax.random.fold_in)(flat_k, flat_d).reshape(key.shape)


class RngStream(Pytree):
    """One named random stream: ``stream()`` returns a new key each call.

    Example::

        stream = nnx.Rngs(params=0).params
        k1, k2 = stream(), stream()   # different keys
    """

    def __init__(self, key, *, tag: str):
        key = _as_key(key)
        self.key = RngKey(key, tag=tag)
        self.count = RngCount(jnp.zeros(key.shape, jnp.uint32), tag=tag)
        self.tag = tag

    def __call__(self) -> jax.Array:
        count = self.count[...]
        key = _fold_in(self.key[...], count)
        self.count[...] = count + 1
        return key

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


class Rngs(Pytree):
    """Named random streams with a default.

    Example::

        rngs = nnx.Rngs(0)                      # a 'default' stream
        rngs = nnx.Rngs(0, params=1, dropout=2) # a default and named streams
        key = rngs.params()                     # a new key from 'params'
        key = rngs.dropout()                    # ... from 'dropout'
        key = rngs()                            # ... from 'default'
        x = rngs.normal((2, 3))                 # sample with the default stream
        stacked = nnx.Rngs(0).fork(split=8)     # keys of shape (8,), for nnx.vmap

    A stream that does not exist falls back to ``default``. Streams fold their
    name into the seed, so two streams never hand out the same key.
    """

    def __init__(self, default: Any = None, /, **streams: Any):
        if default is not None:
            streams = {"default": default, **streams}
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
                key = _fold_in(_as_key(value), _stream_salt(name))
                setattr(self, name, RngStream(key, tag=name))

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
            f"Rngs has no stream {name!r} and no 'default' stream to fall back to. "
            f"Streams: {self.stream_names()}. Create it: nnx.Rngs({name}=0, ...)."
        )

    def __getattr__(self, name: str) -> RngStream:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._stream(name)

    def __getitem__(self, name: str) -> RngStream:
        return self._stream(name)

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
                    pred = to_predicate(f) if not isinstance(f, str) else (lambda p, x, f=f: x == f)
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

    # -- sampling with the default stream --------------------------------------
    def _key(self):
        return self._stream("default")()

    def normal(self, shape=(), dtype=jnp.float32, **kw):
        """``jax.random.normal`` with a key from the default stream."""
        return jax.random.normal(self._key(), shape, dtype, **kw)

    def uniform(self, shape=(), dtype=jnp.float32, minval=0.0, maxval=1.0, **kw):
        """``jax.random.uniform`` with a key from the default stream."""
        return jax.random.uniform(self._key(), shape, dtype, minval, maxval, **kw)

    def bernoulli(self, p=0.5, shape=None, **kw):
        """``jax.random.bernoulli`` with a key from the default stream."""
        return jax.random.bernoulli(self._key(), p, shape, **kw)

    def randint(self, shape, minval, maxval, dtype=jnp.int32, **kw):
        """``jax.random.randint`` with a key from the default stream."""
        return jax.random.randint(self._key(), shape, minval, maxval, dtype, **kw)

    def categorical(self, logits, axis=-1, shape=None, **kw):
        """``jax.random.categorical`` with a key from the default stream."""
        return jax.random.categorical(self._key(), logits, axis, shape, **kw)

    def truncated_normal(self, lower, upper, shape=None, dtype=jnp.float32, **kw):
        """``jax.random.truncated_normal`` with a key from the default stream."""
        return jax.random.truncated_normal(self._key(), lower, upper, shape, dtype, **kw)

    def permutation(self, x, axis=0, independent=False):
        """``jax.random.permutation`` with a key from the default stream."""
        return jax.random.permutation(self._key(), x, axis, independent)

    def choice(self, a, shape=(), replace=True, p=None, axis=0):
        """``jax.random.choice`` with a key from the default stream."""
        return jax.random.choice(self._key(), a, shape, replace, p, axis)

    def gumbel(self, shape=(), dtype=jnp.float32, **kw):
        """``jax.random.gumbel`` with a key from the default stream."""
        return jax.random.gumbel(self._key(), shape, dtype, **kw)

    def exponential(self, shape=(), dtype=jnp.float32):
        """``jax.random.exponential`` with a key from the default stream."""
        return jax.random.exponential(self._key(), shape, dtype)

    def bits(self, shape=(), dtype=None):
        """``jax.random.bits`` with a key from the default stream."""
        return jax.random.bits(self._key(), shape, dtype)


_RESERVED = frozenset(n for n in dir(Rngs) if not n.startswith("_"))


def split_rngs_keys(rngs: Rngs, n: int) -> Rngs:
    """Functional form of ``rngs.fork(split=n)``."""
    return rngs.fork(split=n)
