"""graph= / graph_updates= of every transform, and nnx.set_graph_mode / set_graph_updates.

Three modes: graph mode (the default), graph mode without graph updates
(``graph_updates=False``) and tree mode (``graph=False``). For each transform:
Variable writes come out in every mode; an object reachable twice is an
AliasingError in tree mode only; a structural change made inside comes out in
the default mode where the transform's output can carry it (Flax NNX's graph
updates: jit, grad, vmap, remat, checkify; a StructureError naming the path in
the others) and stays inside in the other two modes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

MODES = {
    "graph": {},
    "no-updates": {"graph_updates": False},
    "tree": {"graph": False},
}


class M(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.arange(3.0) + 1.0)
        self.count = nnx.BatchStat(jnp.zeros(()))


def body(m, x, surgery=False):
    m.count[...] = m.count[...] + 1.0
    if surgery:
        m.extra = nnx.Variable(jnp.zeros(()))
        m.tag = "changed"
    return jnp.sum(m.w[...] * x)


X = jnp.array([1.0, 2.0, 3.0])
EXPECTED = float(np.sum((np.arange(3.0) + 1.0) * np.array([1.0, 2.0, 3.0])))  # 14


# Each runner calls `body` through one transform with the mode's keywords and returns
# (output as a float, increments expected on m.count).
def _jit(m, kw, s):
    return float(nnx.jit(lambda m, x: body(m, x, s), **kw)(m, X)), 1


def _vmap(m, kw, s):
    out = nnx.vmap(lambda m, x: body(m, x, s), in_axes=(None, 0), **kw)(m, jnp.stack([X, X]))
    return float(out[1]), 1


def _scan(m, kw, s):
    def step(m, x):
        return body(m, x, s)

    out = nnx.scan(step, in_axes=(None, 0), out_axes=0, **kw)(m, jnp.stack([X, X, X]))
    return float(out[2]), 3


def _grad(m, kw, s):
    g = nnx.grad(lambda m, x: body(m, x, s), **kw)(m, X)
    np.testing.assert_allclose(g["w"][...], np.asarray(X))  # d/dw sum(w*x) = x
    return EXPECTED, 1


def _value_and_grad(m, kw, s):
    v, g = nnx.value_and_grad(lambda m, x: body(m, x, s), **kw)(m, X)
    np.testing.assert_allclose(g["w"][...], np.asarray(X))
    return float(v), 1


def _remat(m, kw, s):
    return float(nnx.remat(lambda m, x: body(m, x, s), **kw)(m, X)), 1


def _cond(m, kw, s):
    f = lambda m, x: body(m, x, s)  # noqa: E731
    return float(nnx.cond(jnp.array(True), f, f, m, X, **kw)), 1


def _switch(m, kw, s):
    f = lambda m, x: body(m, x, s)  # noqa: E731
    return float(nnx.switch(jnp.array(1), [f, f], m, X, **kw)), 1


def _fori_loop(m, kw, s):
    def step(i, val):
        m, acc = val
        return m, acc + body(m, X, s)

    _, acc = nnx.fori_loop(0, 2, step, (m, jnp.zeros(())), **kw)
    return float(acc) / 2, 2


def _while_loop(m, kw, s):
    def step(val):
        m, acc = val
        return m, acc + body(m, X, s)

    _, acc = nnx.while_loop(lambda v: v[0].count[...] < 3, step, (m, jnp.zeros(())), **kw)
    return float(acc) / 3, 3


def _shard_map(m, kw, s):
    P = jax.sharding.PartitionSpec
    mesh = jax.make_mesh((1,), ("d",))
    f = nnx.shard_map(
        lambda m, x: body(m, x, s), mesh=mesh, in_specs=(P(), P()), out_specs=P(), **kw
    )
    return float(f(m, X)), 1


def _checkify(m, kw, s):
    err, out = nnx.checkify(lambda m, x: body(m, x, s), **kw)(m, X)
    err.throw()
    return float(out), 1


def _jvp(m, kw, s):
    out, dout = nnx.jvp(
        lambda m: body(m, X, s), (m,), (nnx.state(m, nnx.Param),), **kw
    )  # tangent w: d out = sum(w * x)
    np.testing.assert_allclose(float(dout), EXPECTED)
    return float(out), 1


def _vjp(m, kw, s):
    out, pull = nnx.vjp(lambda m: body(m, X, s), m, **kw)
    (ct,) = pull(jnp.ones(()))
    np.testing.assert_allclose(ct["w"][...], np.asarray(X))
    return float(out), 1


RUNNERS = {
    "jit": _jit,
    "vmap": _vmap,
    "scan": _scan,
    "grad": _grad,
    "value_and_grad": _value_and_grad,
    "remat": _remat,
    "cond": _cond,
    "switch": _switch,
    "fori_loop": _fori_loop,
    "while_loop": _while_loop,
    "shard_map": _shard_map,
    "checkify": _checkify,
    "jvp": _jvp,
    "vjp": _vjp,
}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(RUNNERS))
def test_variable_updates_come_out(name, mode):
    m = M()
    out, n = RUNNERS[name](m, MODES[mode], False)
    assert out == pytest.approx(EXPECTED)
    assert float(m.count[...]) == n


# transforms whose output carries a structural change out (graph mode, graph updates)
# (vmap: m is broadcast, in_axes None, and the new Variable the same for every member;
# cond/switch: every branch makes the same change)
PROPAGATE = {"jit", "grad", "value_and_grad", "remat", "checkify", "vmap", "cond", "switch"}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(RUNNERS))
def test_structural_change(name, mode):
    m = M()
    if mode == "graph" and name in PROPAGATE:
        out, n = RUNNERS[name](m, MODES[mode], True)
        assert out == pytest.approx(EXPECTED)
        assert float(m.count[...]) == n
        assert m.tag == "changed" and type(m.extra) is nnx.Variable  # pyright: ignore[reportAttributeAccessIssue]
        assert float(m.extra[...]) == 0.0  # pyright: ignore[reportAttributeAccessIssue]
        return
    if mode == "graph":
        with pytest.raises(nnx.StructureError, match="a new Variable or array appeared at"):
            RUNNERS[name](m, MODES[mode], True)
        return
    out, n = RUNNERS[name](m, MODES[mode], True)
    assert out == pytest.approx(EXPECTED)
    assert float(m.count[...]) == n  # the Variable's writes come out ...
    assert not hasattr(m, "extra") and not hasattr(m, "tag")  # ... the structure stays


def _shared():
    m = M()
    m.alias = m.count  # one Variable at two paths
    return m


@pytest.mark.parametrize("name", list(RUNNERS))
def test_tree_mode_rejects_sharing(name):
    with pytest.raises(nnx.AliasingError, match=r"tree mode.*/alias'.*/count'.*graph=True"):
        RUNNERS[name](_shared(), {"graph": False}, False)


@pytest.mark.parametrize("mode", ["graph", "no-updates"])
@pytest.mark.parametrize("name", list(RUNNERS))
def test_graph_mode_keeps_sharing(name, mode):
    m = _shared()
    out, n = RUNNERS[name](m, MODES[mode], False)
    assert out == pytest.approx(EXPECTED)
    assert m.alias is m.count and float(m.alias[...]) == n  # pyright: ignore[reportAttributeAccessIssue]


def test_sharing_error_across_arguments_names_both():
    m = M()
    f = nnx.jit(lambda a, b: None, graph=False)
    with pytest.raises(nnx.AliasingError, match=r"reachable at 'a/w' and at 'b'\."):
        f(m, m.w)


def test_eval_shape_modes():
    m = M()
    for kw in MODES.values():
        out = nnx.eval_shape(lambda m, x: body(m, x), m, X, **kw)
        assert out.shape == () and float(m.count[...]) == 0  # abstract: nothing written
    with pytest.raises(nnx.AliasingError, match="tree mode"):
        nnx.eval_shape(lambda m: None, _shared(), graph=False)  # pyright: ignore[reportCallIssue]
    nnx.eval_shape(lambda m: body(m, X, True), M(), graph_updates=False)  # pyright: ignore[reportCallIssue]
    with pytest.raises(nnx.StructureError):
        nnx.eval_shape(lambda m: body(m, X, True), M())


def test_custom_vjp_modes():
    def f(m, x):
        return jnp.sum(m.w[...] * x)

    def fwd(m, x):
        return f(m, x), (m.w[...], x)

    def bwd(res, g):
        w, x = res
        return {"w": g * x}, g * w

    def bwd_updates(res, g):  # graph updates on: g is (input_updates_g, out_g)
        inputs_g, g = g
        assert isinstance(inputs_g[0], nnx.State) and inputs_g[1] is None
        return bwd(res, g)

    for kw in MODES.values():
        cf = nnx.custom_vjp(f, **kw)
        m = nnx.resolve_graph_mode(**kw)
        cf.defvjp(fwd, bwd_updates if m.graph and m.graph_updates else bwd)
        g = nnx.grad(lambda m, cf=cf: cf(m, X))(M())
        np.testing.assert_allclose(g["w"][...], np.asarray(X))
    cf = nnx.custom_vjp(f, graph=False)
    cf.defvjp(fwd, bwd)
    with pytest.raises(nnx.AliasingError, match="tree mode"):
        cf(_shared(), X)


def test_split_rngs_tree_mode():
    rngs = nnx.Rngs(0)
    pair = {"a": rngs, "b": rngs}
    with pytest.raises(nnx.AliasingError, match="tree mode.*'a'.*'b'"):
        nnx.split_rngs(pair, splits=2, graph=False)
    with nnx.split_rngs(pair, splits=2):
        assert rngs.default.key.shape == (2,)


def test_tree_mode_returns_new_objects():
    m = M()
    out = nnx.jit(lambda m: m, graph=False)(m)
    assert out is not m and isinstance(out, M)
    np.testing.assert_allclose(out.w[...], m.w[...])
    assert nnx.jit(lambda m: m)(m) is m  # graph mode: the caller's object
    assert nnx.jit(lambda m: m, graph_updates=False)(m) is m
    stacked = nnx.vmap(lambda m: m, in_axes=None, out_axes=0, axis_size=2, graph=False)(m)
    assert stacked is not m and stacked.w.shape == (2, 3)


def test_tree_mode_value_of_new_object_is_its_inner_state():
    def f(m):
        m.count[...] = 5.0
        return m

    m = M()
    out = nnx.jit(f, graph=False)(m)
    assert float(out.count[...]) == 5.0 and float(m.count[...]) == 5.0
    assert out.count is not m.count


def test_settings_apply_to_transforms():
    f = nnx.jit(lambda m, x: body(m, x, True))
    m = M()
    with nnx.set_graph_updates(False):
        f(m, X)
    assert float(m.count[...]) == 1 and not hasattr(m, "extra")
    f(m, X)  # graph updates on again: the new attributes come out
    assert float(m.count[...]) == 2 and m.tag == "changed" and hasattr(m, "extra")  # pyright: ignore[reportAttributeAccessIssue]
    with nnx.set_graph_mode(False):
        with pytest.raises(nnx.AliasingError, match="tree mode"):
            f(_shared(), X)
        assert nnx.jit(lambda m: m)(m) is not m
    assert nnx.jit(lambda m: m)(m) is m
    # an explicit argument wins over the setting
    with nnx.set_graph_mode(False):
        assert nnx.jit(lambda m: m, graph=True)(m) is m


@nnx.set_graph_mode(False)
def test_decorated_test_runs_in_tree_mode():
    with pytest.raises(nnx.AliasingError, match="tree mode"):
        nnx.vmap(lambda m: None, in_axes=None, axis_size=2)(_shared())


def test_jit_caches_per_mode():
    traces = []

    def f(m):
        traces.append(1)
        return m

    g = nnx.jit(f)
    m = M()
    assert g(m) is m
    with nnx.set_graph_mode(False):
        assert g(m) is not m
    assert g(m) is m
    assert len(traces) == 2  # one trace per mode, then cached


# -- vmap(transform_metadata=...) -----------------------------------------------------------
class P(nnx.Module):
    def __init__(self, x):
        self.w = nnx.Param(x, sharding_names=("din",))


def test_vmap_transform_metadata_adds_axis_name_to_new_variables():
    make = nnx.vmap(lambda x: P(x), transform_metadata={nnx.PARTITION_NAME: "layers"})
    p = make(jnp.ones((4, 3)))
    assert p.w.shape == (4, 3)
    assert p.w.get_metadata("sharding_names") == ("layers", "din")
    make1 = nnx.vmap(lambda x: P(x), out_axes=1, transform_metadata={nnx.PARTITION_NAME: "l"})
    assert make1(jnp.ones((4, 3))).w.get_metadata("sharding_names") == ("din", "l")
    # without transform_metadata the names are left as they are
    assert nnx.vmap(lambda x: P(x))(jnp.ones((4, 3))).w.get_metadata("sharding_names") == ("din",)
    # a partition of None names the new axis unsharded (Flax's gspmd guide: the stacked
    # layers of a model sharded along its other axes)
    make_none = nnx.vmap(lambda x: P(x), transform_metadata={nnx.PARTITION_NAME: None})
    assert make_none(jnp.ones((4, 3))).w.get_metadata("sharding_names") == (None, "din")


def test_vmap_transform_metadata_removes_axis_name_inside():
    p = nnx.vmap(lambda x: P(x), transform_metadata={nnx.PARTITION_NAME: "layers"})(
        jnp.ones((4, 3))
    )
    seen = []

    def f(p, x):
        seen.append(p.w.get_metadata("sharding_names"))
        p.w[...] = p.w[...] * x
        return p.w[...].sum()

    out = nnx.vmap(f, in_axes=(0, 0), transform_metadata={nnx.PARTITION_NAME: "layers"})(
        p, jnp.arange(4.0)
    )
    assert seen == [("din",)]
    np.testing.assert_allclose(out, 3 * np.arange(4.0))
    assert p.w.get_metadata("sharding_names") == ("layers", "din")  # put back outside
    np.testing.assert_allclose(p.w[...], np.arange(4.0)[:, None] * np.ones((4, 3)))


def test_vmapped_constructor_with_out_sharding_under_set_mesh():
    # Flax's transforms guide, "Axis metadata": a constant made inside the vmap with
    # out_sharding is constrained there (it used to ask for the concrete mesh in a trace)
    mesh = jax.make_mesh((1, 1), ("a", "b"))

    class Weights(nnx.Module):
        def __init__(self, array, out_sharding):
            self.param = nnx.Param(array, out_sharding=out_sharding)

    @nnx.vmap(out_axes=1, axis_size=4, transform_metadata={nnx.PARTITION_NAME: "b"})
    def init_vmap():
        return Weights(jnp.ones((3, 5)), out_sharding=("a", None))

    with jax.set_mesh(mesh):
        m = init_vmap()
    assert m.param.shape == (3, 4, 5)
    assert m.param.get_metadata("out_sharding") == ("a", "b", None)
    np.testing.assert_array_equal(m.param[...], np.ones((3, 4, 5)))


# -- pmap on 8 simulated devices ---------------------------------------------------------
_PMAP_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    import nnx
    assert jax.device_count() == 8, jax.devices()

    class Lin(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(rngs.params.normal((3, 2)))
            self.calls = nnx.BatchStat(jnp.zeros(()))
        def __call__(self, x):
            self.calls[...] = self.calls[...] + 1.0
            return x @ self.w[...]

    # a stack of 8 models, one per device, each with its own key
    @nnx.split_rngs(splits=8)
    @nnx.pmap(in_axes=(0,), out_axes=0)
    def create(rngs):
        return Lin(rngs)

    models = create(nnx.Rngs(0))
    assert models.w.shape == (8, 3, 2), models.w.shape
    w = np.asarray(models.w[...])
    assert not np.allclose(w[0], w[1])

    x = jnp.arange(8 * 4 * 3, dtype=jnp.float32).reshape(8, 4, 3)

    @nnx.pmap(in_axes=(0, 0), axis_name="dev")
    def fwd(m, x):
        y = m(x)
        return y, jax.lax.psum(y.sum(), "dev")

    y, total = fwd(models, x)
    ref = np.einsum("dbi,dio->dbo", np.asarray(x), w)
    np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(total), np.full(8, ref.sum()), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(models.calls[...]), np.ones(8))   # written back

    # one trace (and compilation) per structure, not per call
    traces = []
    def count(m, x):
        traces.append(1)
        return m(x)
    counted = nnx.pmap(count)
    counted(models, x)
    counted(models, x)  # JAX traces once more: the written-back arrays are placed anew
    n = len(traces)
    for _ in range(3):
        counted(models, x)
    assert n <= 2 and len(traces) == n, (n, traces)
    np.testing.assert_allclose(np.asarray(models.calls[...]), np.full(8, 6.0))
    models.calls[...] = jnp.ones(8)

    # a shared model (in_axes None) and a static argument
    one = Lin(nnx.Rngs(1))
    def scale(m, x, k):
        return m(x) * k
    out = nnx.pmap(scale, in_axes=(None, 0, None), static_broadcasted_argnums=(2,))(one, x, 3.0)
    np.testing.assert_allclose(
        np.asarray(out), 3.0 * np.einsum("dbi,io->dbo", np.asarray(x), np.asarray(one.w[...])),
        rtol=1e-5,
    )

    # tree mode: sharing is an error; graph_updates=False: structure stays
    models.alias = models.w
    try:
        nnx.pmap(lambda m, x: m(x), graph=False)(models, x)
    except nnx.AliasingError as e:
        assert "tree mode" in str(e), e
    else:
        raise AssertionError("no AliasingError")
    del models.alias
    def grow(m, x):
        m.extra = nnx.Variable(jnp.zeros(()))
        return m(x)
    nnx.pmap(grow, graph_updates=False)(models, x)
    assert not hasattr(models, "extra")
    np.testing.assert_allclose(np.asarray(models.calls[...]), np.full(8, 2.0))
    print("OK")
    """
)


