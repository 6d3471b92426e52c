"""nnx.custom_vjp's graph-updates protocol (Flax NNX): with graph updates on, bwd gets
``(input_updates_g, out_g)``, and nondiff_argnums takes nnx.DiffState."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Foo(nnx.Module):
    def __init__(self, x, y):
        self.x = nnx.Param(x)
        self.y = nnx.Param(y)


def _flax_example(**kw):
    @nnx.custom_vjp(**kw)
    def f(m):
        return jnp.sin(m.x[...]) * m.y[...]

    def f_fwd(m):
        return f(m), (jnp.cos(m.x[...]), jnp.sin(m.x[...]), m)

    def f_bwd(res, g):
        input_updates_g, out_g = g
        cos_x, sin_x, m = res
        (m_updates_g,) = input_updates_g
        m_g = jax.tree.map(lambda x: x, m_updates_g)  # create copy
        m_g["x"][...] = cos_x * out_g * m.y[...]
        m_g["y"][...] = sin_x * out_g
        return (m_g,)

    f.defvjp(f_fwd, f_bwd)
    return f


@pytest.mark.parametrize("kw", [{}, {"graph_updates": True}])
def test_flax_docs_example_bwd_gets_input_updates_and_out_g(kw, mode):
    f = _flax_example(**kw)
    m = Foo(x=jnp.array(1.0), y=jnp.array(2.0))
    grads = nnx.state(nnx.grad(f)(m))
    assert jax.tree.map(jnp.shape, grads) == nnx.State({"x": nnx.Param(()), "y": nnx.Param(())})
    # d/dx sin(x) y = cos(x) y, d/dy = sin(x), at x = 1, y = 2
    np.testing.assert_allclose(grads["x"][...], np.cos(1.0) * 2.0, rtol=1e-6)
    np.testing.assert_allclose(grads["y"][...], np.sin(1.0), rtol=1e-6)
    # the cotangent seed scales the tangent (out_g is the output's cotangent)
    _, vjp = jax.vjp(lambda x: f(Foo(x, jnp.array(2.0))), jnp.array(1.0))
    np.testing.assert_allclose(vjp(jnp.array(3.0))[0], 3.0 * np.cos(1.0) * 2.0, rtol=1e-6)


def test_input_updates_g_has_a_zero_state_per_module_and_none_otherwise():
    seen = {}

    @nnx.custom_vjp
    def f(m, x, n):
        return m.x[...] * x + n.y[...]

    def f_fwd(m, x, n):
        return f(m, x, n), (m.x[...], x)

    def f_bwd(res, g):
        seen["inputs"], out_g = g
        mx, x = res
        return {"x": out_g * x}, out_g * mx, {"y": out_g}

    f.defvjp(f_fwd, f_bwd)
    m, n = Foo(jnp.array(2.0), jnp.ones(3)), Foo(jnp.zeros(2), jnp.array(5.0))
    gm, gx, gn = nnx.grad(lambda m, x, n: f(m, x, n), argnums=(0, 1, 2))(m, jnp.array(3.0), n)
    np.testing.assert_allclose([gm["x"][...], gx, gn["y"][...]], [3.0, 2.0, 1.0])
    m_g, x_g, n_g = seen["inputs"]
    assert x_g is None
    assert isinstance(m_g, nnx.State) and sorted(m_g) == ["x", "y"]
    assert isinstance(m_g["x"], nnx.Param) and m_g["y"].shape == (3,)
    np.testing.assert_array_equal(m_g["y"][...], np.zeros(3))
    assert n_g["x"].shape == (2,)


@pytest.mark.parametrize("kw", [{"graph_updates": False}, {"graph": False}])
def test_without_graph_updates_bwd_gets_out_g_and_may_return_a_module(kw):
    @nnx.custom_vjp(**kw)
    def f(m):
        return jnp.sin(m.x[...]) * m.y[...]

    def f_fwd(m):
        return f(m), (jnp.cos(m.x[...]), jnp.sin(m.x[...]), m)

    def f_bwd(res, g):
        cos_x, sin_x, m = res
        assert not isinstance(g, tuple)
        m_g = nnx.clone(m)
        m_g.x[...] = cos_x * g * m.y[...]
        m_g.y[...] = sin_x * g
        return (m_g,)

    f.defvjp(f_fwd, f_bwd)
    grads = nnx.grad(f, graph=kw.get("graph"), graph_updates=kw.get("graph_updates"))(
        Foo(jnp.array(1.0), jnp.array(2.0))
    )
    np.testing.assert_allclose(grads["x"][...], np.cos(1.0) * 2.0, rtol=1e-6)
    np.testing.assert_allclose(grads["y"][...], np.sin(1.0), rtol=1e-6)


def test_flax_docs_diff_state_differentiates_the_selected_variables_only(mode):
    x_attribute = nnx.PathContains("x")

    @nnx.custom_vjp(nondiff_argnums=(nnx.DiffState(0, x_attribute),), graph_updates=True)
    def f(m):
        return jnp.sin(m.x[...]) * m.y[...]

    def f_fwd(m):
        return f(m), (jnp.cos(m.x[...]), m)

    def f_bwd(res, g):
        input_updates_g, out_g = g
        cos_x, m = res
        (m_updates_g,) = input_updates_g
        m_g = jax.tree.map(lambda x: x, m_updates_g)  # create copy
        m_g.x[...] = cos_x * out_g * m.y[...]
        del m_g["y"]  # y is not differentiable
        return (m_g,)

    f.defvjp(f_fwd, f_bwd)
    m = Foo(x=jnp.array(1.0), y=jnp.array(2.0))
    grad = nnx.grad(f, argnums=nnx.DiffState(0, x_attribute), graph_updates=True)(m)
    assert jax.tree.map(jnp.shape, grad) == nnx.State({"x": nnx.Param(())})
    np.testing.assert_allclose(grad["x"][...], np.cos(1.0) * 2.0, rtol=1e-6)
    # a tangent given for a Variable the DiffState leaves out is not used: y's is zero
    full = nnx.grad(f)(m)
    np.testing.assert_allclose(full["y"][...], 0.0)


def test_diff_state_errors_name_the_fix():
    with pytest.raises(ValueError, match="argnum 0 is repeated in nondiff_argnums"):
        nnx.custom_vjp(lambda m: m, nondiff_argnums=(0, nnx.DiffState(0, ...)))
    with pytest.raises(TypeError, match="entries are ints or nnx.DiffState, got str 'x'"):
        nnx.custom_vjp(lambda m: m, nondiff_argnums=("x",))  # pyright: ignore
    m = Foo(jnp.array(1.0), jnp.array(2.0))
    for kw in ({"graph": False}, {"graph_updates": False}):
        f = nnx.custom_vjp(lambda m: m.x[...], nondiff_argnums=(nnx.DiffState(0, ...),), **kw)
        f.defvjp(lambda m: (m.x[...], None), lambda res, g: ({},))
        with pytest.raises(
            nnx.transforms.TransformError,
            match="DiffState in nondiff_argnums needs graph mode with graph updates",
        ):
            f(m)
    f = nnx.custom_vjp(lambda m, x: x, nondiff_argnums=(nnx.DiffState(1, ...),))
    f.defvjp(lambda m, x: (x, None), lambda res, g: ({}, g[1]))
    with pytest.raises(
        nnx.transforms.TransformError,
        match=r"DiffState\(1, \.\.\.\), but argument 1 is not an nnx object",
    ):
        f(m, jnp.array(1.0))


class Bar(nnx.Module):
    def __init__(self, x, y, z):
        self.x = nnx.Param(x)
        self.y = nnx.Param(y)
        self.z = nnx.BatchStat(z)


def _doubling(**kw):
    """Flax's updates_g example: f doubles m.z; bwd returns the tangent of z too."""
    seen = {}

    @nnx.custom_vjp(**kw)
    def f(m):
        m.z[...] *= 2.0  # mutation tracked as an update
        return jnp.sin(m.x[...]) * m.y[...]

    def f_fwd(m):
        return f(m), (jnp.cos(m.x[...]), jnp.sin(m.x[...]), m)

    return f, f_fwd, seen


