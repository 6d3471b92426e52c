"""``Dropout``: zero a random fraction of the inputs while training."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from nnx.core import Module, Rngs, RngStream
from nnx.layers._common import first_from
from nnx.layers._errors import LayerError, MissingRngsError


def _stream_of(rngs: Rngs | RngStream | None, collection: str) -> RngStream | None:
    if rngs is None:
        return None
    if isinstance(rngs, Rngs):
        return rngs[collection]
    if isinstance(rngs, RngStream):
        return rngs
    raise TypeError(f"expected nnx.Rngs or nnx.RngStream, got {type(rngs).__name__}")


class Dropout(Module):
    """Dropout: keeps each entry with probability ``1 - rate`` and scales it by ``1/(1 - rate)``.

    Example::

        drop = nnx.Dropout(0.1, rngs=nnx.Rngs(dropout=0))
        y = drop(x)                        # random mask, new each call
        drop.eval(); y = drop(x)           # identity (deterministic=True)
        y = drop(x, deterministic=False)   # per call
        y = nnx.Dropout(0.1)(x, rngs=nnx.Rngs(dropout=1))   # stream given per call

    With ``rngs`` the layer keeps its own stream, ``rngs[rng_collection].fork()`` (the
    ``default`` stream when there is no ``rng_collection`` one); its key and count are
    Variables, so the mask changes on every call, also under jit.

    Args:
      rate: the probability of dropping an entry, in [0, 1].
      broadcast_dims: axes along which the mask is shared (e.g. time steps).
      deterministic: if True, the layer is the identity (set by ``eval()``/``train()``).
      rng_collection: the stream to draw masks from.
      rngs: random streams (``nnx.Rngs``) or one stream (``nnx.RngStream``), or None
        to pass ``rngs`` at every call.
    """

    def __init__(
        self,
        rate: float,
        *,
        broadcast_dims: Sequence[int] = (),
        deterministic: bool = False,
        rng_collection: str = "dropout",
        rngs: Rngs | RngStream | None = None,
    ):
        if not 0.0 <= float(rate) <= 1.0:
            raise LayerError(f"Dropout: rate must be in [0, 1], got {rate}.")
        self.rate = float(rate)
        self.broadcast_dims = tuple(broadcast_dims)
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        stream = _stream_of(rngs, rng_collection)
        self.rngs = stream.fork() if stream is not None else None

    def __call__(
        self,
        inputs: jax.Array,
        *,
        deterministic: bool | None = None,
        rngs: Rngs | RngStream | jax.Array | None = None,
    ) -> jax.Array:
        deterministic = first_from(deterministic, self.deterministic, default=False)
        if deterministic or self.rate == 0.0:
            return inputs
        if self.rate == 1.0:
            return jnp.zeros_like(inputs)
        key = self._key(rngs)
        keep = 1.0 - self.rate
        mask_shape = list(jnp.shape(inputs))
        for d in self.broadcast_dims:
            mask_shape[d] = 1
        mask = jax.random.bernoulli(key, p=keep, shape=mask_shape)
        mask = jnp.broadcast_to(mask, jnp.shape(inputs))
        return lax.select(mask, inputs / jnp.asarray(keep, inputs.dtype), jnp.zeros_like(inputs))

    def set_view(self, deterministic: bool | None = None) -> None:
        """Set this layer's mode for :func:`nnx.view` (``nnx.view(model, deterministic=True)``).

        Args:
          deterministic: if True, the layer is the identity (no mask, no randomness
            used); if False, it drops entries. None leaves the mode unchanged.
        """
        if deterministic is not None:
            self.deterministic = deterministic

    def _key(self, rngs) -> jax.Array:
        if isinstance(rngs, jax.Array):
            return rngs
        stream = _stream_of(rngs, self.rng_collection) if rngs is not None else self.rngs
        if stream is None:
            raise MissingRngsError(
                f"Dropout(rate={self.rate}) needs randomness while training but has no stream. "
                "Create it with `nnx.Dropout(rate, rngs=rngs)`, pass one per call "
                "`dropout(x, rngs=rngs)`, or switch it off with `model.eval()` / "
                "`deterministic=True`."
            )
        return stream()
