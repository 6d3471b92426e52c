"""``Embed``: a lookup table from integer ids to vectors, with ``attend`` for tied outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnx.core import Module, Param, Rngs
from nnx.layers import initializers
from nnx.layers._common import (
    Dtype,
    Initializer,
    PrecisionLike,
    PromoteDtypeFn,
    check_positive,
    make_param,
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

    ``precision`` is passed to the matmul of ``attend``.

    Ids out of range: with concrete ids (eager calls), an id outside
    ``[-num_embeddings, num_embeddings)`` raises an ``IndexError`` naming it (negative
    ids count from the end, as in ``jnp.take``). Under a trace (``nnx.jit``,
    ``jax.jit``, ``vmap``, ``grad``, ...) the ids are not known, so the lookup keeps
    JAX's behaviour: an out-of-range id gives a row of NaN (integer embeddings: the
    dtype's minimum). To catch them inside jit, run the step under
    ``jax.experimental.checkify.checkify(step, errors=checkify.index_checks)``, whose
    error names the bad index, or check ``(ids >= 0) & (ids < num_embeddings)`` yourself.
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
        promote_dtype: PromoteDtypeFn = promote_dtype,
        embedding_metadata: Mapping[str, Any] | None = None,
        rngs: Rngs,
    ):
        check_positive("Embed", num_embeddings=num_embeddings, features=features)
        self.embedding: Param[jax.Array] = make_param(
            embedding_init,
            rngs,
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
        self.promote_dtype = promote_dtype

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        if not jnp.issubdtype(jnp.result_type(inputs), jnp.integer):
            raise LayerError(
                f"Embed expects integer ids, got dtype {jnp.result_type(inputs)}; "
                "cast them with `ids.astype(jnp.int32)`."
            )
        _check_ids(inputs, self.num_embeddings)
        (embedding,) = self.promote_dtype((self.embedding[...],), dtype=self.dtype, inexact=False)
        if self.num_embeddings == 1:
            return jnp.broadcast_to(embedding, jnp.shape(inputs) + (self.features,))
        if out_sharding is not None:
            return embedding.at[inputs].get(mode="fill", out_sharding=out_sharding)
        return jnp.take(embedding, inputs, axis=0)

    def attend(self, query: jax.Array, out_sharding: Any = None) -> jax.Array:
        """Scores of ``query`` (..., features) against every embedding: ``query @ embedding.T``."""
        query, embedding = self.promote_dtype(
            (query, self.embedding[...]), dtype=self.dtype, inexact=False
        )
        if jnp.shape(query)[-1:] != (self.features,):
            raise ShapeError(
                f"Embed(features={self.features}).attend expects queries whose last axis has "
                f"size {self.features}, got shape {jnp.shape(query)}."
            )
        kw = {} if out_sharding is None else {"out_sharding": out_sharding}
        return jnp.dot(query, embedding.T, precision=self.precision, **kw)


def _check_ids(ids: Any, num_embeddings: int) -> None:
    """Raise an IndexError for concrete ids out of range; traced ids pass through."""
    try:
        values = np.asarray(ids)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return  # traced ids: not known here (see the class docstring)
    if values.size == 0:
        return
    bad = (values >= num_embeddings) | (values < -num_embeddings)
    if bad.any():
        first = values[bad].reshape(-1)[0]
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IndexError(
            f"Embed(num_embeddings={num_embeddings}): id {int(first)} at position {where} "
            f"is out of range; ids must lie in [0, {num_embeddings}) (negative ids count "
            f"from the end). {int(bad.sum())} of {values.size} ids are out of range. "
            "Raise num_embeddings or fix the ids (e.g. the tokenizer's vocabulary size)."
        )
