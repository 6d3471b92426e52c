import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def test_sequential_chains_modules_and_functions():
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(nnx.Linear(2, 8, rngs=rngs), nnx.relu, nnx.Linear(8, 1, rngs=rngs))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    l1, l2 = model.layers[0], model.layers[2]
    expected = jax.nn.relu(x @ l1.kernel[...] + l1.bias[...]) @ l2.kernel[...] + l2.bias[...]
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-5)
    assert len(model) == 3 and model[0] is l1
    _, params = nnx.split(model, nnx.Param)
    assert len(jax.tree.leaves(params)) == 4


def test_sequential_unpacks_tuples_and_dicts():
    model = nnx.Sequential(lambda a, b: (a + b, a - b), lambda s, d: {"x": s * d}, lambda x: x + 1)
    assert model(3, 2) == (3 + 2) * (3 - 2) + 1


def test_sequential_train_eval_reaches_children():
    model = nnx.Sequential(nnx.Dropout(0.5), nnx.BatchNorm(2, rngs=nnx.Rngs(0)))
    model.eval()
    assert model.layers[0].deterministic and model.layers[1].use_running_average


def test_sequential_works_under_jit_in_hijax_mode():
    with nnx.var_defaults(hijax=True):
        model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.gelu)
    y = jax.jit(lambda m, x: m(x))(model, jnp.ones((1, 2)))
    assert y.shape == (1, 3)


def test_max_avg_min_pool_by_hand():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(nnx.max_pool(x, (2, 2), (2, 2))[0, ..., 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(nnx.min_pool(x, (2, 2), (2, 2))[0, ..., 0], [[0, 2], [8, 10]])
    np.testing.assert_array_equal(
        nnx.avg_pool(x, (2, 2), (2, 2))[0, ..., 0], [[2.5, 4.5], [10.5, 12.5]]
    )


def test_avg_pool_count_include_pad():
    x = jnp.ones((1, 3, 1))
    with_pad = nnx.avg_pool(x, (2,), padding=((1, 0),))
    without = nnx.avg_pool(x, (2,), padding=((1, 0),), count_include_pad=False)
    np.testing.assert_allclose(with_pad[0, :, 0], [0.5, 1.0, 1.0])
    np.testing.assert_allclose(without[0, :, 0], [1.0, 1.0, 1.0])


def test_pool_unbatched_and_same_padding():
    x = jax.random.normal(jax.random.key(0), (5, 5, 2))
    y = nnx.max_pool(x, (3, 3), padding="SAME")
    assert y.shape == (5, 5, 2)
    assert float(y[2, 2, 0]) == float(jnp.max(x[1:4, 1:4, 0]))
    with pytest.raises(nnx.layers.ShapeError, match="at least 3 axes"):
        nnx.max_pool(jnp.ones((4, 4)), (2, 2))


def test_max_pool_integer_inputs():
    x = jnp.arange(4, dtype=jnp.int32).reshape(1, 4, 1)
    np.testing.assert_array_equal(nnx.max_pool(x, (2,), (2,))[0, :, 0], [1, 3])


@pytest.mark.parametrize(
    "name", ["gelu", "relu", "silu", "tanh", "sigmoid", "softmax", "log_softmax", "elu"]
)
def test_activations_are_jax_nn(name):
    x = jnp.linspace(-3, 3, 7)
    np.testing.assert_allclose(getattr(nnx, name)(x), getattr(jax.nn, name)(x), rtol=1e-6)


def test_relu_and_softmax_by_hand():
    np.testing.assert_array_equal(nnx.relu(jnp.array([-1.0, 2.0])), [0.0, 2.0])
    e = np.exp([1.0, 2.0])
    np.testing.assert_allclose(nnx.softmax(jnp.array([1.0, 2.0])), e / e.sum(), rtol=1e-6)
    np.testing.assert_array_equal(nnx.one_hot(jnp.array([2]), 3), [[0, 0, 1]])


def test_prelu():
    act = nnx.PReLU(negative_slope_init=0.1)
    np.testing.assert_allclose(act(jnp.array([-1.0, 2.0])), [-0.1, 2.0], rtol=1e-6)
    assert isinstance(act.negative_slope, nnx.Param)


def test_initializers():
    key = jax.random.key(0)
    init = nnx.initializers
    np.testing.assert_array_equal(init.zeros(key, (2, 3)), 0.0)
    np.testing.assert_array_equal(init.ones_init()(key, (2,)), 1.0)
    w = init.variance_scaling(2.0, "fan_in", "normal")(key, (400, 300))
    assert abs(float(jnp.std(w)) - np.sqrt(2.0 / 400)) < 0.005
    w = init.xavier_uniform()(key, (200, 100))
    limit = np.sqrt(6.0 / 300)
    assert float(jnp.max(jnp.abs(w))) <= limit
    assert init.lecun_normal()(key, (3, 3), jnp.bfloat16).dtype == jnp.bfloat16
    assert abs(float(jnp.std(init.normal(0.5)(key, (1000,)))) - 0.5) < 0.05
    assert "lecun_normal" in init.__all__ and nnx.initializers is init
