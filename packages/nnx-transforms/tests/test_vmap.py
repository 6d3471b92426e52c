"""nnx.vmap: stacks of modules, StateAxes, split_rngs, state updates, axis errors."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import MLP, SGD, Counter, Linear, add_bias

import nnx

TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-6)


@nnx.vmap(in_axes=0, out_axes=0)
def create_stack(key):
    return Linear(3, 3, rngs=nnx.Rngs(key))


def test_vectorized_creation_makes_a_stack_equal_to_single_models(mode):
    keys = jax.random.split(jax.random.key(0), 4)
    stack = create_stack(keys)
    assert stack.w.shape == (4, 3, 3)
    single = Linear(3, 3, rngs=nnx.Rngs(keys[2]))
    np.testing.assert_allclose(stack.w[2], single.w[...], **TOL)


def test_forward_over_stack_and_state_updates_come_out(mode):
    stack = nnx.vmap(lambda k: MLP(2, 4, 2, rngs=nnx.Rngs(k)))(
        jax.random.split(jax.random.key(1), 3)
    )
    x = jnp.arange(8.0).reshape(4, 2)

    @nnx.vmap(in_axes=(0, None))
    def fwd(m, x):
        return m(x)

    y = fwd(stack, x)
    assert y.shape == (3, 4, 2)
    assert stack.bn.mean.shape == (3, 4)
    for i in range(3):
        h = add_bias(x @ stack.linear1.w[i], stack.linear1.b[i])
        np.testing.assert_allclose(stack.bn.mean[i], 0.1 * h.mean(0), **TOL)
    np.testing.assert_array_equal(stack.dropout.rngs.count[...], np.ones(3))


def test_state_axes_broadcast_shared_state():
    stack = create_stack(jax.random.split(jax.random.key(0), 3))
    stack.calls = nnx.BatchStat(jnp.array(0))
    axes = nnx.StateAxes({nnx.Param: 0, nnx.BatchStat: None})

    @nnx.vmap(in_axes=(axes, 0))
    def fwd(m, x):
        m.calls[...] += 1
        return m(x)

    x = jnp.ones((3, 2, 3))
    y = fwd(stack, x)
    np.testing.assert_allclose(y[1], add_bias(x[1] @ stack.w[1], stack.b[1]), **TOL)
    # stack.calls is added at run time on purpose: Linear does not declare it
    assert int(stack.calls[...]) == 1  # pyright: ignore[reportAttributeAccessIssue]


def test_split_rngs_decorator_gives_each_member_its_own_parameters():
    @nnx.split_rngs(splits=4)
    @nnx.vmap
    def create(rngs):
        return Linear(2, 2, rngs=rngs)

    rngs = nnx.Rngs(0)
    a = create(rngs)
    b = create(rngs)
    assert a.w.shape == (4, 2, 2)
    assert not np.allclose(a.w[0], a.w[1])
    assert not np.allclose(a.w[...], b.w[...])  # the stream advanced between calls
    assert rngs.default.key.shape == () and int(rngs.default.count[...]) == 2


def test_split_rngs_context_and_seed_fork_form(mode):
    rngs = nnx.Rngs(0)
    with nnx.split_rngs(rngs, splits=3):
        assert rngs.default.key.shape == (3,)
        stack = nnx.vmap(lambda r: Linear(2, 2, rngs=r))(rngs)
    assert rngs.default.key.shape == ()
    stack2 = nnx.vmap(lambda r: Linear(2, 2, rngs=r))(nnx.Rngs(0).fork(split=3))
    assert stack.w.shape == stack2.w.shape == (3, 2, 2)


def test_seed_000_refs_stack_then_plain_lax_scan():
    with nnx.use_refs(True):
        stack = nnx.vmap(lambda r: MLP(2, 4, 2, rngs=r))(nnx.Rngs(0).fork(split=3))
    assert stack.linear1.w.ref

    def scan_fn(x, block):
        return block(x), None

    y, _ = jax.lax.scan(scan_fn, jnp.ones((5, 2)), stack)
    assert y.shape == (5, 2)
    np.testing.assert_array_equal(stack.dropout.rngs.count[...], np.ones(3))


def test_out_axes_for_new_objects():
    stack = nnx.vmap(lambda k: Linear(2, 3, rngs=nnx.Rngs(k)), out_axes=1)(
        jax.random.split(jax.random.key(0), 5)
    )
    assert stack.w.shape == (2, 5, 3)


def test_mismatched_axis_sizes_name_the_paths():
    a = create_stack(jax.random.split(jax.random.key(0), 3))
    b = create_stack(jax.random.split(jax.random.key(0), 4))
    with pytest.raises(nnx.transforms.AxisError, match="mismatched sizes.*has 4 along axis 0"):
        nnx.vmap(lambda a, b: a.w[...] + b.w[...])(a, b)


def test_in_axes_length_and_state_axes_coverage_errors():
    m = create_stack(jax.random.split(jax.random.key(0), 3))
    with pytest.raises(nnx.transforms.AxisError, match="in_axes has 1 entries.*2 positional"):
        nnx.vmap(lambda m, x: x, in_axes=(0,))(m, jnp.ones(3))
    with pytest.raises(nnx.transforms.AxisError, match="no filter.*matches the Param"):
        nnx.vmap(lambda m: 0, in_axes=(nnx.StateAxes({nnx.BatchStat: 0}),))(m)
    with pytest.raises(nnx.transforms.AxisError, match="has no axis 0"):
        nnx.vmap(lambda c: 0)(Counter())


def test_broadcast_state_written_with_mapped_value_is_an_error():
    c = Counter()
    with pytest.raises(nnx.transforms.AxisError, match="count.*in_axes None"):
        nnx.vmap(lambda c, x: c.count.set_value(x.astype(jnp.int32)), in_axes=(None, 0))(
            c, jnp.arange(3)
        )
    assert int(c.count[...]) == 0


def test_shared_variable_with_two_axes_is_an_aliasing_error():
    stack = create_stack(jax.random.split(jax.random.key(0), 3))
    with pytest.raises(nnx.AliasingError, match="different axis"):
        nnx.vmap(lambda a, b: 0, in_axes=(0, None))(stack, stack)


def test_axis_name_collectives_match_plain_jax(mode):
    stack = create_stack(jax.random.split(jax.random.key(0), 4))
    x = jnp.arange(12.0).reshape(4, 3)

    @nnx.vmap(in_axes=(0, 0), axis_name="members")
    def centered(m, x):
        y = m(x)
        return y - jax.lax.pmean(y, "members")

    ws, bs = stack.w[...], stack.b[...]
    ref = jax.vmap(lambda w, b, x: (x @ w + b) - jax.lax.pmean(x @ w + b, "i"), axis_name="i")(
        ws, bs, x
    )
    np.testing.assert_allclose(centered(stack, x), ref, **TOL)


def test_axis_size_with_only_broadcast_arguments(mode):
    m = Linear(3, 3, rngs=nnx.Rngs(0))
    counter = Counter()

    @nnx.vmap(in_axes=(None, None), axis_size=5)
    def f(m, c):
        c.count[...] = c.count[...] + 1  # the same value in every member
        return m(jnp.ones((1, 3)))

    y = f(m, counter)
    assert y.shape == (5, 1, 3)
    np.testing.assert_allclose(y[3], add_bias(jnp.ones((1, 3)) @ m.w[...], m.b[...]), **TOL)
    assert int(counter.count[...]) == 1
    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"mismatched sizes.*'x' has 4 along axis 0, but axis_size is 5",
    ):
        nnx.vmap(lambda m, x: x, in_axes=(None, 0), axis_size=5)(m, jnp.ones(4))
    stack = create_stack(jax.random.split(jax.random.key(0), 3))
    # a plain argument against the model's stack: both named by path
    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"mismatched sizes.*'x/in' has 4 along axis 0, but 'm/(w|b)' has 3",
    ):
        nnx.vmap(lambda m, x: m(x["in"]))(stack, {"in": jnp.ones((4, 3))})
    with pytest.raises(
        nnx.transforms.AxisError, match=r"'args\[1\]' has shape \(\), which has no axis 0"
    ):
        nnx.vmap(lambda m, *args: m(args[0]))(stack, 1.0)


def test_nonzero_in_axes_writes_come_back_on_that_axis(mode):
    c = Counter()
    c.count = nnx.BatchStat(jnp.zeros((2, 3), jnp.int32))  # members on axis 1

    @nnx.vmap(in_axes=(1, 0))
    def add(c, k):
        c.count[...] = c.count[...] + k

    add(c, jnp.arange(3, dtype=jnp.int32))
    np.testing.assert_array_equal(c.count[...], np.tile(np.arange(3), (2, 1)))


def test_module_shared_between_arguments_stays_shared_inside_and_out(mode):
    stack = create_stack(jax.random.split(jax.random.key(0), 3))
    opt = SGD(stack)  # holds the stack, passed alongside it
    seen = []

    # the step counter is one for the whole stack: shared (None)
    @nnx.vmap(in_axes=(0, nnx.StateAxes({nnx.Param: 0, ...: None}), 0))
    def f(m, opt, x):
        seen.append(opt.model is m)
        grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(m)
        opt.update(grads)

    x = jnp.ones((3, 2, 3))
    w0, b0 = stack.w[...], stack.b[...]
    f(stack, opt, x)
    assert seen == [True] and opt.model is stack
    g = jax.vmap(jax.grad(lambda w, b, x: jnp.sum(add_bias(x @ w, b) ** 2)))(w0, b0, x)
    np.testing.assert_allclose(stack.w[...], w0 - 0.1 * g, **TOL)
    assert int(opt.step[...]) == 1


def test_nested_vmap_makes_a_grid_of_modules(mode):
    keys = jax.random.split(jax.random.key(0), 6).reshape(2, 3)
    grid = nnx.vmap(nnx.vmap(lambda k: Linear(2, 2, rngs=nnx.Rngs(k))))(keys)
    assert grid.w.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(grid.w[1, 2], Linear(2, 2, rngs=nnx.Rngs(keys[1, 2])).w[...], **TOL)