def test_updates_g_gives_the_written_variables_cotangents_without_graph_updates():
    f, f_fwd, seen = _doubling(graph_updates=False)

    def f_bwd(res, g, *, updates_g):
        cos_x, sin_x, m = res
        seen["updates_g"] = updates_g
        (m_updates_g,) = updates_g
        return ({"x": cos_x * g * m.y[...], "y": sin_x * g, "z": 2.0 * m_updates_g.z},)

    f.defvjp(f_fwd, f_bwd)
    m = Bar(jnp.array(1.0), jnp.array(2.0), jnp.array(3.0))
    np.testing.assert_allclose(f(m), np.sin(1.0) * 2.0, rtol=1e-6)
    np.testing.assert_allclose(m.z[...], 6.0)  # the write came out

    def z_after(z0):  # a function of z through the write: its derivative is 2
        m = Bar(jnp.array(1.0), jnp.array(2.0), z0)
        y = f(m)
        return m.z[...] * 10.0 + y

    value, dz = jax.value_and_grad(z_after)(jnp.array(3.0))
    np.testing.assert_allclose(value, 60.0 + np.sin(1.0) * 2.0, rtol=1e-6)
    np.testing.assert_allclose(dz, 20.0)
    (m_updates_g,) = seen["updates_g"]
    np.testing.assert_allclose(m_updates_g["z"], 10.0)  # the cotangent of the new z
    assert m_updates_g["x"] is None and m_updates_g["y"] is None  # not written


