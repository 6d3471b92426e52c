"""remat, eval_shape, jvp, vjp, custom_vjp, checkify, shard_map."""

import os
import subprocess
import sys
import textwrap
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import MLP, Counter, Linear, add_bias, mlp_reference

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)


def test_remat_gradients_match_and_state_updates(mode):
    m = MLP(2, 4, 2, rngs=nnx.Rngs(0))
    m.dropout.rate = 0.0
    x = jnp.arange(6.0).reshape(3, 2)

    @nnx.remat(policy=jax.checkpoint_policies.nothing_saveable)
    def block(m, x):
        return m(x)

    g1 = nnx.grad(lambda m: jnp.sum(block(m, x) ** 2))(m)
    mean_after_remat = m.bn.mean[...]
    m.bn.mean[...] = jnp.zeros(4)
    g2 = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(m)
    np.testing.assert_allclose(g1["linear1"]["w"][...], g2["linear1"]["w"][...], **TOL)
    np.testing.assert_allclose(mean_after_remat, m.bn.mean[...], **TOL)


def test_eval_shape_allocates_nothing(mode):
    abstract = nnx.eval_shape(lambda: MLP(2, 1024, 3, rngs=nnx.Rngs(0)))
    w = abstract.linear1.w[...]
    assert isinstance(w, jax.ShapeDtypeStruct) and w.shape == (2, 1024)
    assert isinstance(abstract.linear1.w, nnx.Param)
    # 4 TB of float32 parameters: only an abstract evaluation can return this
    huge = nnx.eval_shape(lambda: Linear(10**6, 10**6, rngs=nnx.Rngs(0)))
    assert huge.w[...].shape == (10**6, 10**6) and huge.w[...].dtype == jnp.float32


def test_eval_shape_under_hijax_defaults_gives_hijax_abstract_variables():
    # so that a model restored into it (nnx.restore_checkpoint) trains under plain jax.jit
    with nnx.var_defaults(hijax=True):
        abstract = nnx.eval_shape(lambda: MLP(2, 8, 3, rngs=nnx.Rngs(0)))
    w = abstract.linear1.w
    assert w.hijax and isinstance(w[...], jax.ShapeDtypeStruct) and w[...].shape == (2, 8)
    assert all(v.hijax for _, v in nnx.state(abstract).flat_state())
    plain = nnx.eval_shape(lambda: MLP(2, 8, 3, rngs=nnx.Rngs(0)))
    assert not plain.linear1.w.hijax
    # filled with values, the hijax abstract model is a model whose writes jax.jit carries
    concrete = MLP(2, 8, 3, rngs=nnx.Rngs(1))
    graphdef, state = nnx.split(abstract)
    values = nnx.state(concrete)
    model = nnx.merge(graphdef, state)
    nnx.update(model, values)
    assert model.linear1.w.hijax
    jax.jit(lambda m: m.bn.mean.set_value(m.bn.mean[...] + 1.0))(model)
    np.testing.assert_allclose(model.bn.mean[...], np.asarray(concrete.bn.mean[...]) + 1.0)


def test_eval_shape_of_a_call_leaves_the_arguments_concrete(mode):
    m = MLP(2, 8, 3, rngs=nnx.Rngs(0))
    mean0, count0 = np.asarray(m.bn.mean[...]), int(m.dropout.rngs.count[...])
    out = nnx.eval_shape(lambda m, x: m(x), m, jnp.ones((4, 2)))
    assert out == jax.ShapeDtypeStruct((4, 3), jnp.float32)
    # the writes of an abstract run are abstract: none reaches the caller's model
    assert isinstance(m.bn.mean.get_value(), jax.Array)
    np.testing.assert_array_equal(m.bn.mean[...], mean0)
    assert int(m.dropout.rngs.count[...]) == count0
    m(jnp.ones((4, 2)))  # still a working model


def test_jvp_with_state_tangent(mode):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))
    tw = jnp.full((2, 2), 0.5)
    y, y_dot = nnx.jvp(lambda m: m(x), (m,), ({"w": tw},))
    np.testing.assert_allclose(y, m(x), **TOL)
    np.testing.assert_allclose(y_dot, x @ tw, **TOL)


