"""nnx.jit: state propagation, sharing, returned objects, every Variable mode, caching."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import MLP, SGD, Counter, Linear, add_bias

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)


def test_variable_written_inside_is_updated_outside(mode):
    counter = Counter()

    @nnx.jit
    def step(c):
        c()

    step(counter)
    step(counter)
    assert int(counter.count[...]) == 2


def test_usable_with_and_without_options():
    @nnx.jit(static_argnums=1)
    def scale(m, k):
        return m.w[...] * k

    m = Linear(2, 2, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(scale(m, 3), m.w[...] * 3, **TOL)
    assert nnx.jit(lambda m: m.b[...])(m).shape == (2,)


def test_train_step_matches_plain_jax_and_keeps_optimizer_sharing(mode):
    model = Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = SGD(model, lr=0.1)
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
    w0, b0 = model.w[...], model.b[...]

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return jnp.mean((model(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(grads)  # through the optimizer's own reference to model
        return loss

    loss = train_step(model, optimizer, x, y)

    def ref_loss(p):
        return jnp.mean((add_bias(x @ p["w"], p["b"]) - y) ** 2)

    ref_l, g = jax.value_and_grad(ref_loss)({"w": w0, "b": b0})
    np.testing.assert_allclose(loss, ref_l, **TOL)
    np.testing.assert_allclose(model.w[...], w0 - 0.1 * g["w"], **TOL)
    np.testing.assert_allclose(model.b[...], b0 - 0.1 * g["b"], **TOL)
    assert int(optimizer.step[...]) == 1
    assert optimizer.model is model


def test_batchnorm_and_dropout_state_propagates(mode):
    model = MLP(2, 4, 3, rngs=nnx.Rngs(0))
    count0 = model.dropout.rngs.count[...]

    @nnx.jit
    def fwd(model, x):
        return model(x)

    x = jnp.arange(6.0).reshape(3, 2)
    fwd(model, x)
    h = add_bias(x @ model.linear1.w[...], model.linear1.b[...])
    np.testing.assert_allclose(model.bn.mean[...], 0.1 * h.mean(0), **TOL)
    assert int(model.dropout.rngs.count[...]) == int(count0) + 1


def test_shared_variable_between_arguments_stays_shared():
    a = Counter()
    b = Counter()
    b.count = a.count  # the same Variable in two modules

    @nnx.jit
    def f(a, b):
        a()
        b()
        return a.count is b.count

    assert f(a, b)  # a Python identity check made at trace time
    assert a.count is b.count and int(a.count[...]) == 2


def test_returned_input_is_the_callers_object():
    m = Linear(2, 2, rngs=nnx.Rngs(0))

    @nnx.jit
    def f(m):
        return m, m.w, {"layer": m}

    out_m, out_w, d = f(m)
    assert out_m is m and out_w is m.w and d["layer"] is m


def test_create_model_inside_jit_in_every_mode(mode):
    @nnx.jit
    def create_model(rngs):
        return MLP(2, 4, 3, rngs=rngs)

    model = create_model(nnx.Rngs(0))
    eager = MLP(2, 4, 3, rngs=nnx.Rngs(0))
    assert isinstance(model, MLP)
    expected = nnx.var_defaults()
    assert model.linear1.w.hijax == expected.hijax and model.linear1.w.ref == expected.ref
    np.testing.assert_allclose(model.linear1.w[...], eager.linear1.w[...], **TOL)
    model(jnp.ones((3, 2)))  # usable and writable outside


def test_new_object_sharing_an_input_refers_to_it():
    m = Linear(2, 2, rngs=nnx.Rngs(0))

    class Wrapper(nnx.Module):
        def __init__(self, inner):
            self.inner = inner
            self.extra = nnx.Param(jnp.ones(()))

    w = nnx.jit(lambda m: Wrapper(m))(m)
    assert w.inner is m and float(w.extra[...]) == 1.0


def test_plain_arrays_and_pytrees_pass_through():
    @nnx.jit
    def f(x, tree):
        return {"s": x + tree["a"], "t": (tree["b"],)}

    out = f(jnp.ones(2), {"a": jnp.ones(2), "b": 3.0})
    np.testing.assert_allclose(out["s"], 2 * np.ones(2))
    assert float(out["t"][0]) == 3.0


def test_compiles_once_for_the_same_structure():
    traces = []

    @nnx.jit
    def f(c):
        traces.append(1)
        c()

    c = Counter()
    for _ in range(3):
        f(c)
    f(Counter())  # another object of the same structure: same program
    assert len(traces) == 1 and int(c.count[...]) == 3


def test_structure_change_outside_is_seen_next_call():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    f = nnx.jit(lambda m: sum(jnp.sum(v[...]) for v in nnx.state(m).leaves()))
    f(m)
    m.extra = nnx.Param(jnp.full((3,), 10.0))  # model surgery between calls
    expected = float(jnp.sum(m.w[...]) + jnp.sum(m.b[...]) + 30.0)
    np.testing.assert_allclose(f(m), expected, rtol=1e-5)


def test_static_and_keyword_arguments():
    @nnx.jit(static_argnames="train")
    def f(m, x, *, train):
        return m(x) * (2.0 if train else 1.0)

    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))
    np.testing.assert_allclose(f(m, x, train=True), 2 * m(x), **TOL)
    np.testing.assert_allclose(f(m=m, x=x, train=False), m(x), **TOL)


def test_donation_donates_buffers_and_updates_state():
    c = Counter()
    old_count, x = c.count.get_raw_value(), jnp.ones(3)
    f = nnx.jit(lambda c, x: (c(), x + 1)[1], donate_argnums=(0, 1))
    out = f(c, x)
    assert old_count.is_deleted() and x.is_deleted()  # the buffers were donated
    assert int(c.count[...]) == 1
    np.testing.assert_allclose(out, 2 * np.ones(3))


@pytest.mark.parametrize("by", ["argnums", "argnames"])
def test_donated_variable_the_function_only_reads_keeps_its_value(by):
    m = Linear(3, 3, rngs=nnx.Rngs(0))
    w0 = np.asarray(m.w[...])
    opts: dict[str, Any] = dict(donate_argnums=0) if by == "argnums" else dict(donate_argnames="m")

    @nnx.jit(**opts)
    def double(m):
        return m.w[...] * 2  # same shape as w: XLA may reuse w's donated buffer

    out = double(m) if by == "argnums" else double(m=m)
    # without care, XLA reuses w's donated buffer for the output and m.w is left
    # holding a deleted array
    np.testing.assert_array_equal(m.w[...], w0)
    np.testing.assert_allclose(out, 2 * w0, **TOL)
    np.testing.assert_allclose(double(m), 2 * w0, **TOL)  # and m stays usable


def test_donated_argument_in_ref_and_hijax_modes_keeps_working(mode):
    c = Counter()
    f = nnx.jit(lambda c: c(), donate_argnums=0)
    f(c)
    f(c)
    assert int(c.count[...]) == 2


def test_bare_decorator_and_decorator_with_options():
    @nnx.jit
    def bare(m, x):
        return m(x)

    @nnx.jit()
    def empty(m, x):
        return m(x)

    @nnx.jit(static_argnums=(2,), static_argnames=("power",))
    def options(m, x, k, *, power):
        return m(x) * k**power

    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))
    ref = add_bias(x @ m.w[...], m.b[...])
    for f in (bare, empty):
        assert isinstance(f, nnx.transforms._jit.JitWrapped)
        np.testing.assert_allclose(f(m, x), ref, **TOL)
    np.testing.assert_allclose(options(m, x, 3, power=2), ref * 9, **TOL)


def test_static_arguments_are_part_of_the_cache_key():
    traces = []

    @nnx.jit(static_argnums=1)
    def scale(m, k):
        traces.append(k)
        return m.w[...] * k

    m = Linear(2, 2, rngs=nnx.Rngs(0))
    for k in (2, 3, 2, 3):
        np.testing.assert_allclose(scale(m, k), m.w[...] * k, **TOL)
    assert traces == [2, 3]  # one trace per static value, then cached


def test_in_and_out_shardings_on_one_device():
    dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 2))

    @nnx.jit(in_shardings=({"w": dev, "b": dev}, dev), out_shardings=dev)
    def fwd(m, x):
        m.b[...] += 1.0
        return m(x)

    b0 = m.b[...]
    y = fwd(m, x)
    assert y.sharding == dev
    np.testing.assert_allclose(y, add_bias(x @ m.w[...], b0 + 1.0), **TOL)
    np.testing.assert_allclose(m.b[...], b0 + 1.0, **TOL)
    created = nnx.jit(lambda: Linear(2, 2, rngs=nnx.Rngs(0)), out_shardings=dev)()
    assert created.w.get_value().sharding == dev


def test_exception_inside_leaves_state_untouched():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    w0 = m.w[...]

    @nnx.jit
    def bad(m):
        m.w[...] = m.w[...] + 1
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        bad(m)
    np.testing.assert_array_equal(m.w[...], w0)


def test_method_decorated_with_jit():
    class Model(nnx.Module):
        def __init__(self):
            self.count = nnx.BatchStat(jnp.array(0))

        @nnx.jit
        def step(self, k):
            self.count[...] += k

    m = Model()
    m.step(2)
    m.step(3)
    assert int(m.count[...]) == 5


def test_plain_jax_jit_works_in_ref_and_hijax_modes():
    for kw in (dict(ref=True), dict(hijax=True)):
        with nnx.var_defaults(**kw):
            c = Counter()

        @jax.jit
        def step(c):
            c()

        step(c)
        step(c)
        assert int(c.count[...]) == 2


def test_lower_gives_hlo():
    c = Counter()

    @nnx.jit
    def f(c):
        c()

    assert "add" in f.lower(c).as_text()
