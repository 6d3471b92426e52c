"""nnx.grad over nnx.State arguments: a plain int in argnums differentiates every Variable
of a State (Flax NNX's perturbation recipe), and only the Params of an nnx object."""

import jax
import jax.numpy as jnp
import numpy as np

import nnx


class Dense(nnx.Module):
    def __init__(self, din, dout, *, rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (din, dout)))
        self.bias = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...][None, :]


class Model(nnx.Module):
    def __init__(self, rngs):
        self.linear1 = Dense(2, 3, rngs=rngs)
        self.linear2 = Dense(3, 4, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.gelu(self.linear1(x))
        h = self.perturb("xgrad", h)
        return self.linear2(h)


def test_the_gradient_of_a_perturbation_state_is_the_intermediate_gradient():
    rngs = nnx.Rngs(0)
    model = Model(rngs)
    x, y = rngs.uniform((1, 2)), rngs.uniform((1, 4))  # pyright: ignore[reportCallIssue]
    model(x)  # creates the perturbation
    graphdef, params, perturbations = nnx.split(model, nnx.Param, nnx.Perturbation)

    def loss_fn(params, perturbations):
        m = nnx.merge(graphdef, params, perturbations)
        return jnp.mean((m(x) - y) ** 2)

    loss, (grads, inter) = nnx.value_and_grad(loss_fn, argnums=(0, 1))(params, perturbations)
    # by hand: dL/dh = 2/n (h @ W2 + b2 - y) @ W2.T
    w1, b1 = model.linear1.kernel[...], model.linear1.bias[...]
    w2, b2 = model.linear2.kernel[...], model.linear2.bias[...]
    h = jax.nn.gelu(x @ w1 + b1[None, :])
    out = h @ w2 + b2[None, :]
    expected = 2.0 / out.size * (out - y) @ w2.T
    np.testing.assert_allclose(inter["xgrad"][...], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss, jnp.mean((out - y) ** 2), rtol=1e-6)
    assert set(grads["linear2"]) == {"kernel", "bias"}

    @nnx.jit  # the same inside nnx.jit, as Flax's Pytree guide trains it
    def step(params, perturbations):
        return nnx.grad(loss_fn, argnums=1)(params, perturbations)

    np.testing.assert_allclose(
        step(params, perturbations)["xgrad"][...], expected, rtol=1e-5, atol=1e-7
    )


def test_every_variable_of_a_state_but_only_the_params_of_a_module():
    class Net(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.array(2.0))
            self.s = nnx.BatchStat(jnp.array(3.0))

    net = Net()

    def f(obj):
        return obj["w"][...] * obj["s"][...] if isinstance(obj, nnx.State) else obj.w * obj.s

    g_state = nnx.grad(f)(nnx.state(net))
    assert float(g_state["w"][...]) == 3.0 and float(g_state["s"][...]) == 2.0
    g_module = nnx.grad(f)(net)
    assert set(g_module) == {"w"} and float(g_module["w"][...]) == 3.0
    g_filtered = nnx.grad(f, argnums=nnx.DiffState(0, nnx.Param))(nnx.state(net))
    assert set(g_filtered) == {"w"}
