"""Raw array attributes as state (#20): a replaced array inside any transform is seen outside."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Counted(nnx.Module):
    def __init__(self):
        self.count = jnp.array(0)  # a raw array attribute, not a Variable
        self.w = nnx.Param(jnp.ones(2))

    def __call__(self, x):
        self.count += 1
        return x * self.w[...]


def test_a_raw_array_counter_inside_jit_is_seen_outside():
    m = Counted()
    f = nnx.jit(lambda m, x: m(x))
    for _ in range(3):
        np.testing.assert_allclose(f(m, jnp.ones(2)), [1.0, 1.0])
    assert int(m.count) == 3


def test_an_array_replaced_in_a_dict_argument_comes_out():
    m = Counted()
    c = {"m": m, "s": jnp.array(1.0)}

    @nnx.jit
    def g(c):
        c["s"] = c["s"] * 2
        return c["m"](jnp.ones(2)) * c["s"]

    np.testing.assert_allclose(g(c), [2.0, 2.0])
    np.testing.assert_allclose(g(c), [4.0, 4.0])
    assert float(c["s"]) == 4.0 and int(m.count) == 2


def test_an_array_in_a_tuple_cannot_be_written_and_says_so():
    class HoldsTuple(nnx.Module):
        def __init__(self):
            self.pair = (jnp.array(0.0), nnx.Param(jnp.ones(1)))

    @nnx.jit
    def f(m, other):
        other.w[...] = other.w[...] + 1  # a Variable write that must not happen alone
        m.pair = (m.pair[0] + 1, m.pair[1])

    m, other = HoldsTuple(), Counted()
    with pytest.raises(nnx.StructureError, match="held by a tuple.*Nothing was written"):
        f(m, other)
    np.testing.assert_allclose(other.w[...], [1.0, 1.0])
    assert float(m.pair[0]) == 0.0


# -- every transform writes a replaced raw array back (one code path: _boundary) -----------
X2 = jnp.array([1.0, 2.0])


class Stack(nnx.Module):
    """A raw-array counter and a Variable counter with the same axes, side by side."""

    def __init__(self, count):
        self.count = count  # raw array
        self.calls = nnx.BatchStat(count)

    def __call__(self, x):
        self.count = self.count + x.astype(self.count.dtype)
        self.calls[...] = self.calls[...] + x.astype(self.count.dtype)
        return x


def test_grad_and_value_and_grad_write_the_counter_back(mode):
    m = Counted()
    g = nnx.grad(lambda m, x: jnp.sum(m(x)))(m, X2)
    np.testing.assert_allclose(g["w"][...], X2)  # d sum(x * w) / dw
    assert int(m.count) == 1
    v, g = nnx.value_and_grad(lambda m, x: jnp.sum(m(x)))(m, X2)
    np.testing.assert_allclose(v, 3.0)
    assert int(m.count) == 2 and isinstance(m.count, jax.Array)


def test_grad_inside_jit_writes_the_counter_back():
    m = Counted()
    step = nnx.jit(lambda m, x: nnx.grad(lambda m: jnp.sum(m(x)))(m))
    for _ in range(3):
        step(m, X2)
    assert int(m.count) == 3


def test_remat_and_checkify_write_the_counter_back(mode):
    m = Counted()
    np.testing.assert_allclose(nnx.remat(lambda m, x: m(x))(m, X2), X2)
    assert int(m.count) == 1
    g = nnx.grad(lambda m: jnp.sum(nnx.remat(lambda m, x: m(x))(m, X2)))(m)
    np.testing.assert_allclose(g["w"][...], X2)
    assert int(m.count) == 2
    err, _ = nnx.checkify(lambda m, x: m(x))(m, X2)
    assert err.get() is None and int(m.count) == 3


def test_vmap_broadcast_counter_is_written_once(mode):
    m = Counted()
    xs = jnp.ones((3, 2))
    out = nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(m, xs)
    np.testing.assert_allclose(out, xs)
    assert int(m.count) == 1 and m.count.shape == ()


def test_vmap_mapped_counter_keeps_its_axis_like_a_variable(mode):
    start = jnp.arange(6).reshape(2, 3)
    m = Stack(start)
    xs = jnp.array([10, 20, 30])
    nnx.vmap(lambda m, x: m(x), in_axes=(1, 0))(m, xs)
    # member j (column j) added xs[j]; the array keeps axis 1, as the Variable does
    expected = start + xs[None, :]
    assert m.count.shape == (2, 3)
    np.testing.assert_array_equal(m.count, expected)
    np.testing.assert_array_equal(m.calls[...], expected)


class RawOnly(nnx.Module):
    def __init__(self):
        self.count = jnp.array(0)

    def __call__(self, x):
        self.count = self.count + x


def test_vmap_broadcast_counter_written_per_member_is_an_axis_error():
    m = RawOnly()
    with pytest.raises(nnx.AxisError, match=r"array at 'm/count' has in_axes None"):
        nnx.vmap(lambda m, x: m(x), in_axes=(None, 0))(m, jnp.arange(3))
    assert int(m.count) == 0


def test_scan_carried_and_scanned_counters(mode):
    m = Counted()

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))
    def run(m, x):
        return m, m(x)

    _, ys = run(m, jnp.ones((5, 2)))
    np.testing.assert_allclose(ys, jnp.ones((5, 2)))
    assert int(m.count) == 5

    stack = Stack(jnp.zeros(4, jnp.int32))

    @nnx.scan(in_axes=(0, 0), out_axes=0)
    def each(s, x):
        return s(x)

    each(stack, jnp.array([1, 2, 3, 4]))
    np.testing.assert_array_equal(stack.count, [1, 2, 3, 4])
    np.testing.assert_array_equal(stack.calls[...], [1, 2, 3, 4])


def test_cond_and_switch_write_the_counter_back(mode):
    m = Counted()

    def up(m):
        m.count = m.count + 1

    def down(m):
        m.count = m.count - 10

    nnx.cond(jnp.array(True), up, down, m)
    assert int(m.count) == 1
    nnx.cond(jnp.array(False), up, down, m)
    assert int(m.count) == -9
    nnx.switch(jnp.array(0), [up, down], m)
    assert int(m.count) == -8


def test_fori_loop_and_while_loop_write_the_counter_back(mode):
    m = Counted()

    def body(i, m):
        m.count = m.count + i
        return m

    nnx.fori_loop(0, 4, body, m)
    assert int(m.count) == 0 + 1 + 2 + 3

    def cond(m):
        return m.count < 20

    def step(m):
        m.count = m.count + 5
        return m

    nnx.while_loop(cond, step, m)
    assert int(m.count) == 21


def test_jvp_and_vjp_write_the_counter_back():
    m = Counted()
    y, y_dot = nnx.jvp(lambda m: jnp.sum(m(X2)), (m,), ({"w": jnp.ones(2)},))
    np.testing.assert_allclose(y_dot, 3.0)
    assert int(m.count) == 1
    y, pullback = nnx.vjp(lambda m: jnp.sum(m(X2)), m)
    assert int(m.count) == 2
    (ct,) = pullback(jnp.array(1.0))
    np.testing.assert_allclose(ct["w"][...], X2)


def test_diffstate_path_predicate_gives_gradients_for_raw_arrays():
    class Raw(nnx.Module):
        def __init__(self):
            self.w = jnp.array([[1.0, 2.0], [3.0, 4.0]])
            self.b = jnp.array([0.5, -0.5])
            self.count = jnp.array(0)
            self.scale = nnx.Param(jnp.array(2.0))

        def __call__(self, x):
            self.count += 1
            return jnp.tanh(x @ self.w + self.b[None, :]) * self.scale

    def is_wb(path, value):
        return path[-1] in ("w", "b")

    m = Raw()
    x = jnp.array([[0.1, 0.2], [0.3, -0.4]])

    def loss(model):
        return jnp.sum(model(x) ** 2)

    grads = nnx.grad(loss, argnums=nnx.DiffState(0, is_wb))(m)
    assert sorted(grads) == ["b", "w"]

    def by_hand(w, b):
        return jnp.sum((jnp.tanh(x @ w + b[None, :]) * 2.0) ** 2)

    gw, gb = jax.grad(by_hand, argnums=(0, 1))(m.w, m.b)
    np.testing.assert_allclose(grads["w"], gw, rtol=1e-6)
    np.testing.assert_allclose(grads["b"], gb, rtol=1e-6)
    assert int(m.count) == 1
    # the default (nnx.Param) leaves the raw arrays alone
    assert sorted(nnx.grad(loss)(m)) == ["scale"]


def test_an_array_in_a_tuple_cannot_be_written_by_grad_and_says_so():
    class HoldsTuple(nnx.Module):
        def __init__(self):
            self.pair = (jnp.array(0.0), nnx.Param(jnp.ones(1)))

    def f(m, other):
        other.count += 1
        m.pair = (m.pair[0] + 1, m.pair[1])
        return jnp.sum(m.pair[1][...])

    m, other = HoldsTuple(), Counted()
    with pytest.raises(nnx.StructureError, match="held by a tuple.*Nothing was written"):
        nnx.grad(f)(m, other)
    assert int(other.count) == 0 and float(m.pair[0]) == 0.0
