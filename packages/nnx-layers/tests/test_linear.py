from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def plus_bias(y, bias):
    """``y + bias`` with the bias broadcast to ``y``'s trailing axes explicitly (rank
    promotion raises in these tests)."""
    return y + jnp.broadcast_to(bias, jnp.shape(y))


TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-5)


def test_linear_matches_einsum_with_bias():
    layer = nnx.Linear(3, 4, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    assert layer.bias is not None
    expected = plus_bias(jnp.einsum("bti,io->bto", x, layer.kernel[...]), layer.bias[...])
    np.testing.assert_allclose(layer(x), expected, **TOL)


def test_linear_param_shapes_and_kinds():
    layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    assert isinstance(layer.kernel, nnx.Param) and layer.kernel.shape == (3, 4)
    assert isinstance(layer.bias, nnx.Param) and layer.bias.shape == (4,)
    np.testing.assert_array_equal(layer.bias[...], 0.0)


def test_linear_default_init_is_lecun_normal_scale():
    layer = nnx.Linear(256, 256, rngs=nnx.Rngs(0))
    std = float(jnp.std(layer.kernel[...]))
    assert abs(std - 1 / np.sqrt(256)) < 0.1 / np.sqrt(256)


def test_linear_without_bias():
    layer = nnx.Linear(3, 4, use_bias=False, rngs=nnx.Rngs(0))
    assert layer.bias is None
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(layer(x), x @ layer.kernel[...], **TOL)


def test_linear_dtype_and_param_dtype():
    layer = nnx.Linear(3, 4, dtype=jnp.bfloat16, param_dtype=jnp.float16, rngs=nnx.Rngs(0))
    assert layer.kernel.dtype == jnp.float16
    assert layer(jnp.ones((2, 3))).dtype == jnp.bfloat16


def test_linear_params_are_reproducible_from_the_seed():
    a = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    b = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    c = nnx.Linear(3, 4, rngs=nnx.Rngs(1))
    np.testing.assert_array_equal(a.kernel[...], b.kernel[...])
    assert not np.allclose(a.kernel[...], c.kernel[...])


def test_linear_with_partitioning_sets_sharding_names():
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
    layer = nnx.Linear(
        2, 8, kernel_init=init, bias_metadata={"sharding_names": ("model",)}, rngs=nnx.Rngs(0)
    )
    assert layer.kernel.sharding_names == (None, "model")
    assert layer.bias is not None and layer.bias.sharding_names == ("model",)


def test_linear_input_shape_error_names_layer_and_expected_size():
    layer = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.ShapeError, match=r"Linear\(in_features=3\).*\(2, 5\)"):
        layer(jnp.ones((2, 5)))


def test_bad_initializer_shape_is_reported():
    bad = lambda key, shape, dtype: jnp.zeros((1,), dtype)  # noqa: E731
    with pytest.raises(
        nnx.layers.ShapeError, match=r"Linear: the initializer of `kernel`.*\(3, 4\)"
    ):
        nnx.Linear(3, 4, kernel_init=bad, rngs=nnx.Rngs(0))


def test_non_positive_features_rejected():
    with pytest.raises(nnx.layers.LayerError, match="in_features"):
        nnx.Linear(0, 4, rngs=nnx.Rngs(0))


def test_missing_rngs_says_how_to_fix():
    with pytest.raises(nnx.layers.LayerError, match=r"rngs=nnx.Rngs\(0\)"):
        nnx.Linear(3, 4, rngs=None)  # pyright: ignore[reportArgumentType]


def test_linear_grad_matches_hand_formula():
    layer = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    assert layer.bias is not None
    bias = layer.bias
    x = jax.random.normal(jax.random.key(1), (5, 3))

    def loss(kernel):
        return jnp.sum(plus_bias(x @ kernel, bias[...]))

    g = jax.grad(loss)(layer.kernel[...])
    np.testing.assert_allclose(g, jnp.broadcast_to(x.sum(0)[:, None], (3, 2)), **TOL)


