"""nnx.grad / nnx.value_and_grad: Params by default, DiffState, State-shaped grads, updates."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import MLP, SGD, Linear, add_bias, mlp_reference

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)


def _params(model):
    return jax.tree.map(lambda v: v[...], nnx.state(model, nnx.Param).to_pure_dict())


def test_grads_are_a_state_of_params_matching_plain_jax(mode):
    model = MLP(2, 4, 3, rngs=nnx.Rngs(0))
    model.dropout.rate = 0.0
    x = jnp.arange(6.0).reshape(3, 2)
    mean0 = model.bn.mean[...]
    params = _params(model)

    def loss_fn(model, x):
        return jnp.mean(model(x) ** 2)

    loss, grads = nnx.value_and_grad(loss_fn)(model, x)

    def ref(p):
        y, _ = mlp_reference(p, mean0, x)
        return jnp.mean(y**2)

    ref_loss, ref_g = jax.value_and_grad(ref)(params)
    np.testing.assert_allclose(loss, ref_loss, **TOL)
    assert isinstance(grads, nnx.State)
    assert set(grads.keys()) == {"linear1", "linear2"}  # no BatchStat, no RNG state
    assert isinstance(grads["linear1"]["w"], nnx.Param)
    for layer in ("linear1", "linear2"):
        for name in ("w", "b"):
            np.testing.assert_allclose(grads[layer][name][...], ref_g[layer][name], **TOL)
    # non-differentiated state is updated outside
    _, new_mean = mlp_reference(params, mean0, x)
    np.testing.assert_allclose(model.bn.mean[...], new_mean, **TOL)


def test_diffstate_selects_other_state():
    class Lora(nnx.Param):
        pass

    m = Linear(2, 2, rngs=nnx.Rngs(0))
    m.a = Lora(jnp.ones((2,)))
    grads = nnx.grad(
        lambda m: jnp.sum(m.a[...] ** 2 * m.w[...].sum()), argnums=nnx.DiffState(0, Lora)
    )(m)
    assert list(grads.keys()) == ["a"]
    # m.a is added at run time on purpose: Linear does not declare it
    a = m.a  # pyright: ignore[reportAttributeAccessIssue]
    np.testing.assert_allclose(grads["a"][...], 2 * a[...] * m.w[...].sum(), **TOL)


def test_several_argnums_and_plain_arguments():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))
    gm, gx = nnx.grad(lambda m, x: jnp.sum(m(x)), argnums=(0, 1))(m, x)
    np.testing.assert_allclose(gx, jnp.sum(m.w[...], axis=1)[None], **TOL)
    np.testing.assert_allclose(gm["w"][...], jnp.ones((2, 2)), **TOL)


def test_has_aux_returns_objects():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    (loss, aux), g = nnx.value_and_grad(lambda m: (jnp.sum(m.w[...]), (m, 3.0)), has_aux=True)(m)
    assert aux[0] is m and aux[1] == 3.0
    np.testing.assert_allclose(g["w"][...], np.ones((2, 2)))


def test_grad_of_a_state_argument():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    params = nnx.state(m, nnx.Param)
    g = nnx.grad(lambda p: jnp.sum(p["w"][...] * 2))(params)
    np.testing.assert_allclose(g["w"][...], 2 * np.ones((2, 2)))


def test_grad_inside_jit_inside_vmap(mode):
    @nnx.vmap(in_axes=0, out_axes=0)
    def create(key):
        return Linear(2, 2, rngs=nnx.Rngs(key))

    stack = create(jax.random.split(jax.random.key(0), 3))
    x = jnp.ones((4, 2))

    @nnx.vmap(in_axes=(0, None))
    @nnx.jit
    def member_grads(m, x):
        return nnx.grad(lambda m: jnp.mean(m(x) ** 2))(m)

    g = member_grads(stack, x)
    for i in range(3):
        w, b = stack.w[i], stack.b[i]
        ref = jax.grad(lambda w, b: jnp.mean(add_bias(x @ w, b) ** 2))(w, b)
        np.testing.assert_allclose(g["w"][...][i], ref, **TOL)


def test_argnums_errors_are_clear():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="argnums asks for argument 3"):
        nnx.grad(lambda m: jnp.sum(m.w[...]), argnums=3)(m)
    with pytest.raises(TypeError, match="has_aux=True"):
        nnx.grad(lambda m: jnp.sum(m.w[...]), has_aux=True)(m)


def test_rng_counts_and_dropout_state_update_outside(mode):
    model = MLP(2, 4, 3, rngs=nnx.Rngs(0))
    count0 = int(model.dropout.rngs.count[...])
    key0 = model.dropout.rngs.key[...]
    x = jnp.ones((3, 2))

    def loss_fn(model):
        return jnp.sum(model(x))

    nnx.grad(loss_fn)(model)
    nnx.value_and_grad(loss_fn)(model)
    assert int(model.dropout.rngs.count[...]) == count0 + 2
    np.testing.assert_array_equal(
        jax.random.key_data(model.dropout.rngs.key[...]), jax.random.key_data(key0)
    )


def test_model_and_optimizer_that_holds_it_stay_shared(mode):
    model = Linear(2, 2, rngs=nnx.Rngs(0))
    opt = SGD(model)
    x = jnp.ones((1, 2))
    seen = []

    def loss_fn(model, opt):
        seen.append(opt.model is model)
        opt.step[...] += 1  # non-differentiated state of the second argument
        return jnp.sum(model(x) ** 2)

    w0, b0 = model.w[...], model.b[...]
    grads = nnx.grad(loss_fn)(model, opt)
    assert seen == [True] and opt.model is model and int(opt.step[...]) == 1
    gw, gb = jax.grad(lambda w, b: jnp.sum(add_bias(x @ w, b) ** 2), argnums=(0, 1))(w0, b0)
    np.testing.assert_allclose(grads["w"][...], gw, **TOL)
    np.testing.assert_allclose(grads["b"][...], gb, **TOL)


def test_diffstate_on_a_later_argument_with_aux(mode):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.arange(2.0)[None] + 1

    def loss_fn(x, m):
        y = m(x)
        return jnp.sum(y**2), y

    (loss, y), (gx, gm) = nnx.value_and_grad(
        loss_fn, argnums=(0, nnx.DiffState(1, "b")), has_aux=True
    )(x, m)
    ref_l, (rgx, rgb) = jax.value_and_grad(
        lambda x, b: jnp.sum(add_bias(x @ m.w[...], b) ** 2), argnums=(0, 1)
    )(x, m.b[...])
    np.testing.assert_allclose(loss, ref_l, **TOL)
    np.testing.assert_allclose(y, add_bias(x @ m.w[...], m.b[...]), **TOL)
    np.testing.assert_allclose(gx, rgx, **TOL)
    assert list(gm.keys()) == ["b"]
    np.testing.assert_allclose(gm["b"][...], rgb, **TOL)


def test_jit_of_vmap_of_grad_updates_batch_stats_like_plain_jax(mode):
    stack = nnx.vmap(lambda k: MLP(2, 4, 2, rngs=nnx.Rngs(k)))(
        jax.random.split(jax.random.key(0), 3)
    )
    stack.dropout.rate = 0.0
    x = jnp.arange(8.0).reshape(4, 2)
    params = jax.tree.map(lambda v: v[...], nnx.state(stack, nnx.Param).to_pure_dict())
    mean0 = stack.bn.mean[...]

    @nnx.jit
    @nnx.vmap(in_axes=(0, None))
    def member_grads(m, x):
        return nnx.grad(lambda m: jnp.mean(m(x) ** 2))(m)

    g = member_grads(stack, x)

    def ref(p, mean):
        y, new_mean = mlp_reference(p, mean, x)
        return jnp.mean(y**2), new_mean

    ref_g, ref_mean = jax.vmap(jax.grad(ref, has_aux=True))(params, mean0)
    np.testing.assert_allclose(g["linear1"]["w"][...], ref_g["linear1"]["w"], **TOL)
    np.testing.assert_allclose(g["linear2"]["b"][...], ref_g["linear2"]["b"], **TOL)
    np.testing.assert_allclose(stack.bn.mean[...], ref_mean, **TOL)


# -- grad through the boundary's Crossing (#13): the output rules of every transform ------
class _Box(nnx.Module):
    def __init__(self, x):
        self.w = nnx.Param(x)


def test_a_module_made_inside_comes_out_of_aux_without_nnx_arguments():
    def f(x):
        return jnp.sum(x**2), _Box(x * 2)

    g, aux = nnx.grad(f, has_aux=True)(jnp.ones(2))
    np.testing.assert_allclose(g, [2.0, 2.0])
    assert isinstance(aux, _Box)  # was the boundary's internal NodeLeaves
    np.testing.assert_allclose(aux.w[...], [2.0, 2.0])


def test_the_cell_rule_under_hijax_defaults():
    with nnx.var_defaults(hijax=True):
        m = _Box(jnp.array([1.0, 3.0]))

        def f(m):
            tmp = _Box(jnp.array([2.0, 2.0]))  # a temporary: plain inside, no cell
            return jnp.sum(m.w[...] * tmp.w[...]), _Box(m.w[...] + 1)

        g, aux = nnx.grad(f, has_aux=True)(m)
    np.testing.assert_allclose(g["w"][...], [2.0, 2.0])
    assert isinstance(aux, _Box) and aux.w.hijax  # a new module gets its mode back outside
    np.testing.assert_allclose(aux.w[...], [2.0, 4.0])
