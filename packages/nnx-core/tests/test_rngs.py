"""Rngs: streams, fallback, sampling, fork, state under transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def test_streams_and_default_fallback():
    rngs = nnx.Rngs(params=0, dropout=1)
    assert not jnp.array_equal(
        jax.random.key_data(rngs.params()), jax.random.key_data(rngs.dropout())
    )
    with pytest.raises(AttributeError, match="no stream 'other' and no 'default'"):
        rngs.other()
    r = nnx.Rngs(0)
    k1 = r.params()  # falls back to default
    k2 = r()
    assert not jnp.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
    assert int(r.default.count[...]) == 2


def test_stream_key_is_fold_in_of_count():
    r = nnx.Rngs(default=jax.random.key(3))
    base = r.default.key[...]
    k = r()
    np.testing.assert_array_equal(
        jax.random.key_data(k), jax.random.key_data(jax.random.fold_in(base, 0))
    )


def test_two_streams_with_the_same_seed_differ():
    r = nnx.Rngs(params=0, dropout=0)
    assert not jnp.array_equal(jax.random.key_data(r.params()), jax.random.key_data(r.dropout()))


def test_sampling_methods_match_jax_random():
    r = nnx.Rngs(0)
    key = jax.random.fold_in(r.default.key[...], 0)
    np.testing.assert_allclose(r.normal((2, 3)), jax.random.normal(key, (2, 3)))
    key = jax.random.fold_in(r.default.key[...], 1)
    np.testing.assert_allclose(r.uniform((4,)), jax.random.uniform(key, (4,)))
    assert r.bernoulli(0.5, (5,)).dtype == jnp.bool_
    assert r.randint((3,), 0, 10).shape == (3,)


def test_legacy_prngkey_and_key_arrays_accepted():
    r = nnx.Rngs(jax.random.PRNGKey(0))
    assert r().shape == ()
    with pytest.raises(TypeError, match="int seed or a JAX key"):
        nnx.Rngs(jnp.ones(3))


def test_fork_split_gives_stacked_streams():
    r = nnx.Rngs(0, dropout=1)
    f = r.fork(split=8)
    assert f.default.key.shape == (8,) and f.default.count.shape == (8,)
    keys = f()
    assert keys.shape == (8,)
    assert len({tuple(np.asarray(jax.random.key_data(k))) for k in keys}) == 8
    partial = r.fork(split={"dropout": 4})
    assert partial.dropout.key.shape == (4,) and partial.default.key.shape == ()


def test_counts_advance_inside_plain_jit_via_split_merge():
    r = nnx.Rngs(0)
    g, s = nnx.split(r)

    @jax.jit
    def draw(g, s):
        r = nnx.merge(g, s)
        k = r()
        return k, nnx.split(r)[1]

    k, s = draw(g, s)
    nnx.update(r, s)
    assert int(r.default.count[...]) == 1
    k2 = r()
    assert not jnp.array_equal(jax.random.key_data(k), jax.random.key_data(k2))


def test_hijax_rngs_advance_inside_plain_jit():
    with nnx.var_defaults(hijax=True):
        r = nnx.Rngs(0)

    @jax.jit
    def draw():
        return r.normal((2,))

    a, b = draw(), draw()
    assert not np.allclose(a, b)
    assert int(r.default.count[...]) == 2


def test_rng_state_kinds_and_tags():
    r = nnx.Rngs(params=0)
    assert isinstance(r.params.key, nnx.RngKey) and isinstance(r.params.count, nnx.RngCount)
    assert r.params.key.tag == "params"
    assert len(nnx.state(r, nnx.RngCount).flat_state()) == 1