def test_bwd_without_updates_g_drops_them():
    f, f_fwd, _ = _doubling(graph_updates=False)

    def f_bwd(res, g):
        cos_x, sin_x, m = res
        return ({"x": cos_x * g * m.y[...], "y": sin_x * g},)

    f.defvjp(f_fwd, f_bwd)
    m = Bar(jnp.array(1.0), jnp.array(2.0), jnp.array(3.0))
    grads = nnx.grad(f)(m)
    np.testing.assert_allclose(grads["x"][...], np.cos(1.0) * 2.0, rtol=1e-6)
    np.testing.assert_allclose(m.z[...], 6.0)


def test_with_graph_updates_the_written_cotangent_is_in_input_updates_g():
    f, f_fwd, seen = _doubling()

    def f_bwd(res, g):
        (m_g,), out_g = g
        cos_x, sin_x, m = res
        seen["z"] = m_g["z"][...]
        m_g = jax.tree.map(lambda t: t, m_g)
        m_g["x"][...] = cos_x * out_g * m.y[...]
        m_g["y"][...] = sin_x * out_g
        m_g["z"][...] = 2.0 * m_g["z"][...]
        return (m_g,)

    f.defvjp(f_fwd, f_bwd)

    def z_after(z0):
        m = Bar(jnp.array(1.0), jnp.array(2.0), z0)
        f(m)
        return m.z[...] * 10.0

    np.testing.assert_allclose(jax.grad(z_after)(jnp.array(3.0)), 20.0)
    np.testing.assert_allclose(seen["z"], 10.0)


def test_the_fwd_writes_come_out_of_grad():
    @nnx.custom_vjp
    def f(m):
        return m.x[...]

    def f_fwd(m):
        m.z[...] += 1.0
        return m.x[...], None

    f.defvjp(f_fwd, lambda res, g: ({},))
    m = Bar(jnp.array(1.0), jnp.array(2.0), jnp.array(3.0))
    f(m)  # the function alone: no write
    # nnx.grad traces fwd, not the function: the fwd's write comes out
    nnx.grad(f)(m)
    np.testing.assert_allclose(m.z[...], 4.0)