def test_pmap_on_8_devices():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    r = subprocess.run(
        [sys.executable, "-c", _PMAP_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]


def test_pmap_rejects_donation_and_global_arg_shapes():
    with pytest.raises(NotImplementedError, match="donate_argnums"):
        nnx.pmap(lambda x: x, donate_argnums=(0,))
    with pytest.raises(TypeError, match="global_arg_shapes"):
        nnx.pmap(lambda x: x, global_arg_shapes=((1,),))


# -- issue 14 behaviours ----------------------------------------------------------------
class GraphOnly(nnx.Pytree, pytree=False):
    def __init__(self):
        self.a = jnp.zeros(2)
        self.items = [jnp.zeros(1), jnp.ones(1)]


@pytest.mark.parametrize("mode", list(MODES))
def test_graph_only_pytree_gets_new_array_values_from_jit(mode):
    g = GraphOnly()

    @nnx.jit(**MODES[mode])
    def step(g):
        g.a = g.a + 1.0
        g.items[0] = g.items[0] + 5.0
        return g.a.sum()

    assert float(step(g)) == 2.0
    np.testing.assert_allclose(g.a, np.ones(2))
    np.testing.assert_allclose(g.items[0], np.full(1, 5.0))
    np.testing.assert_allclose(g.items[1], np.ones(1))
    step(g)
    np.testing.assert_allclose(g.a, np.full(2, 2.0))


class Stack(nnx.Module):
    def __init__(self, x):
        self.kernel = nnx.Param(2.0 * x)
        self.bias = nnx.Param(jnp.zeros(x.shape[-1:]))


@pytest.mark.parametrize("mode", list(MODES))
def test_vmapped_constructor_returns_the_stacked_module(mode):
    xs = jnp.arange(12.0).reshape(3, 4)
    s = nnx.vmap(lambda x: Stack(x), **MODES[mode])(xs)
    assert isinstance(s, Stack) and s.kernel.shape == (3, 4) and s.bias.shape == (3, 4)
    np.testing.assert_allclose(s.kernel[...], 2.0 * np.arange(12.0).reshape(3, 4))
