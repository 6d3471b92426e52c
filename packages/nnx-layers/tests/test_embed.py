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


def test_embed_concrete_id_out_of_range_raises_index_error_naming_num_embeddings():
    embed = nnx.Embed(5, 4, rngs=nnx.Rngs(0))
    with pytest.raises(IndexError, match=r"num_embeddings=5\): id 5 at position \(1,\)"):
        embed(jnp.array([0, 5]))
    with pytest.raises(IndexError, match=r"id -6 .*\[0, 5\)"):
        embed(jnp.array([[0], [-6]]))


def test_embed_negative_ids_in_range_count_from_the_end_like_take():
    embed = nnx.Embed(5, 4, rngs=nnx.Rngs(0))
    table = np.asarray(embed.embedding[...])
    np.testing.assert_array_equal(embed(jnp.array([-1, 0])), table[[4, 0]])


def test_embed_traced_out_of_range_keeps_jax_fill_and_checkify_catches_it():
    from jax.experimental import checkify

    embed = nnx.Embed(5, 4, rngs=nnx.Rngs(0))
    table = np.asarray(embed.embedding[...])
    out = jax.jit(lambda ids: embed(ids))(jnp.array([0, 5]))
    np.testing.assert_array_equal(out[0], table[0])
    assert np.isnan(np.asarray(out[1])).all()

    graphdef, state = nnx.split(embed)
    checked = checkify.checkify(
        jax.jit(lambda s, ids: nnx.merge(graphdef, s)(ids)), errors=checkify.index_checks
    )
    err, _ = checked(state, jnp.array([0, 5]))
    msg = err.get()
    assert msg is not None and "index 5 is out of bounds" in msg
    err, _ = checked(state, jnp.array([0, 4]))
    assert err.get() is None
