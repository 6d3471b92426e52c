"""nnx.jit over ref and hijax Variables (#13): their arrays cross into jax.jit, not their
refs and cells (JAX's slow path for mutable arguments), and inside they keep behaving as
mutable JAX values: a nested jax.jit or a lax loop closing over one carries its writes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Counter, Linear, add_bias

import nnx

MUTABLE = ["ref", "hijax"]


class Pair(nnx.Module):
    def __init__(self):
        self.c = nnx.Variable(jnp.array(0))
        self.w = nnx.Param(jnp.ones(3))


def make(mode: str) -> Pair:
    with nnx.var_defaults(**({"ref": True} if mode == "ref" else {"hijax": True})):
        return Pair()


@pytest.mark.parametrize("mode", MUTABLE)
def test_arrays_cross_and_refs_are_donated(mode):
    m = make(mode)
    f = nnx.jit(lambda m: m.w[...] * 2)
    f(m)
    f(m)
    # JAX's C++ dispatch took the calls (it refuses refs and cells as arguments)
    ((fn, _),) = f._compiled.values()
    assert fn._cache_size() >= 1
    info = jax.tree.leaves(f.lower(m).args_info)
    assert [type(a._aval).__name__ for a in info] == ["ShapedArray", "ShapedArray"]
    # a ref's buffer is donated (every ref's value comes back, aliased); a hijax
    # Variable's array is the one v[...] hands out, so it is not
    assert [a.donated for a in info] == [mode == "ref"] * 2


@pytest.mark.parametrize("mode", MUTABLE)
def test_writes_come_out_into_the_same_refs_and_cells(mode):
    m = make(mode)
    raw_c, raw_w = m.c.get_raw_value(), m.w.get_raw_value()
    w0 = m.w[...]

    @nnx.jit
    def step(m, x):
        m.c[...] += 1
        m.w[...] = m.w[...] * x
        return m.w[...].sum()

    for k in range(1, 4):
        np.testing.assert_allclose(step(m, 2.0), 3 * 2.0**k)
    assert int(m.c[...]) == 3
    np.testing.assert_allclose(m.w[...], np.full(3, 8.0))
    assert m.c.get_raw_value() is raw_c and m.w.get_raw_value() is raw_w
    assert m.w.ref == (mode == "ref") and m.w.hijax == (mode == "hijax")
    np.testing.assert_array_equal(w0, np.ones(3))  # an array read before is untouched


@pytest.mark.parametrize("mode", MUTABLE)
def test_a_read_only_call_leaves_the_values(mode):
    m = make(mode)
    f = nnx.jit(lambda m: m.w[...] + m.c[...])
    for _ in range(3):
        np.testing.assert_allclose(f(m), np.ones(3))
    np.testing.assert_allclose(m.w[...], np.ones(3))
    assert int(m.c[...]) == 0


@pytest.mark.parametrize("mode", MUTABLE)
def test_a_nested_jax_jit_and_a_lax_loop_carry_writes(mode):
    m = make(mode)

    @nnx.jit
    def f(m):
        jax.jit(lambda m: m.c.__setitem__(..., m.c[...] + 1))(m)

        def body(i, carry):
            m.w[...] = m.w[...] + 1.0
            return carry

        jax.lax.fori_loop(0, 3, body, 0)
        return m.c[...]

    assert int(f(m)) == 1
    assert int(m.c[...]) == 1
    np.testing.assert_allclose(m.w[...], np.full(3, 4.0))


@pytest.mark.parametrize("mode", MUTABLE)
def test_a_variable_reached_by_closure_and_argument_is_one(mode):
    m = make(mode)

    @nnx.jit
    def f(arg):
        m.c[...] += 100  # the caller's Variable, by closure
        arg.c[...] += 1  # the same Variable, through the argument
        return arg.c[...]

    assert int(f(m)) == 101
    assert int(m.c[...]) == 101


@pytest.mark.parametrize("mode", MUTABLE)
def test_closure_variables_keep_working(mode):
    m, other = make(mode), make(mode)

    @nnx.jit
    def f(m):
        other.c[...] += 10
        m.c[...] += 1

    f(m)
    f(m)
    assert int(m.c[...]) == 2 and int(other.c[...]) == 20


def test_a_hijax_dict_may_grow_inside():
    metrics = nnx.Variable({}, hijax=True)

    @nnx.jit
    def f(metrics, x):
        metrics["mean"] = jnp.mean(x)
        return x

    f(metrics, jnp.arange(4.0))
    assert float(metrics["mean"]) == 1.5 and metrics.hijax


@pytest.mark.parametrize("mode", MUTABLE)
def test_nested_nnx_jit_and_a_new_ref_of_another_shape(mode):
    m = make(mode)

    @nnx.jit
    def outer(m):
        nnx.jit(lambda m: m.c.__setitem__(..., m.c[...] + 5))(m)
        return m.c[...]

    assert int(outer(m)) == 5 and int(m.c[...]) == 5

    r = make("ref")

    @nnx.jit
    def reshape(r):
        r.w.set_raw_value(jax.new_ref(jnp.zeros(5)))

    reshape(r)
    np.testing.assert_array_equal(r.w[...], np.zeros(5))
    assert r.w.ref


@pytest.mark.parametrize("mode", MUTABLE)
def test_an_error_after_writes_leaves_refs_and_cells_unchanged(mode):
    m = make(mode)

    @nnx.jit
    def bad(m):
        m.c[...] += 1
        m.w[...] = m.w[...] * 3
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        bad(m)
    assert int(m.c[...]) == 0
    np.testing.assert_allclose(m.w[...], np.ones(3))


@pytest.mark.parametrize("mode", MUTABLE)
def test_mixed_modes_in_one_call_with_donation(mode):
    m = make(mode)
    with nnx.var_defaults(hijax=False, ref=False):
        plain = Counter()
        lin = Linear(3, 3, rngs=nnx.Rngs(0))

    @nnx.jit(donate_argnums=(0, 1))
    def f(m, plain, lin, x):
        m.c[...] += 1
        plain()
        return lin(x * m.w[...][None, :])

    x = jnp.ones((1, 3))
    for k in range(1, 3):
        np.testing.assert_allclose(
            f(m, plain, lin, x), add_bias(x @ lin.w[...], lin.b[...]), rtol=1e-6
        )
        assert int(m.c[...]) == k and int(plain.count[...]) == k


class Counted(nnx.Module):
    def __init__(self):
        self.c = nnx.Variable(jnp.zeros((), jnp.int32))  # not weakly typed: no retrace


def counted(mode: str) -> Counted:
    kw = {"plain": {}, "ref": {"ref": True}, "hijax": {"hijax": True}}[mode]
    with nnx.var_defaults(**kw):
        return Counted()


@pytest.mark.parametrize("mode", ["plain", *MUTABLE])
def test_each_call_runs_the_entry_of_its_own_layout_mode_and_trace_level(mode):
    # nnx.jit reuses the last call's compiled entry for the same flattened arguments
    # only when the layout, the graph mode and the trace level are the same
    p = counted(mode)
    traces = []

    @nnx.jit
    def f(a, b):
        traces.append(1)
        if isinstance(a, Counted):
            a.c[...] += 1
            return b
        b.c[...] += 10
        return a

    x = jnp.ones(())
    f(p, x)
    f(p, x)
    assert int(p.c[...]) == 2 and len(traces) == 1
    f(x, p)  # the model is the second argument now: another entry
    assert int(p.c[...]) == 12 and len(traces) == 2
    with nnx.set_graph_updates(False):  # another mode: another entry (values still come out)
        f(p, x)
    assert int(p.c[...]) == 13 and len(traces) == 3
    f(p, x)  # the first entry again
    assert int(p.c[...]) == 14 and len(traces) == 3

    @nnx.jit
    def outer(p, x):  # inside a trace: refs and cells cross as they are
        f(p, x)
        return x

    outer(p, x)
    f(p, x)
    assert int(p.c[...]) == 16


@pytest.mark.parametrize("mode", ["plain", *MUTABLE])
def test_a_moved_epoch_with_the_same_structure_does_not_retrace(mode):
    p = counted(mode)
    traces = []

    @nnx.jit
    def f(a):
        traces.append(1)
        a.c[...] += 1

    f(p)
    p.extra = nnx.Param(jnp.ones(()))  # the structure changes: a new entry
    f(p)
    del p.extra  # back to the first structure (an equal GraphDef, another object)
    f(p)
    f(p)
    assert len(traces) == 2 and int(p.c[...]) == 4
