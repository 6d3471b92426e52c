"""Tree mode (graph=False) with a model and its Optimizer (Flax NNX's jit_partial docs).

The Optimizer holds its model through nnx.graph_ref, a static reference in the JAX
pytree view: passing both is a tree, and the step updates the caller's model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnx


def _loss(model, x, y):
    return jnp.mean((model(x) - y) ** 2)


def _reference_step(w, b, x, y, lr):
    """One SGD step on the mean squared error, by hand (d/dw, d/db of mean((xw + b - y)^2))."""
    r = x @ w + b - y
    n = r.size
    return w - lr * (2.0 / n) * (x.T @ r), b - lr * (2.0 / n) * r.sum(0)


@pytest.mark.parametrize("how", ["jit", "jit_partial", "set_graph_mode"])
def test_model_and_optimizer_pass_tree_mode(how):
    x, y = jnp.ones((4, 2)), jnp.arange(12.0).reshape(4, 3)
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    w0, b0 = np.asarray(model.kernel[...]), np.asarray(model.bias[...])  # pyright: ignore[reportOptionalSubscript]
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)

    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(_loss)(model, x, y)
        optimizer.update(model, grads)
        return loss

    if how == "jit":
        loss = nnx.jit(train_step, graph=False)(model, optimizer, x, y)
    elif how == "jit_partial":
        loss = nnx.jit_partial(train_step, model, optimizer, graph=False)(x, y)
    else:
        with nnx.set_graph_mode(False):
            loss = nnx.jit(train_step)(model, optimizer, x, y)
    np.testing.assert_allclose(
        loss, np.mean((np.asarray(x) @ w0 + b0 - np.asarray(y)) ** 2), rtol=1e-6
    )
    w1, b1 = _reference_step(w0, b0, np.asarray(x), np.asarray(y), 0.1)
    np.testing.assert_allclose(model.kernel[...], w1, rtol=1e-5)
    np.testing.assert_allclose(model.bias[...], b1, rtol=1e-5)  # pyright: ignore[reportOptionalSubscript]
    assert int(optimizer.step[...]) == 1
    assert optimizer.model is model


def test_a_real_shared_variable_is_still_an_aliasing_error_in_tree_mode():
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    other = nnx.Linear(2, 3, rngs=nnx.Rngs(1))
    other.kernel = model.kernel  # shared data, not a graph_ref
    with pytest.raises(nnx.AliasingError, match=r"tree mode.*'a/kernel' and at 'b/kernel'"):
        nnx.jit(lambda a, b: a(jnp.ones(2)), graph=False)(model, other)


def test_find_duplicates_graph_refs_flag():
    model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    assert nnx.find_duplicates((model, optimizer)) == [[(0,), (1, "model")]]
    assert nnx.find_duplicates((model, optimizer), graph_refs=False) == []
    nnx.require_tree((model, optimizer), "test")  # passes
    # the pytree view of the optimizer does not hold the model's arrays
    model_leaves = {id(v) for v in jax.tree.leaves(model)}
    assert jax.tree.leaves(optimizer)
    assert not model_leaves & {id(v) for v in jax.tree.leaves(optimizer)}
