from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

import nnx


def test_sequential_chains_modules_and_functions():
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(nnx.Linear(2, 8, rngs=rngs), nnx.relu, nnx.Linear(8, 1, rngs=rngs))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    l1, l2 = cast(nnx.Linear, model.layers[0]), cast(nnx.Linear, model.layers[2])
    assert l1.bias is not None and l2.bias is not None
    hidden = jax.nn.relu(x @ l1.kernel[...] + l1.bias[...][None, :])  # explicit batch axis
    expected = hidden @ l2.kernel[...] + l2.bias[...][None, :]
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
    drop, bn = cast(nnx.Dropout, model.layers[0]), cast(nnx.BatchNorm, model.layers[1])
    assert drop.deterministic and bn.use_running_average


def test_sequential_works_under_jit_in_hijax_mode():
    with nnx.var_defaults(hijax=True):
        model = nnx.Sequential(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), nnx.gelu)
    y = jax.jit(lambda m, x: m(x))(model, jnp.ones((1, 2)))
    assert y.shape == (1, 3)
