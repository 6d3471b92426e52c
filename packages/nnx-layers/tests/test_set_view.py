"""``set_view`` on Dropout, BatchNorm and MultiHeadAttention: ``nnx.view(model, ...)`` puts
them in the mode Flax NNX 0.12 documents, on a copy that shares the Variables."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)


class Net(nnx.Module):
    def __init__(self, rngs):
        self.bn = nnx.BatchNorm(3, momentum=0.5, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return self.drop(self.bn(x))


def _x():
    return jax.random.normal(jax.random.key(3), (6, 3)) * 2.0 + 1.0


# -- Dropout -----------------------------------------------------------------------------
def test_dropout_deterministic_view_is_the_identity_and_the_original_still_drops():
    drop = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
    x = jnp.arange(1.0, 201.0)
    eval_drop = nnx.view(drop, deterministic=True)
    assert eval_drop.deterministic is True and drop.deterministic is False
    np.testing.assert_array_equal(eval_drop(x), x)
    y = drop(x)  # training: each entry is 0 or x / (1 - rate)
    kept = y != 0
    assert 0 < int(kept.sum()) < 200
    np.testing.assert_allclose(y[kept], x[kept] * 2.0, **TOL)


def test_dropout_train_view_of_an_eval_model_drops():
    drop = nnx.Dropout(0.5, deterministic=True, rngs=nnx.Rngs(dropout=0))
    x = jnp.ones(100)
    np.testing.assert_array_equal(drop(x), x)
    y = nnx.view(drop, deterministic=False)(x)
    assert set(np.unique(np.asarray(y)).tolist()) == {0.0, 2.0}


def test_dropout_set_view_none_leaves_the_mode():
    drop = nnx.Dropout(0.5, deterministic=True)
    drop.set_view()
    assert drop.deterministic is True
    drop.set_view(deterministic=False)
    assert drop.deterministic is False


# -- BatchNorm ---------------------------------------------------------------------------
def test_batchnorm_running_average_view_uses_the_running_stats():
    bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    bn.mean[...] = jnp.array([1.0, -2.0, 0.5])
    bn.var[...] = jnp.array([4.0, 0.25, 1.0])
    assert bn.scale is not None and bn.bias is not None
    bn.scale[...] = jnp.array([2.0, 1.0, 0.5])
    bn.bias[...] = jnp.array([0.0, 1.0, -1.0])
    x = _x()
    eval_bn = nnx.view(bn, use_running_average=True)
    assert eval_bn.use_running_average is True and bn.use_running_average is False
    y = eval_bn(x)
    mean = np.array([1.0, -2.0, 0.5])
    var = np.array([4.0, 0.25, 1.0])
    expected = (np.asarray(x) - mean) / np.sqrt(var + 1e-5) * np.array([2.0, 1.0, 0.5]) + np.array(
        [0.0, 1.0, -1.0]
    )
    np.testing.assert_allclose(y, expected, **TOL)
    # the running averages are left unchanged in eval mode
    np.testing.assert_array_equal(bn.mean[...], mean)
    np.testing.assert_array_equal(bn.var[...], var)


def test_batchnorm_train_view_uses_batch_stats_and_updates_the_shared_averages():
    bn = nnx.BatchNorm(3, momentum=0.9, use_running_average=True, rngs=nnx.Rngs(0))
    train_bn = nnx.view(bn, use_running_average=False)
    eval_bn = nnx.view(bn, use_running_average=True)
    x = np.asarray(_x())
    y = train_bn(jnp.asarray(x))
    bmean, bvar = x.mean(0), x.var(0)
    np.testing.assert_allclose(y, (x - bmean) / np.sqrt(bvar + 1e-5), **TOL)
    new_mean = 0.9 * 0.0 + 0.1 * bmean
    new_var = 0.9 * 1.0 + 0.1 * bvar
    # all three share the BatchStat Variables
    assert train_bn.mean is bn.mean is eval_bn.mean
    np.testing.assert_allclose(bn.mean[...], new_mean, **TOL)
    np.testing.assert_allclose(eval_bn.var[...], new_var, **TOL)
    np.testing.assert_allclose(
        eval_bn(jnp.asarray(x)), (x - new_mean) / np.sqrt(new_var + 1e-5), **TOL
    )


# -- a model with both -------------------------------------------------------------------
def test_view_sets_every_submodule_that_takes_the_flag():
    model = Net(nnx.Rngs(0, dropout=1))
    eval_model = nnx.view(model, deterministic=True, use_running_average=True)
    assert eval_model.drop.deterministic is True and eval_model.bn.use_running_average is True
    assert model.drop.deterministic is False and model.bn.use_running_average is False
    assert eval_model.bn.scale is model.bn.scale
    x = _x()
    # eval: BatchNorm with the initial running stats (mean 0, var 1), Dropout identity
    np.testing.assert_allclose(eval_model(x), np.asarray(x) / np.sqrt(1.0 + 1e-5), **TOL)
    info = nnx.view_info(model)
    assert "BatchNorm:" in info and "use_running_average" in info
    assert "Dropout:" in info and "deterministic" in info


# -- MultiHeadAttention ------------------------------------------------------------------
def test_mha_deterministic_view_switches_attention_dropout_off():
    mha = nnx.MultiHeadAttention(2, 4, dropout_rate=0.5, rngs=nnx.Rngs(0, dropout=1))
    x = jax.random.normal(jax.random.key(1), (1, 5, 4))
    reference = mha(x, deterministic=True)
    eval_mha = nnx.view(mha, deterministic=True)
    assert eval_mha.deterministic is True and mha.deterministic is not True
    np.testing.assert_allclose(eval_mha(x), reference, **TOL)
    assert not np.allclose(mha(x), reference)  # the original still drops


def test_mha_decode_view_with_cache_matches_the_causal_full_pass():
    mha = nnx.MultiHeadAttention(2, 4, decode=False, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 4))
    full = mha(x, mask=nnx.make_causal_mask(x[..., 0]))
    dec = nnx.view(mha, decode=True, batch_size=2, max_length=5)
    assert dec.decode is True and mha.decode is False and mha.cached_key is None
    assert dec.cached_key is not None and dec.cached_key[...].shape == (2, 5, 2, 2)
    assert dec.query.kernel is mha.query.kernel
    steps = [dec(x[:, t : t + 1]) for t in range(5)]
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, **TOL)
    assert dec.cache_index is not None and int(dec.cache_index[...]) == 5


def test_mha_set_view_batch_size_without_max_length_is_an_error():
    mha = nnx.MultiHeadAttention(2, 4, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.LayerError, match="batch_size and max_length create"):
        mha.set_view(decode=True, batch_size=2)