def test_jvp_of_a_stateful_module_matches_plain_jax_and_updates_state(mode):
    m = MLP(2, 4, 3, rngs=nnx.Rngs(0))
    m.dropout.rate = 0.0
    x = jnp.arange(6.0).reshape(3, 2)
    params = jax.tree.map(lambda v: v[...], nnx.state(m, nnx.Param).to_pure_dict())
    mean0 = m.bn.mean[...]
    tangent = jax.tree.map(jnp.ones_like, params)
    y, y_dot = nnx.jvp(lambda m: m(x), (m,), (tangent,))
    ref = jax.jvp(lambda p: mlp_reference(p, mean0, x)[0], (params,), (tangent,))
    np.testing.assert_allclose(y, ref[0], **TOL)
    np.testing.assert_allclose(y_dot, ref[1], **TOL)
    np.testing.assert_allclose(m.bn.mean[...], mlp_reference(params, mean0, x)[1], **TOL)


def test_vjp_returns_state_cotangents(mode):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.arange(2.0)[None] + 1
    y, pullback = nnx.vjp(lambda m: m(x), m)
    (ct,) = pullback(jnp.ones_like(y))
    np.testing.assert_allclose(ct["w"][...], x.T @ jnp.ones_like(y), **TOL)
    np.testing.assert_allclose(ct["b"][...], jnp.ones(2), **TOL)


def test_vjp_with_aux_returns_it_undifferentiated_and_updates_state(mode):
    m = Counter()
    lin = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.array([[1.0, 3.0]])

    def f(lin, m):
        m.count[...] += 1
        y = lin(x)
        return y, {"count": m.count[...], "norm": jnp.sum(y**2)}

    y, pullback, aux = nnx.vjp(f, lin, m, has_aux=True)
    np.testing.assert_allclose(y, add_bias(x @ lin.w[...], lin.b[...]), **TOL)
    assert int(aux["count"]) == 1 and int(m.count[...]) == 1  # the write came out once
    np.testing.assert_allclose(aux["norm"], jnp.sum(y**2), **TOL)
    ct_lin, _ = pullback(2.0 * y)
    # the cotangent 2y pulled back through y = x @ w + b
    np.testing.assert_allclose(ct_lin["w"][...], x.T @ (2.0 * y), **TOL)
    np.testing.assert_allclose(ct_lin["b"][...], (2.0 * y)[0], **TOL)


def test_vjp_with_aux_needs_a_pair():
    lin = Linear(2, 2, rngs=nnx.Rngs(0))
    with pytest.raises(nnx.TransformError, match=r"has_aux=True .* pair \(output, aux\)"):
        nnx.vjp(lambda m: m(jnp.ones((1, 2))), lin, has_aux=True)


def test_custom_vjp_uses_the_custom_backward(mode):
    m = Linear(2, 2, rngs=nnx.Rngs(0))

    @nnx.custom_vjp
    def f(m, x):
        return jnp.sum(m.w[...] * x)

    def f_fwd(m, x):
        return f(m, x), (m.w[...], x)

    def f_bwd(res, g):
        (m_g, x_g), g = g  # graph updates on: (input_updates_g, out_g)
        # the module's entry is a State of zeros shaped like its Variables; x's is None
        assert x_g is None and sorted(m_g) == ["b", "w"]
        np.testing.assert_array_equal(m_g["w"][...], np.zeros((2, 2)))
        w, x = res
        return {"w": 3 * g * x}, g * w  # deliberately not the true derivative

    f.defvjp(f_fwd, f_bwd)
    x = jnp.full((2, 2), 2.0)
    g = nnx.grad(lambda m: f(m, x))(m)
    np.testing.assert_allclose(g["w"][...], 3 * x, **TOL)
    np.testing.assert_allclose(g["b"][...], jnp.zeros(2), **TOL)


def test_custom_vjp_writes_come_out(mode):
    @nnx.custom_vjp
    def f(c, x):
        c()
        return x * 2.0

    def f_fwd(c, x):
        c()
        return x * 2.0, None

    f.defvjp(f_fwd, lambda r, g: (None, 2.0 * g[1]))
    c = Counter()
    np.testing.assert_allclose(f(c, 1.0), 2.0)
    assert int(c.count[...]) == 1
    np.testing.assert_allclose(nnx.grad(lambda c, x: f(c, x), argnums=1)(c, 3.0), 2.0)
    assert int(c.count[...]) == 2  # the fwd's write comes out of nnx.grad too

    def fails(c):
        c()
        raise ZeroDivisionError("after the write")

    h = nnx.custom_vjp(fails)
    h.defvjp(lambda c: (fails(c), None), lambda r, g: (None,))
    with pytest.raises(ZeroDivisionError):  # a failing call writes nothing
        h(c)
    assert int(c.count[...]) == 2


