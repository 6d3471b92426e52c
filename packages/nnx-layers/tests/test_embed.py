import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def test_embed_looks_up_rows():
    embed = nnx.Embed(10, 4, rngs=nnx.Rngs(0))
    ids = jnp.array([[1, 2], [9, 0]])
    table = np.asarray(embed.embedding[...])
    np.testing.assert_array_equal(embed(ids), table[np.asarray(ids)])
    assert embed.embedding.shape == (10, 4) and isinstance(embed.embedding, nnx.Param)


def test_embed_attend_is_dot_with_table():
    embed = nnx.Embed(10, 4, rngs=nnx.Rngs(0))
    q = jax.random.normal(jax.random.key(1), (3, 4))
    np.testing.assert_allclose(embed.attend(q), q @ embed.embedding[...].T, rtol=1e-5, atol=1e-5)


def test_embed_dtype_and_float_ids_error():
    embed = nnx.Embed(5, 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert embed(jnp.array([0, 1])).dtype == jnp.bfloat16
    with pytest.raises(nnx.layers.LayerError, match="integer ids"):
        embed(jnp.array([0.0, 1.0]))


def test_embed_gradient_accumulates_on_used_rows():
    embed = nnx.Embed(4, 2, rngs=nnx.Rngs(0))
    ids = jnp.array([1, 1, 3])
    g = jax.grad(lambda t: jnp.sum(jnp.take(t, ids, axis=0)))(embed.embedding[...])
    np.testing.assert_array_equal(g, [[0, 0], [2, 2], [0, 0], [1, 1]])
