"""``Embed``: a lookup table from integer ids to vectors, with ``attend`` for tied outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from nnx.core import Module, Rngs
from nnx.layers import initializers
from nnx.layers._common import (
    Dtype,
    Initializer,
    PrecisionLike,
    check_positive,
    make_param,
    param_key,
    promote_dtype,
)
from nnx.layers._errors import LayerError, ShapeError

default_embed_init = initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)


class Embed(Module):
    """Embeddings: ``embed(ids)`` looks up rows of ``embedding`` (num_embeddings, features).

    Example::

        embed = nnx.Embed(num_embeddings=10, features=4, rngs=nnx.Rngs(0))
        h = embed(jnp.array([[1, 2], [3, 9]]))    # (2, 2, 4)
        logits = embed.attend(h)                   # (2, 2, 10): h @ embedding.T

    ``precision`` is passed to the matmul of ``attend``. Ids outside ``[0, num_embeddings)`` follow ``jnp.take``'s default (clamped on
    CPU/GPU inside jit); check them yourself if that matters.
    """

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        embedding_init: Initializer = default_embed_init,
        precision: PrecisionLike = None,
        embedding_metadata: Mapping[str, Any] | None = None,
        rngs: Rngs,
    ):
        check_positive("Embed", num_embeddings=num_embeddings, features=features)
        self.embedding = make_param(
            embedding_init,
            param_key(rngs, "Embed"),
            (num_embeddings, features),
            param_dtype,
            layer="Embed",
            name="embedding",
            metadata=embedding_metadata,
        )
        self.num_embeddings = num_embeddings
        self.features = features
        self.dtype = dtype or param_dtype
        self.param_dtype = param_dtype
        self.embedding_init = embedding_init
        self.precision = precision

    def __call__(self, inputs: jax.Array) -> jax.Array:
        if not jnp.issubdtype(jnp.result_type(inputs), jnp.integer):
            raise LayerError(
                f"Embed expects integer ids, got dtype {jnp.result_type(inputs)}; "
                "cast them with `ids.astype(jnp.int32)`."
            )
        (embedding,) = promote_dtype((self.embedding[...],), dtype=self.dtype)
        if self.num_embeddings == 1:
            return jnp.broadcast_to(embedding, jnp.shape(inputs) + (self.features,))
        return jnp.take(embedding, inputs, axis=0)

    def attend(self, query: jax.Array) -> jax.Array:
        """Scores of ``query`` (..., features) against every embedding: ``query @ embedding.T``."""
        query, embedding = promote_dtype((query, self.embedding[...]), dtype=self.dtype)
        if jnp.shape(query)[-1:] != (self.features,):
            raise ShapeError(
                f"Embed(features={self.features}).attend expects queries whose last axis has "
                f"size {self.features}, got shape {jnp.shape(query)}."
            )
        return jnp.dot(query, embedding.T, precision=self.precision)
