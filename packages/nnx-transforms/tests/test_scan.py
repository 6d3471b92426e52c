"""nnx.scan: scan over layers, carry at any position, broadcast state, carry errors."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import MLP, BatchNorm, Counter, Linear, add_bias

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-5)


def _stack(n=4):
    return nnx.vmap(lambda k: Linear(3, 3, rngs=nnx.Rngs(k)))(
        jax.random.split(jax.random.key(0), n)
    )


def test_scan_over_layers_matches_a_python_loop(mode):
    stack = _stack()

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def forward(layer, x):
        return jnp.tanh(layer(x))

    x = jnp.ones((2, 3))
    y = forward(stack, x)
    ref = x
    for i in range(4):
        ref = jnp.tanh(add_bias(ref @ stack.w[i], stack.b[i]))
    np.testing.assert_allclose(y, ref, **TOL)


def test_seed_003_vmap_then_scan_updates_batchnorm_and_dropout(mode):
    @nnx.vmap(in_axes=0, out_axes=0)
    def create_model(key):
        return MLP(3, 4, 3, rngs=nnx.Rngs(key))

    model = create_model(jax.random.split(jax.random.key(0), 5))

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def forward(model, x):
        return model(x)

    y = forward(model, jnp.ones((2, 3)))
    assert y.shape == (2, 3)
    np.testing.assert_array_equal(model.dropout.rngs.count[...], np.ones(5))
    assert model.bn.mean.shape == (5, 4) and bool(jnp.all(model.bn.mean[...] != 0))


def test_carry_first_and_stacked_outputs():
    stack = _stack(3)

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def f(x, layer):
        y = layer(x)
        return y, jnp.sum(y)

    x = jnp.ones((1, 3))
    y, sums = f(x, stack)
    ref = x
    for i in range(3):
        ref = add_bias(ref @ stack.w[i], stack.b[i])
        np.testing.assert_allclose(sums[i], jnp.sum(ref), **TOL)
    np.testing.assert_allclose(y, ref, **TOL)


def test_broadcast_module_state_carries_over_steps(mode):
    counter = Counter()

    @nnx.scan(in_axes=(None, nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def loop(c, total, x):
        c()
        return total + x, c.count[...]

    total, counts = loop(counter, jnp.zeros(()), jnp.arange(4.0))
    assert int(counter.count[...]) == 4
    np.testing.assert_array_equal(counts, [1, 2, 3, 4])
    assert float(total) == 6.0


def test_module_carry_must_come_back_as_the_same_object():
    c = Counter()

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry, length=3)
    def ok(c, x):
        c()
        return c

    assert ok(c, jnp.arange(3.0)) is c and int(c.count[...]) == 3

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def bad(c, x):
        return Counter()

    with pytest.raises(nnx.transforms.CarryError, match="same carry object"):
        bad(c, jnp.arange(3.0))


def test_reverse_matches_lax_scan():
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0), reverse=True)
    def f(c, x):
        return c + x, c

    c, ys = f(jnp.zeros(()), jnp.arange(3.0))
    ref_c, ref_ys = jax.lax.scan(lambda c, x: (c + x, c), 0.0, jnp.arange(3.0), reverse=True)
    np.testing.assert_array_equal(ys, ref_ys)
    assert float(c) == float(ref_c)


def test_carry_structure_or_dtype_change_is_an_error():
    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def grows(c, x):
        return (c, x)

    with pytest.raises(nnx.transforms.CarryError, match="changed structure"):
        grows(jnp.zeros(()), jnp.arange(3.0))

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def casts(c, x):
        return c.astype(jnp.int32)

    with pytest.raises(nnx.transforms.CarryError, match="float32.*int32"):
        casts(jnp.zeros(()), jnp.arange(3.0))

    counter = Counter()

    @nnx.scan(in_axes=(None, 0), out_axes=0)
    def var_dtype(c, x):
        c.count.set_value(x)  # (`c.count[...] = x` would cast x to the int dtype)
        return x

    with pytest.raises(nnx.transforms.CarryError, match="count.*carried"):
        var_dtype(counter, jnp.arange(3.0))
    assert int(counter.count[...]) == 0


def test_mismatched_scan_lengths_and_missing_carry_marker():
    a, b = _stack(3), _stack(4)
    with pytest.raises(nnx.transforms.AxisError, match="mismatched sizes"):
        nnx.scan(lambda a, b: 0, in_axes=(0, 0), out_axes=0)(a, b)
    with pytest.raises(nnx.transforms.AxisError, match="both in_axes and out_axes"):
        nnx.scan(lambda a, x: x, in_axes=(0, nnx.Carry), out_axes=0)(a, jnp.ones(3))


def test_scan_inside_jit_with_grad(mode):
    stack = _stack(3)
    x = jnp.ones((2, 3))

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def forward(layer, x):
        return jnp.tanh(layer(x))

    @nnx.jit
    def loss_grad(stack):
        return nnx.grad(lambda s: jnp.sum(forward(s, x) ** 2))(stack)

    g = loss_grad(stack)

    def ref(ws, bs):
        h = x
        for i in range(3):
            h = jnp.tanh(add_bias(h @ ws[i], bs[i]))
        return jnp.sum(h**2)

    gw = jax.grad(ref)(stack.w[...], stack.b[...])
    np.testing.assert_allclose(g["w"][...], gw, **TOL)


@pytest.mark.parametrize("unroll", [1, 2, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_reverse_and_unroll_over_a_stack_match_lax_scan(mode, reverse, unroll):
    stack = _stack(4)
    x = jnp.full((2, 3), 0.5)

    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=(0, nnx.Carry), reverse=reverse, unroll=unroll)
    def forward(layer, h):
        h = jnp.tanh(layer(h))
        return jnp.sum(h), h

    sums, y = forward(stack, x)

    def body(h, wb):
        h = jnp.tanh(add_bias(h @ wb[0], wb[1]))
        return h, jnp.sum(h)

    ref_y, ref_sums = jax.lax.scan(body, x, (stack.w[...], stack.b[...]), reverse=reverse)
    np.testing.assert_allclose(y, ref_y, **TOL)
    np.testing.assert_allclose(sums, ref_sums, **TOL)


def test_length_without_scanned_inputs_and_carry_in_the_middle(mode):
    counter = Counter()

    @nnx.scan(in_axes=(None, nnx.Carry, None), out_axes=(0, nnx.Carry), length=5)
    def f(c, h, scale):
        c()
        return c.count[...] * scale, h * scale

    ys, h = f(counter, jnp.ones(()), 2.0)
    np.testing.assert_allclose(ys, 2.0 * np.arange(1, 6), **TOL)
    np.testing.assert_allclose(h, 2.0**5, **TOL)
    assert int(counter.count[...]) == 5


def test_batchnorm_statistics_of_every_scanned_layer_match_a_loop(mode):
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = Linear(3, 3, rngs=rngs)
            self.bn = BatchNorm(3)

        def __call__(self, x):
            return jnp.tanh(self.bn(self.linear(x)))

    stack = nnx.vmap(lambda k: Block(nnx.Rngs(k)))(jax.random.split(jax.random.key(0), 4))
    x = jnp.arange(6.0).reshape(2, 3)
    ws, bs = stack.linear.w[...], stack.linear.b[...]

    y = nnx.scan(lambda blk, h: blk(h), in_axes=(0, nnx.Carry), out_axes=nnx.Carry)(stack, x)

    h, means = x, []
    for i in range(4):
        z = add_bias(h @ ws[i], bs[i])
        means.append(0.1 * z.mean(0))
        h = jnp.tanh(z - z.mean(0, keepdims=True))
    np.testing.assert_allclose(y, h, **TOL)
    np.testing.assert_allclose(stack.bn.mean[...], jnp.stack(means), **TOL)


def test_state_axes_scan_params_and_carry_a_step_counter(mode):
    stack = _stack(3)
    stack.steps = nnx.BatchStat(jnp.array(0))
    axes = nnx.StateAxes({nnx.Param: 0, nnx.BatchStat: nnx.Carry})

    @nnx.scan(in_axes=(axes, nnx.Carry), out_axes=nnx.Carry)
    def forward(layer, h):
        layer.steps[...] += 1
        return layer(h)

    x = jnp.ones((1, 3))
    y = forward(stack, x)
    ref = x
    for i in range(3):
        ref = add_bias(ref @ stack.w[i], stack.b[i])
    np.testing.assert_allclose(y, ref, **TOL)
    # stack.steps is added at run time on purpose: Linear does not declare it
    assert int(stack.steps[...]) == 3  # pyright: ignore[reportAttributeAccessIssue]


def test_carry_is_the_core_object():
    # nnx.scan and nnx.RNN (nnx-layers, which does not import nnx-transforms) see one marker
    assert nnx.transforms.Carry is nnx.core.Carry is nnx.Carry
