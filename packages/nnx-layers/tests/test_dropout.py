import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def test_dropout_keep_rate_and_scaling():
    drop = nnx.Dropout(0.25, rngs=nnx.Rngs(dropout=0))
    x = jnp.ones((200, 100))
    y = np.asarray(drop(x))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)


def test_dropout_new_mask_each_call_and_stream_advances():
    drop = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
    assert drop.rngs is not None
    x = jnp.ones((64,))
    count0 = int(drop.rngs.count[...])
    a, b = drop(x), drop(x)
    assert not np.array_equal(a, b)
    assert int(drop.rngs.count[...]) == count0 + 2


def test_dropout_deterministic_flag_attribute_and_per_call():
    drop = nnx.Dropout(0.5, rngs=nnx.Rngs(0))
    x = jnp.arange(1.0, 9.0)
    np.testing.assert_array_equal(drop(x, deterministic=True), x)
    drop.eval()
    assert drop.deterministic is True
    np.testing.assert_array_equal(drop(x), x)
    assert not np.array_equal(drop(x, deterministic=False), x)
    drop.train()
    assert drop.deterministic is False
    assert not np.array_equal(drop(x), x)


def test_dropout_rngs_per_call_and_key():
    drop = nnx.Dropout(0.5)
    assert drop.rngs is None
    x = jnp.ones((32,))
    a = drop(x, rngs=nnx.Rngs(dropout=3))
    b = drop(x, rngs=nnx.Rngs(dropout=3))
    np.testing.assert_array_equal(a, b)
    key = jax.random.key(7)
    expected = jnp.where(jax.random.bernoulli(key, 0.5, (32,)), 2.0, 0.0)
    np.testing.assert_array_equal(drop(x, rngs=key), expected)


def test_dropout_uses_its_collection_then_default():
    rngs = nnx.Rngs(0, dropout=1)
    before = int(rngs.dropout.count[...])
    nnx.Dropout(0.5, rngs=rngs)
    assert int(rngs.dropout.count[...]) == before + 1
    rngs = nnx.Rngs(0)
    nnx.Dropout(0.5, rngs=rngs)  # falls back to 'default'
    assert int(rngs.default.count[...]) == 1


def test_dropout_without_rngs_raises_with_instructions():
    with pytest.raises(nnx.layers.MissingRngsError, match=r"rngs=rngs.*eval\(\)"):
        nnx.Dropout(0.5)(jnp.ones(3))


def test_dropout_rate_zero_and_one_and_invalid():
    x = jnp.ones((4,))
    np.testing.assert_array_equal(nnx.Dropout(0.0)(x), x)
    np.testing.assert_array_equal(nnx.Dropout(1.0)(x), 0.0)
    with pytest.raises(nnx.layers.LayerError, match=r"rate must be in \[0, 1\]"):
        nnx.Dropout(1.5)


def test_dropout_broadcast_dims_share_the_mask():
    drop = nnx.Dropout(0.5, broadcast_dims=(0,), rngs=nnx.Rngs(0))
    y = np.asarray(drop(jnp.ones((6, 40))))
    assert (y == y[0]).all()


def test_dropout_in_model_train_eval():
    model = nnx.Sequential(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1)))
    x = jnp.ones((2, 4))
    model.eval()
    a, b = model(x), model(x)
    np.testing.assert_array_equal(a, b)
    model.train()
    assert not np.array_equal(model(x), model(x))


def test_own_stream_masks_are_bernoulli_draws_of_the_forked_stream():
    drop = nnx.Dropout(0.3, rngs=nnx.Rngs(dropout=5))
    twin = nnx.Rngs(dropout=5)["dropout"].fork()  # what the layer keeps
    x = jax.random.normal(jax.random.key(1), (4, 50))
    for _ in range(3):
        keep = jax.random.bernoulli(twin(), 0.7, x.shape)
        np.testing.assert_allclose(drop(x), np.where(keep, x / 0.7, 0.0), rtol=1e-6)


def test_two_layers_from_equal_seeds_drop_the_same_entries():
    x = jnp.ones((100,))
    a = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=2))
    b = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=2))
    np.testing.assert_array_equal(a(x), b(x))
    assert not np.array_equal(a(x), nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=3))(x))


def test_rngs_given_per_call_take_precedence_over_the_own_stream():
    drop = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
    assert drop.rngs is not None
    count = int(drop.rngs.count[...])
    x = jnp.ones((64,))
    key = nnx.Rngs(dropout=9)["dropout"]()
    expected = jnp.where(jax.random.bernoulli(key, 0.5, x.shape), 2.0, 0.0)
    np.testing.assert_array_equal(drop(x, rngs=nnx.Rngs(dropout=9)), expected)
    assert int(drop.rngs.count[...]) == count  # own stream untouched


def test_dropout_expectation_is_preserved():
    # E[y] = x: kept entries are scaled by 1 / keep
    drop = nnx.Dropout(0.4, rngs=nnx.Rngs(dropout=0))
    x = jnp.full((400, 250), 3.0)
    assert abs(float(jnp.mean(drop(x))) - 3.0) < 0.03
