"""cond, switch, fori_loop, while_loop over nnx objects."""

from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Counter, Linear, add_bias

import nnx


@pytest.mark.parametrize("pred", [True, False])
def test_cond_updates_come_out_from_the_taken_branch(mode, pred):
    c = Counter()

    def inc(c, k):
        c.count[...] += k
        return c.count[...] * 10

    def dec(c, k):
        c.count[...] -= k
        return c.count[...] * 10

    out = nnx.cond(pred, inc, dec, c, 2)
    expected = 2 if pred else -2
    assert int(c.count[...]) == expected and int(out) == 10 * expected


def test_cond_inside_jit_with_traced_predicate():
    c = Counter()

    @nnx.jit
    def step(c):
        nnx.cond(c.count[...] >= 2, lambda c: c.count.set_value(jnp.array(0)), lambda c: c(), c)

    for _ in range(4):
        step(c)
    assert int(c.count[...]) == 1  # 1, 2, reset to 0, 1


def test_switch(mode):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))
    branches = [lambda m, x: m(x), lambda m, x: m(m(x)), lambda m, x: x]
    np.testing.assert_allclose(nnx.switch(1, branches, m, x), m(m(x)), rtol=1e-5)


def test_fori_loop_carries_module_and_arrays(mode):
    c = Counter()

    def body(i, val):
        c, total = val
        c()
        return c, total + i

    c2, total = nnx.fori_loop(0, 5, body, (c, jnp.array(0)))
    assert c2 is c and int(c.count[...]) == 5 and int(total) == 10


def test_while_loop(mode):
    c = Counter()
    out_c, x = nnx.while_loop(
        lambda v: v[0].count[...] < 3,
        lambda v: cast(tuple[Counter, jax.Array], (v[0], v[1] * 2) if v[0]() is None else None),
        (c, jnp.array(1.0)),
    )
    assert out_c is c and int(c.count[...]) == 3 and float(x) == 8.0


def test_loop_body_must_return_the_same_objects():
    with pytest.raises(nnx.transforms.CarryError, match="same nnx objects"):
        nnx.fori_loop(0, 2, lambda i, c: Counter(), Counter())
    with pytest.raises(nnx.transforms.CarryError, match="changed type"):
        nnx.fori_loop(0, 2, lambda i, v: (v[0], v[1].astype(jnp.int32)), (Counter(), jnp.ones(2)))


def test_outer_variable_written_in_loop_raises_trace_context_error():
    captured = Counter()  # not passed in: JAX cannot carry its write

    def body(i, x):
        captured()
        return x

    with pytest.raises(nnx.TraceContextError, match="created outside"):
        nnx.fori_loop(0, 2, body, jnp.zeros(()))
    with pytest.raises(nnx.TraceContextError):
        jax.jit(lambda: captured())()
    assert int(captured.count[...]) == 0


def test_switch_writes_of_the_taken_branch_come_out(mode):
    c = Counter()
    branches = [
        lambda c, x: x,
        lambda c, x: (c(), x * 2)[1],
        lambda c, x: (c.count.set_value(jnp.array(7)), x * 3)[1],
    ]
    for i, (count, scale) in enumerate([(0, 1), (1, 2), (7, 3)]):
        out = nnx.switch(i, branches, c, jnp.ones(2))
        assert int(c.count[...]) == count
        np.testing.assert_allclose(out, scale * np.ones(2))


@pytest.mark.parametrize("pred", [True, False])
def test_cond_returns_new_modules_in_every_mode(mode, pred):
    out = nnx.cond(
        pred, lambda: Linear(2, 2, rngs=nnx.Rngs(0)), lambda: Linear(2, 2, rngs=nnx.Rngs(1))
    )
    expected = Linear(2, 2, rngs=nnx.Rngs(0 if pred else 1))
    assert isinstance(out, Linear)
    d = nnx.var_defaults()
    assert (out.w.ref, out.w.hijax) == (d.ref, d.hijax)
    np.testing.assert_allclose(out.w[...], expected.w[...], rtol=1e-6)
    out.b[...] = out.b[...] + 1  # an ordinary, writable module


def test_fori_loop_unroll_matches_lax_fori_loop(mode):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))
    _, y = nnx.fori_loop(0, 4, lambda i, v: (v[0], jnp.tanh(v[0](v[1]))), (m, x), unroll=2)
    ref = jax.lax.fori_loop(0, 4, lambda i, h: jnp.tanh(add_bias(h @ m.w[...], m.b[...])), x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