def test_checkify_returns_error_and_updates_state(mode):
    from jax.experimental import checkify

    c = Counter()

    @nnx.checkify
    def f(c, x):
        c()
        checkify.check(jnp.all(x > 0), "x must be positive")
        return x

    err, _ = f(c, jnp.ones(2))
    assert err.get() is None and int(c.count[...]) == 1
    err, _ = f(c, -jnp.ones(2))
    assert "x must be positive" in err.get()


_SHARD_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import nnx
    from jax.sharding import PartitionSpec as P, NamedSharding
    assert len(jax.devices()) == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    class Model(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.arange(4.0))
            self.calls = nnx.BatchStat(jnp.array(0))
        def __call__(self, x):
            self.calls[...] += 1
            return x * self.w

    m = Model()
    x = jnp.arange(32.0).reshape(8, 4)

    @nnx.shard_map(mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"))
    def fwd(m, x):
        return m(x)

    y = nnx.jit(fwd)(m, x)  # shard_map under jit, as it is used in training
    np.testing.assert_allclose(y, x * jnp.arange(4.0))
    assert int(m.calls[...]) == 1, m.calls

    # jit with in/out shardings: the model replicated, data split
    rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    @nnx.jit(in_shardings=(rep, split), out_shardings=split)
    def step(m, x):
        return m(x)
    y = step(m, x)
    assert y.sharding.spec == P("data"), y.sharding
    assert int(m.calls[...]) == 2

    # per-path in_shardings (a dict of the model's paths): w split, calls replicated
    class Wide(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.arange(16.0))
            self.calls = nnx.BatchStat(jnp.array(0))

    wide = Wide()
    @nnx.jit(in_shardings=({"w": split, "calls": rep},), out_shardings=rep)
    def total(m):
        m.calls[...] += 1
        return jnp.sum(m.w[...])
    compiled = total.lower(wide).compile()
    specs = [s.spec for s in jax.tree.leaves(compiled.input_shardings[0])]
    assert P("data") in specs, specs
    np.testing.assert_allclose(total(wide), 120.0)
    assert int(wide.calls[...]) == 1

    # shard_map in every Variable mode, state written inside comes out (a ref is
    # committed to the device it was made on, so under jit it would first have to be
    # placed on the mesh; shard_map itself takes values)
    for kw in (dict(ref=True), dict(hijax=True)):
        with nnx.var_defaults(**kw):
            mm = Model()
        y = fwd(mm, x)
        np.testing.assert_allclose(y, x * jnp.arange(4.0))
        y = fwd(mm, x)
        assert int(mm.calls[...]) == 2, (kw, mm.calls)
        assert mm.calls.ref == kw.get("ref", False) and mm.calls.hijax == kw.get("hijax", False)
    print("OK")
    """
)


def test_shard_map_and_jit_shardings_on_8_devices():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    r = subprocess.run(
        [sys.executable, "-c", _SHARD_SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_shard_map_takes_a_state_sharding_per_argument():
    # Flax NNX: an nnx.StateSharding picks each Variable's spec by filter, as for nnx.jit
    P = jax.sharding.PartitionSpec
    mesh = jax.make_mesh((1,), ("d",), devices=jax.devices()[:1])

    class Scaled(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.arange(3.0))
            self.calls = nnx.BatchStat(jnp.array(0))

        def __call__(self, x):
            self.calls[...] += 1
            return x * self.w[...][None, :]

    m = Scaled()
    x = jnp.ones((4, 3))
    for spec in (nnx.StateSharding({nnx.Param: P(), ...: P()}), nnx.StateSharding({...: P()})):
        f = nnx.shard_map(lambda m, x: m(x), mesh=mesh, in_specs=(spec, P()), out_specs=P())
        np.testing.assert_allclose(f(m, x), x * jnp.arange(3.0)[None, :])
    assert int(m.calls[...]) == 2
