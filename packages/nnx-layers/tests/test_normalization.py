import os
import subprocess
import sys
import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-5)


def _x(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape) * 3.0 + 1.5


def test_batchnorm_training_uses_batch_stats_and_updates_running_averages_step_by_step():
    bn = nnx.BatchNorm(3, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0))
    ra_mean, ra_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = np.asarray(_x((8, 3), seed=step))
        y = bn(jnp.asarray(x))
        mean, var = x.mean(0), x.var(0)
        np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
        ra_mean = 0.9 * ra_mean + 0.1 * mean
        ra_var = 0.9 * ra_var + 0.1 * var
        np.testing.assert_allclose(bn.mean[...], ra_mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(bn.var[...], ra_var, rtol=1e-5, atol=1e-5)


def test_batchnorm_stats_are_batchstat_and_scale_bias_are_params():
    bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    assert type(bn.mean) is nnx.BatchStat and type(bn.var) is nnx.BatchStat
    assert type(bn.scale) is nnx.Param and type(bn.bias) is nnx.Param
    _, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)
    assert set(params) == {"scale", "bias"} and set(stats) == {"mean", "var"}


def test_batchnorm_eval_uses_running_averages_and_leaves_them_alone():
    bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    bn.mean[...] = jnp.array([1.0, 2.0, 3.0])
    bn.var[...] = jnp.array([4.0, 1.0, 0.25])
    assert bn.scale is not None and bn.bias is not None
    bn.scale[...] = jnp.array([2.0, 2.0, 2.0])
    bn.bias[...] = jnp.array([0.5, 0.5, 0.5])
    bn.eval()
    assert bn.use_running_average is True
    x = _x((5, 3))
    y = bn(x)
    expected = (x - bn.mean[...][None, :]) / jnp.sqrt(bn.var[...][None, :] + 1e-5) * 2.0 + 0.5
    np.testing.assert_allclose(y, expected, **TOL)
    np.testing.assert_allclose(bn.mean[...], [1.0, 2.0, 3.0])
    bn.train()
    assert bn.use_running_average is False
    bn(x)
    assert not np.allclose(bn.mean[...], [1.0, 2.0, 3.0])


def test_batchnorm_per_call_flag_overrides_attribute():
    bn = nnx.BatchNorm(2, rngs=nnx.Rngs(0))
    x = _x((4, 2))
    y = bn(x, use_running_average=True)
    np.testing.assert_allclose(y, x / jnp.sqrt(1 + 1e-5), **TOL)
    np.testing.assert_array_equal(bn.mean[...], 0.0)