def test_linear_general_multi_axis_in_and_out():
    layer = nnx.LinearGeneral(
        (2, 3), (4, 5), axis=(-2, -1), bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0)
    )
    assert layer.bias is not None
    assert layer.kernel.shape == (2, 3, 4, 5) and layer.bias.shape == (4, 5)
    x = jax.random.normal(jax.random.key(1), (7, 2, 3))
    expected = plus_bias(jnp.einsum("bij,ijkl->bkl", x, layer.kernel[...]), layer.bias[...])
    np.testing.assert_allclose(layer(x), expected, **TOL)


def test_linear_general_heads_projection():
    layer = nnx.LinearGeneral(8, (2, 4), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (3, 5, 8))
    expected = jnp.einsum("btd,dhk->bthk", x, layer.kernel[...])
    np.testing.assert_allclose(layer(x), expected, **TOL)


def test_linear_general_batch_axis():
    layer = nnx.LinearGeneral(
        3, 4, axis=-1, batch_axis={0: 2}, bias_init=nnx.initializers.ones, rngs=nnx.Rngs(0)
    )
    assert layer.kernel.shape == (2, 3, 4)
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    expected = jnp.einsum("bti,bio->bto", x, layer.kernel[...]) + 1.0
    np.testing.assert_allclose(layer(x), expected, **TOL)


def test_linear_general_axis_mismatch_error():
    with pytest.raises(nnx.layers.ShapeError, match="LinearGeneral"):
        nnx.LinearGeneral((2, 3), 4, axis=-1, rngs=nnx.Rngs(0))
    layer = nnx.LinearGeneral(3, 4, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.ShapeError, match=r"sizes \(3,\)"):
        layer(jnp.ones((2, 5)))


def test_einsum_with_bias():
    layer = nnx.Einsum(
        "nta,hab->nthb", (8, 2, 4), (8, 4), bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (3, 5, 2))
    assert layer.bias is not None
    expected = plus_bias(jnp.einsum("nta,hab->nthb", x, layer.kernel[...]), layer.bias[...])
    y = layer(x)
    assert y.shape == (3, 5, 8, 4)
    np.testing.assert_allclose(y, expected, **TOL)


def test_einsum_errors():
    with pytest.raises(nnx.layers.LayerError, match="two operands"):
        nnx.Einsum("ab->b", (2,), rngs=nnx.Rngs(0))
    with pytest.raises(nnx.layers.ShapeError, match="kernel_shape"):
        nnx.Einsum("ab,bc->ac", (2, 3, 4), rngs=nnx.Rngs(0))


def test_einsum_string_per_call_and_broadcast_bias():
    layer = nnx.Einsum(
        "ab,bc->ac", (3, 4), (1, 4), bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (2, 3))
    assert layer.bias is not None
    k, b = layer.kernel[...], layer.bias[...]
    np.testing.assert_allclose(layer(x), x @ k + b, **TOL)
    # the same kernel contracted another way, chosen at call time: x given transposed
    np.testing.assert_allclose(layer(x.T, "ba,bc->ac"), x @ k + b, **TOL)


@pytest.mark.parametrize(
    "kw, matrix",
    [
        (dict(in_features=4, out_features=(2, 3)), (4, 6)),
        (dict(in_features=(2, 3), out_features=4, axis=(-2, -1)), (6, 4)),
        (dict(in_features=3, out_features=5, batch_axis={0: 2}), (6, 5)),
    ],
)
def test_linear_general_initializes_the_kernel_as_a_matrix_as_in_flax(kw, matrix):
    # Flax NNX: the initializer sees (prod(batch + in), prod(out)), the result is reshaped,
    # so LeCun's fan-in is the whole contraction (and MultiHeadAttention's q/k/v match)
    layer = nnx.LinearGeneral(**kw, rngs=nnx.Rngs(0))
    key = nnx.Rngs(0).params()
    expected = nnx.initializers.lecun_normal()(key, matrix).reshape(layer.kernel.shape)
    np.testing.assert_array_equal(layer.kernel[...], expected)
    init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("a",) * layer.kernel.ndim)
    named = nnx.LinearGeneral(**kw, kernel_init=init, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(named.kernel[...], expected)
    assert named.kernel.sharding_names == ("a",) * layer.kernel.ndim
