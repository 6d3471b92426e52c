"""The transform contract (#13), for every transform x every Variable mode.

- sharing across arguments: ``f(m, m)`` sees one Variable inside (a write through
  the first argument is read through the second) and the write comes out once;
- a temporary module created inside the function works (hijax cell rule);
- an exception after writes leaves everything outside unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Linear

import nnx


class W(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.array(1.0))


def f(p, q):
    p.w[...] = p.w[...] * 2.0
    return q.w[...] * 3.0


SHARING = {
    "jit": lambda m: nnx.jit(f)(m, m),
    "value_and_grad": lambda m: nnx.value_and_grad(f)(m, m)[0],
    "vmap": lambda m: nnx.vmap(lambda p, q, x: f(p, q) + 0 * x, in_axes=(None, None, 0))(
        m, m, jnp.ones(2)
    )[0],
    "cond": lambda m: nnx.cond(True, f, f, m, m),
    "switch": lambda m: nnx.switch(0, [f, f], m, m),
    "remat": lambda m: nnx.remat(f)(m, m),
    "checkify": lambda m: nnx.checkify(f)(m, m)[1],
    "jvp": lambda m: nnx.jvp(f, (m, m), (nnx.state(m), nnx.state(m)))[0],
    "vjp": lambda m: nnx.vjp(f, m, m)[0],
}


@pytest.mark.parametrize("name", list(SHARING))
def test_sharing_across_arguments(name, mode):
    m = W()
    out = SHARING[name](m)
    np.testing.assert_allclose(out, 6.0)  # one Variable inside: 2.0 * 3
    np.testing.assert_allclose(m.w[...], 2.0)  # the write came out once


def test_vjp_gives_a_shared_variable_one_cotangent(mode):
    m = W()
    _, pullback = nnx.vjp(f, m, m)
    g_p, g_q = pullback(jnp.array(1.0))
    np.testing.assert_allclose(g_p["w"][...], 6.0)  # d(3 * 2w)/dw
    assert "w" not in g_q  # reached first through p: it crosses once, with p


X = jnp.ones((1, 2))


def temp(x):
    return Linear(2, 3, rngs=nnx.Rngs(0))(x).sum()


TEMPORARY = {
    "jit": lambda: nnx.jit(temp)(X),
    "grad": lambda: nnx.value_and_grad(temp)(X)[0],
    "vmap": lambda: nnx.vmap(temp)(X[None])[0],
    "scan": lambda: nnx.scan(lambda c, x: (c + temp(x[None]), None), in_axes=(nnx.Carry, 0))(
        0.0, X
    )[0],
    "cond": lambda: nnx.cond(True, temp, temp, X),
    "fori_loop": lambda: nnx.fori_loop(0, 1, lambda i, c: c + temp(X), 0.0),
    "while_loop": lambda: nnx.while_loop(
        lambda c: c[1] < 1, lambda c: (temp(X), c[1] + 1), (0.0, 0)
    )[0],
    "remat": lambda: nnx.remat(temp)(X),
    "checkify": lambda: nnx.checkify(temp)(X)[1],
    "eval_shape": lambda: nnx.eval_shape(temp, X),
    "jvp": lambda: nnx.jvp(temp, (X,), (jnp.zeros_like(X),))[0],
    "vjp": lambda: nnx.vjp(temp, X)[0],
}


@pytest.mark.parametrize("name", list(TEMPORARY))
def test_a_temporary_module_inside(name, mode):
    with nnx.var_defaults(hijax=False, ref=False):
        want = temp(X)
    got = TEMPORARY[name]()
    if name == "eval_shape":
        assert got.shape == () and got.dtype == want.dtype
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)


class Boom(Exception):
    pass


def _raise_after_write(m):
    m.w[...] = m.w[...] + 1.0
    raise Boom("after a write")


FAILING = {
    "jit": lambda m: nnx.jit(_raise_after_write)(m),
    "grad": lambda m: nnx.grad(_raise_after_write)(m),
    "vmap": lambda m: nnx.vmap(lambda m, x: _raise_after_write(m), in_axes=(None, 0))(
        m, jnp.ones(2)
    ),
    "cond": lambda m: nnx.cond(True, _raise_after_write, _raise_after_write, m),
    "remat": lambda m: nnx.remat(_raise_after_write)(m),
    "jvp": lambda m: nnx.jvp(_raise_after_write, (m,), (nnx.state(m),)),
    "vjp": lambda m: nnx.vjp(_raise_after_write, m),
}


@pytest.mark.parametrize("name", list(FAILING))
def test_an_exception_after_writes_leaves_the_arguments_unchanged(name, mode):
    m = W()
    with pytest.raises(Boom, match="after a write"):
        FAILING[name](m)
    np.testing.assert_allclose(m.w[...], 1.0)
    jax.block_until_ready(m.w[...])


# -- the same sharing, nested inside nnx.jit ---------------------------------------------
NESTABLE = [n for n in SHARING if n != "jit"]


@pytest.mark.parametrize("name", NESTABLE)
def test_sharing_across_arguments_nested_in_jit(name, mode):
    m = W()
    out = nnx.jit(lambda m: SHARING[name](m))(m)
    np.testing.assert_allclose(out, 6.0)
    np.testing.assert_allclose(m.w[...], 2.0)


# -- a new module returned from inside ---------------------------------------------------
def make(x):
    layer = Linear(2, 3, rngs=nnx.Rngs(0))
    layer.w[...] = jnp.full((2, 3), 0.5)
    return layer, x.sum()


NEW_MODULE = {
    "jit": lambda: nnx.jit(make)(X),
    "remat": lambda: nnx.remat(make)(X),
    "cond": lambda: nnx.cond(True, make, make, X),
    "eval_shape": lambda: nnx.eval_shape(make, X),
    "grad_aux": lambda: nnx.grad(lambda x: (x.sum(), make(x)), has_aux=True)(X)[1],
    "value_and_grad_aux": lambda: nnx.value_and_grad(lambda x: (x.sum(), make(x)), has_aux=True)(X)[
        0
    ][1],
}


@pytest.mark.parametrize("name", list(NEW_MODULE))
def test_a_new_module_returned(name, mode):
    layer, s = NEW_MODULE[name]()
    assert isinstance(layer, Linear)
    assert layer.w.shape == (2, 3)
    if name == "eval_shape":
        assert isinstance(layer.w[...], jax.ShapeDtypeStruct)
        return
    np.testing.assert_allclose(s, 2.0)
    # the returned module works outside, with the value written inside (bias 0.1)
    np.testing.assert_allclose(layer(X), np.full((1, 3), 2 * 0.5 + 0.1), rtol=1e-6)
    # and in the mode the Variables were made in
    assert layer.w.hijax == (mode == "hijax") and layer.w.ref == (mode == "ref")


# -- sharing through the loops: across arguments (scan) and within one (a carry) ---------
def _scan_across(m):
    def body(p, q, c):
        return c + f(p, q), None

    return nnx.scan(body, in_axes=(None, None, nnx.Carry), length=1)(m, m, jnp.array(0.0))[0]


def _scan_within(m):
    def body(c, x):
        return c, f(c[0], c[1]) + 0 * x

    return nnx.scan(body, in_axes=(nnx.Carry, 0))((m, m), jnp.ones(1))[1][0]


LOOP_SHARING = {
    "scan_across": _scan_across,
    "scan_within": _scan_within,
    # a loop has one value: its parts share within it
    "fori_loop_within": lambda m: nnx.fori_loop(
        0, 1, lambda i, c: (c[0], c[1], f(c[0], c[1])), (m, m, jnp.array(0.0))
    )[2],
    "while_loop_within": lambda m: nnx.while_loop(
        lambda c: c[3] < 1,
        lambda c: (c[0], c[1], f(c[0], c[1]), c[3] + 1),
        (m, m, jnp.array(0.0), 0),
    )[2],
}


@pytest.mark.parametrize("name", list(LOOP_SHARING))
def test_sharing_through_the_loops(name, mode):
    m = W()
    out = LOOP_SHARING[name](m)
    np.testing.assert_allclose(out, 6.0)  # one Variable inside: written, then read
    np.testing.assert_allclose(m.w[...], 2.0)  # the write came out once


@pytest.mark.parametrize("name", list(LOOP_SHARING))
def test_sharing_through_the_loops_nested_in_jit(name, mode):
    m = W()
    out = nnx.jit(lambda m: LOOP_SHARING[name](m))(m)
    np.testing.assert_allclose(out, 6.0)
    np.testing.assert_allclose(m.w[...], 2.0)


# -- custom_vjp: no writes (a custom derivative carries no state), sharing kept ----------
def _custom_vjp(seen: list):
    def fun(p, q):
        seen.append(p.w is q.w)
        return p.w[...] * q.w[...] * 3.0

    g = nnx.custom_vjp(fun, nondiff_argnums=(1,))

    def fwd(p, q):
        seen.append(p.w is q.w)
        return g(p, q), None

    def bwd(q, res, g):  # the nondiff argument first, as in jax.custom_vjp
        assert isinstance(q.w, nnx.Variable)  # rebuilt around its value
        _, ct = g  # (input_updates_g, out_g), Flax NNX's protocol with graph updates
        return ({"w": 5.0 * ct},)

    g.defvjp(fwd, bwd)
    return g


@pytest.mark.parametrize("nested", [False, True])
def test_custom_vjp_keeps_sharing_across_arguments(nested, mode):
    m = W()
    seen: list = []
    g = _custom_vjp(seen)
    call = nnx.jit(lambda m: g(m, m)) if nested else (lambda m: g(m, m))
    np.testing.assert_allclose(call(m), 3.0)
    grad = nnx.grad(lambda m: g(m, m))(m)
    np.testing.assert_allclose(grad["w"][...], 5.0)  # one cotangent, the bwd's
    assert seen and all(seen)  # one Variable inside the function and inside fwd