def test_batchnorm_feature_axis_and_spatial_reduction():
    bn = nnx.BatchNorm(3, axis=1, momentum=0.0, rngs=nnx.Rngs(0))
    x = np.asarray(_x((4, 3, 5)))
    y = bn(jnp.asarray(x))
    mean = x.mean((0, 2), keepdims=True)
    var = x.var((0, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.mean[...], mean.ravel(), **TOL)


def test_batchnorm_mask_excludes_entries_from_stats():
    bn = nnx.BatchNorm(2, momentum=0.0, rngs=nnx.Rngs(0))
    x = np.asarray(_x((6, 2)))
    mask = np.array([True] * 4 + [False] * 2)[:, None]
    bn(jnp.asarray(x), mask=jnp.asarray(np.broadcast_to(mask, x.shape)))
    np.testing.assert_allclose(bn.mean[...], x[:4].mean(0), **TOL)
    np.testing.assert_allclose(bn.var[...], x[:4].var(0), rtol=1e-4, atol=1e-4)


def test_batchnorm_slow_variance_matches_fast():
    x = _x((16, 3))
    a = nnx.BatchNorm(3, use_fast_variance=True, rngs=nnx.Rngs(0))
    b = nnx.BatchNorm(3, use_fast_variance=False, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(a(x), b(x), rtol=1e-4, atol=1e-4)


def test_batchnorm_axis_name_gives_global_statistics_under_vmap():
    bn = nnx.BatchNorm(2, axis_name="batch", momentum=0.0, rngs=nnx.Rngs(0))
    x = np.asarray(_x((3, 4, 2)))  # 3 "devices" x 4 examples

    def f(xs):
        graphdef, state = nnx.split(bn)
        model = nnx.merge(graphdef, state, copy=True)
        return model(xs), model.mean[...]

    y, means = jax.vmap(f, axis_name="batch")(jnp.asarray(x))
    flat = x.reshape(-1, 2)
    expected = (x - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(means, np.broadcast_to(flat.mean(0), (3, 2)), **TOL)


def test_batchnorm_without_axis_name_uses_each_mapped_slice_alone():
    # the counterpart of the test above: per-slice statistics differ from global ones
    bn = nnx.BatchNorm(2, momentum=0.0, rngs=nnx.Rngs(0))
    x = np.asarray(_x((3, 4, 2)))
    graphdef, state = nnx.split(bn)
    y = jax.vmap(lambda xs: nnx.merge(graphdef, state, copy=True)(xs))(jnp.asarray(x))
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


_SHARD_MAP_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    import nnx

    assert jax.device_count() == 8, jax.devices()
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    bn = nnx.BatchNorm(3, axis_name="data", momentum=0.5, epsilon=1e-3, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(bn)
    x = np.random.RandomState(0).normal(size=(8 * 4, 3)) * 2.0 + 1.0

    def step(state, x):
        model = nnx.merge(graphdef, state, copy=True)
        y = model(x)
        return y, model.mean[...], model.var[...]

    f = jax.jit(jax.shard_map(
        step, mesh=mesh, in_specs=(P(), P("data")), out_specs=(P("data"), P(), P())
    ))
    y, mean, var = f(state, jnp.asarray(x, jnp.float32))
    # statistics over the global batch of 32, not over each device's 4 rows
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-3), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mean, 0.5 * x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, 0.5 + 0.5 * x.var(0), rtol=1e-5, atol=1e-5)
    print("OK")
    """
)


def test_batchnorm_axis_name_gives_global_statistics_under_shard_map_on_8_devices():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    r = subprocess.run(
        [sys.executable, "-c", _SHARD_MAP_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_batchnorm_momentum_epsilon_scale_and_bias_step_by_step():
    bn = nnx.BatchNorm(
        3,
        momentum=0.5,
        epsilon=0.5,
        scale_init=nnx.initializers.normal(1.0),
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(0),
    )
    assert bn.scale is not None and bn.bias is not None
    scale, bias = np.asarray(bn.scale[...]), np.asarray(bn.bias[...])
    ra_mean, ra_var = np.zeros(3), np.ones(3)
    for step in range(3):
        x = np.asarray(_x((6, 3), seed=10 + step))
        y = bn(jnp.asarray(x))
        expected = (x - x.mean(0)) / np.sqrt(x.var(0) + 0.5) * scale + bias
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
        ra_mean, ra_var = 0.5 * ra_mean + 0.5 * x.mean(0), 0.5 * ra_var + 0.5 * x.var(0)
        np.testing.assert_allclose(bn.mean[...], ra_mean, **TOL)
        np.testing.assert_allclose(bn.var[...], ra_var, **TOL)
    bn.eval()
    x = np.asarray(_x((2, 3), seed=20))
    expected = (x - ra_mean) / np.sqrt(ra_var + 0.5) * scale + bias
    np.testing.assert_allclose(bn(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-4)


def test_batchnorm_use_running_average_through_set_attributes():
    model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.BatchNorm(3, rngs=nnx.Rngs(0)))
    model.set_attributes(use_running_average=True)
    bn = model.layers[1]
    assert isinstance(bn, nnx.BatchNorm)
    assert bn.use_running_average is True
    x = _x((4, 2))
    h = model.layers[0](x)
    np.testing.assert_allclose(model(x), h / np.sqrt(1.0 + 1e-5), **TOL)
    np.testing.assert_array_equal(bn.mean[...], 0.0)
    model.set_attributes(use_running_average=False)
    model(x)
    np.testing.assert_allclose(bn.mean[...], 0.01 * np.asarray(h).mean(0), **TOL)


def test_batchnorm_errors():
    bn = nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.ShapeError, match=r"BatchNorm\(num_features=3\)"):
        bn(jnp.ones((2, 4)))
    with pytest.raises(nnx.layers.LayerError, match="momentum"):
        nnx.BatchNorm(3, momentum=1.5, rngs=nnx.Rngs(0))


def test_batchnorm_dtype():
    bn = nnx.BatchNorm(3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    y = bn(jnp.ones((4, 3), jnp.float32))
    assert y.dtype == jnp.bfloat16 and bn.mean.dtype == jnp.float32


def test_layernorm_matches_hand_formula():
    ln = nnx.LayerNorm(
        4,
        scale_init=nnx.initializers.normal(1.0),
        bias_init=nnx.initializers.normal(1.0),
        rngs=nnx.Rngs(0),
    )
    x = np.asarray(_x((3, 5, 4)))
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    assert ln.scale is not None and ln.bias is not None
    expected = (x - mean) / np.sqrt(var + 1e-6) * np.asarray(ln.scale[...]) + np.asarray(
        ln.bias[...]
    )
    np.testing.assert_allclose(ln(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-4)


def test_layernorm_multiple_reduction_axes():
    ln = nnx.LayerNorm(4, reduction_axes=(1, 2), use_scale=False, use_bias=False, rngs=nnx.Rngs(0))
    x = np.asarray(_x((2, 3, 4)))
    mean = x.mean((1, 2), keepdims=True)
    var = x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(
        ln(jnp.asarray(x)), (x - mean) / np.sqrt(var + 1e-6), rtol=1e-4, atol=1e-4
    )
    assert ln.scale is None and ln.bias is None


def test_rmsnorm_matches_hand_formula():
    norm = nnx.RMSNorm(4, scale_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    x = np.asarray(_x((3, 4)))
    assert norm.scale is not None
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * np.asarray(norm.scale[...])
    np.testing.assert_allclose(norm(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-4)
    assert not hasattr(norm, "bias")


def test_groupnorm_matches_hand_formula():
    gn = nnx.GroupNorm(6, num_groups=3, scale_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    x = np.asarray(_x((2, 4, 4, 6)))
    g = x.reshape(2, 4, 4, 3, 2)
    mean = g.mean((1, 2, 4), keepdims=True)
    var = g.var((1, 2, 4), keepdims=True)
    assert gn.scale is not None
    expected = ((g - mean) / np.sqrt(var + 1e-6)).reshape(x.shape) * np.asarray(gn.scale[...])
    np.testing.assert_allclose(gn(jnp.asarray(x)), expected, rtol=1e-4, atol=1e-4)


def test_groupnorm_group_size_and_errors():
    assert nnx.GroupNorm(8, num_groups=None, group_size=2, rngs=nnx.Rngs(0)).num_groups == 4
    with pytest.raises(nnx.layers.ShapeError, match="num_groups"):
        nnx.GroupNorm(6, num_groups=4, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.LayerError, match="exactly one"):
        nnx.GroupNorm(6, num_groups=2, group_size=3, rngs=nnx.Rngs(0))


def test_instancenorm_matches_hand_formula():
    norm = nnx.InstanceNorm(3, rngs=nnx.Rngs(0))
    x = np.asarray(_x((2, 5, 5, 3)))
    mean = x.mean((1, 2), keepdims=True)
    var = x.var((1, 2), keepdims=True)
    np.testing.assert_allclose(
        norm(jnp.asarray(x)), (x - mean) / np.sqrt(var + 1e-6), rtol=1e-4, atol=1e-4
    )
