"""Initializers: every factory draws from the distribution its name promises."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

init = nnx.initializers
KEY = jax.random.key(0)
SHAPE = (500, 400)  # 200k draws: sample std within ~0.2% of the truth
FAN_IN, FAN_OUT = SHAPE


def test_constant_initializers_are_exact():
    np.testing.assert_array_equal(init.zeros(KEY, (2, 3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(init.ones(KEY, (2,)), [1.0, 1.0])
    np.testing.assert_array_equal(init.zeros_init()(KEY, (2,)), [0.0, 0.0])
    np.testing.assert_array_equal(init.ones_init()(KEY, (2,)), [1.0, 1.0])
    np.testing.assert_array_equal(init.constant(0.7)(KEY, (3,)), np.full(3, 0.7, np.float32))
    assert init.constant(2, jnp.int32)(KEY, (2,)).dtype == jnp.int32


def test_normal_and_uniform():
    w = np.asarray(init.normal(0.5)(KEY, SHAPE))
    assert abs(w.mean()) < 0.005 and abs(w.std() - 0.5) < 0.01
    u = np.asarray(init.uniform(0.3)(KEY, SHAPE))
    assert u.min() >= 0.0 and u.max() < 0.3 and abs(u.mean() - 0.15) < 0.002


# the std of a standard normal truncated to [-2, 2]: 1 - 4 phi(2) / (2 Phi(2) - 1)
_PHI2 = np.exp(-2.0) / np.sqrt(2 * np.pi)
_TRUNC_STD = np.sqrt(1 - 4 * _PHI2 / 0.9544997361036416)


def test_truncated_normal_stays_within_two_stddevs():
    w = np.asarray(init.truncated_normal(0.5)(KEY, SHAPE))
    assert np.abs(w).max() <= 1.0
    assert abs(w.std() - 0.5 * _TRUNC_STD) < 0.01


# name -> (target std from the fans, distribution)
SCALINGS = {
    "lecun_normal": (np.sqrt(1 / FAN_IN), "normal"),
    "lecun_uniform": (np.sqrt(1 / FAN_IN), "uniform"),
    "he_normal": (np.sqrt(2 / FAN_IN), "normal"),
    "he_uniform": (np.sqrt(2 / FAN_IN), "uniform"),
    "kaiming_normal": (np.sqrt(2 / FAN_IN), "normal"),
    "kaiming_uniform": (np.sqrt(2 / FAN_IN), "uniform"),
    "glorot_normal": (np.sqrt(2 / (FAN_IN + FAN_OUT)), "normal"),
    "glorot_uniform": (np.sqrt(2 / (FAN_IN + FAN_OUT)), "uniform"),
    "xavier_normal": (np.sqrt(2 / (FAN_IN + FAN_OUT)), "normal"),
    "xavier_uniform": (np.sqrt(2 / (FAN_IN + FAN_OUT)), "uniform"),
}


@pytest.mark.parametrize("name", sorted(SCALINGS))
def test_variance_scaling_family_has_the_promised_std(name):
    std, dist = SCALINGS[name]
    w = np.asarray(getattr(init, name)()(KEY, SHAPE))
    np.testing.assert_allclose(w.std(), std, rtol=0.02)
    assert abs(w.mean()) < 0.02 * std
    if dist == "uniform":  # U(-limit, limit) has std limit / sqrt(3)
        limit = std * np.sqrt(3)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    else:  # a truncated normal rescaled to the target std, cut at 2 untruncated stds
        assert np.abs(w).max() <= 2 * std / _TRUNC_STD + 1e-6


def test_aliases_draw_the_same_numbers():
    for a, b in [("kaiming_normal", "he_normal"), ("kaiming_uniform", "he_uniform")]:
        np.testing.assert_array_equal(
            getattr(init, a)()(KEY, (4, 5)), getattr(init, b)()(KEY, (4, 5))
        )
    for a, b in [("xavier_normal", "glorot_normal"), ("xavier_uniform", "glorot_uniform")]:
        np.testing.assert_array_equal(
            getattr(init, a)()(KEY, (4, 5)), getattr(init, b)()(KEY, (4, 5))
        )


def test_variance_scaling_modes_and_conv_fans():
    shape = (3, 3, 40, 80)  # receptive field 9: fan_in 360, fan_out 720
    for mode, fan in [("fan_in", 360), ("fan_out", 720), ("fan_avg", 540)]:
        w = np.asarray(init.variance_scaling(2.0, mode, "truncated_normal")(KEY, shape))
        np.testing.assert_allclose(w.std(), np.sqrt(2.0 / fan), rtol=0.03)
    w = np.asarray(init.variance_scaling(1.0, "fan_geo_avg", "uniform")(KEY, shape))
    np.testing.assert_allclose(w.std(), np.sqrt(1.0 / np.sqrt(360 * 720)), rtol=0.03)
    w = np.asarray(init.variance_scaling(1.0, "fan_in", "normal")(KEY, SHAPE))
    np.testing.assert_allclose(w.std(), np.sqrt(1 / FAN_IN), rtol=0.02)
    assert np.abs(w).max() > 3 * np.sqrt(1 / FAN_IN)  # "normal" is not truncated


def test_orthogonal_rows_or_columns_are_orthonormal():
    w = np.asarray(init.orthogonal()(KEY, (6, 4)))
    np.testing.assert_allclose(w.T @ w, np.eye(4), atol=1e-5)
    w = np.asarray(init.orthogonal()(KEY, (4, 6)))
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-5)
    w = np.asarray(init.orthogonal(scale=2.0)(KEY, (5, 5)))
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(5), atol=1e-4)


def test_delta_orthogonal_is_an_orthogonal_matrix_at_the_kernel_centre():
    w = np.array(init.delta_orthogonal()(KEY, (3, 3, 4, 4)))
    centre = w[1, 1]
    np.testing.assert_allclose(centre.T @ centre, np.eye(4), atol=1e-5)
    w[1, 1] = 0.0
    np.testing.assert_array_equal(w, 0.0)


def test_initializers_honour_dtype_and_every_factory_is_listed():
    assert init.lecun_normal()(KEY, (3, 3), jnp.bfloat16).dtype == jnp.bfloat16
    assert init.zeros(KEY, (2,), jnp.float16).dtype == jnp.float16
    factories = set(SCALINGS) | {"normal", "uniform", "truncated_normal", "orthogonal"}
    factories |= {"delta_orthogonal", "variance_scaling", "constant", "zeros", "ones"}
    factories |= {"zeros_init", "ones_init", "Initializer"}
    assert factories <= set(init.__all__) and nnx.initializers is nnx.layers.initializers
    missing = [
        n for n in dir(jax.nn.initializers) if not n.startswith("_") and n not in init.__all__
    ]
    assert not missing, f"jax.nn.initializers names missing from nnx.initializers: {missing}"


def test_layer_uses_the_initializer_it_is_given():
    layer = nnx.Linear(
        3, 4, kernel_init=init.orthogonal(), bias_init=init.constant(0.5), rngs=nnx.Rngs(0)
    )
    k = np.asarray(layer.kernel[...])
    np.testing.assert_allclose(k @ k.T, np.eye(3), atol=1e-5)
    assert layer.bias is not None
    np.testing.assert_array_equal(layer.bias[...], np.full(4, 0.5, np.float32))
