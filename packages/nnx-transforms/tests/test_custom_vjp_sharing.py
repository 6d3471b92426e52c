"""nnx.custom_vjp on the joint flattening (#13): sharing across its arguments is kept."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class W(nnx.Module):
    def __init__(self, value=1.0):
        self.w = nnx.Param(jnp.array(value))


def _custom(nondiff_argnums=(), seen=None, scale=5.0):
    """f(p, q, x) = p.w * q.w * x with a deliberately wrong backward: the cotangent of
    p's w is ``scale * g`` (q's w gets 7 * g), of x 11 * g."""

    def fun(p, q, x):
        if seen is not None:
            seen.append(p.w is q.w)
        return p.w[...] * q.w[...] * x

    f = nnx.custom_vjp(fun, nondiff_argnums=tuple(nondiff_argnums))

    def f_fwd(p, q, x):
        if seen is not None:
            seen.append(p.w is q.w)
        return f(p, q, x), None

    def f_bwd(*args):  # the nondiff arguments first, as in jax.custom_vjp
        assert len(args) == 2 + len(nondiff_argnums)
        res, (_, g) = args[-2:]  # g: (input_updates_g, out_g) with graph updates
        cts = ({"w": scale * g}, {"w": 7.0 * g}, 11.0 * g)
        return tuple(ct for i, ct in enumerate(cts) if i not in nondiff_argnums)

    f.defvjp(f_fwd, f_bwd)
    return f


def test_a_variable_shared_with_a_nondiff_argument_is_one_object_inside(mode):
    m = W(2.0)
    holder = W(0.0)
    holder.w = m.w  # q reaches p's Variable
    seen: list = []
    f = _custom(nondiff_argnums=(1,), seen=seen)
    np.testing.assert_allclose(f(m, holder, 3.0), 2.0 * 2.0 * 3.0)
    g = nnx.grad(lambda m, h, x: f(m, h, x), argnums=(0, 2))(m, holder, 3.0)
    assert seen and all(seen)  # the same Variable inside fun and inside fwd
    # the shared Variable's cotangent is the differentiated argument's (5 * g), once
    np.testing.assert_allclose(g[0]["w"][...], 5.0)
    np.testing.assert_allclose(g[1], 11.0)


def test_the_same_module_twice_is_one_object_inside(mode):
    m = W(2.0)
    seen: list = []
    f = _custom(nondiff_argnums=(1,), seen=seen)
    np.testing.assert_allclose(f(m, m, 1.0), 4.0)
    assert seen == [True]


def test_a_variable_twice_in_one_argument_has_one_cotangent(mode):
    class Tied(nnx.Module):
        def __init__(self):
            self.a = nnx.Param(jnp.array(3.0))
            self.b = self.a  # tied weight

    @nnx.custom_vjp
    def f(t, x):
        assert t.a is t.b
        return t.a[...] * t.b[...] * x

    def f_fwd(t, x):
        assert t.a is t.b
        return f(t, x), None

    def f_bwd(res, g):
        _, g = g
        return {"a": 13.0 * g}, 0.0 * g

    f.defvjp(f_fwd, f_bwd)
    t = Tied()
    g = nnx.grad(lambda t: f(t, 2.0))(t)
    assert sorted(g) == ["a"]  # one cotangent, at the first path
    np.testing.assert_allclose(g["a"][...], 13.0)
    # nnx.grad does the same with a tied weight: one gradient at the first path
    ref = nnx.grad(lambda t: t.a[...] * t.b[...] * 2.0)(t)
    assert sorted(ref) == ["a"]
    np.testing.assert_allclose(ref["a"][...], 2 * 3.0 * 2.0)


def test_a_variable_shared_by_two_differentiated_arguments_is_an_aliasing_error():
    m = W(2.0)
    other = W(0.0)
    other.w = m.w
    f = _custom()
    match = r"args\[1\]/w' is the same Variable as 'args\[0\]/w'.*nondiff_argnums"
    with pytest.raises(nnx.AliasingError, match=match):
        f(m, other, 1.0)
    # consistent with nnx.grad differentiating both arguments
    with pytest.raises(nnx.AliasingError, match="same Variable"):
        nnx.grad(lambda p, q: p.w[...] * q.w[...], argnums=(0, 1))(m, other)


def test_a_write_through_a_shared_variable_comes_out_once():
    m = W(2.0)
    holder = W(0.0)
    holder.w = m.w

    def fun(p, q):
        q.w[...] = q.w[...] + 1.0
        return p.w[...]  # the same Variable: it reads the write

    f = nnx.custom_vjp(fun, nondiff_argnums=(1,))
    f.defvjp(lambda p, q: (f(p, q), None), lambda r, g: ({"w": g[1]},))
    np.testing.assert_allclose(f(m, holder), 3.0)
    assert holder.w is m.w
    np.testing.assert_allclose(m.w[...], 3.0)  # written once, not twice
