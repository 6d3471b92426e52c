"""``@nnx.vmap`` on ``__init__`` (Flax's guides build a stack of layers this way, #14).

Flax NNX 0.12 (its "scan over layers" examples)::

    class MLP(nnx.Module):
      @nnx.split_rngs(splits=5)
      @nnx.vmap(in_axes=(0, 0))
      def __init__(self, rngs: nnx.Rngs):
        self.linear = Linear(3, 3, rngs=rngs)
        ...

With graph updates on, the attributes the constructor creates land on the
caller's ``self``, each Variable with the vmapped axis in front.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Linear(nnx.Module):
    """A dense layer (nnx-layers is not installed in this package's test environment)."""

    def __init__(self, din, dout, *, rngs):
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (din, dout)) / din**0.5)
        self.bias = nnx.Param(jnp.zeros((dout,)))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


class BatchNorm(nnx.Module):
    """The four Variables of a batch norm, which is all these tests look at."""

    def __init__(self, n, *, rngs):  # noqa: ARG002 - the signature of nnx.BatchNorm
        self.scale = nnx.Param(jnp.ones((n,)))
        self.bias = nnx.Param(jnp.zeros((n,)))
        self.mean = nnx.BatchStat(jnp.zeros((n,)))
        self.var = nnx.BatchStat(jnp.ones((n,)))


class Stack(nnx.Module):
    @nnx.split_rngs(splits=4)
    @nnx.vmap(in_axes=(0, 0))
    def __init__(self, rngs: nnx.Rngs):
        self.linear = Linear(3, 5, rngs=rngs)
        self.bn = BatchNorm(5, rngs=rngs)
        self.node = nnx.Param(jnp.ones((2,)))
        self.label = "stack"  # a static attribute lands too

    @nnx.vmap(in_axes=(0, None))
    def __call__(self, x):
        return self.linear(x)


@nnx.split_rngs(splits=4)
@nnx.vmap(in_axes=0, out_axes=0)
def make_linear(rngs):
    return Linear(3, 5, rngs=rngs)


def test_vmapped_init_stacks_the_new_attributes_on_self():
    m = Stack(nnx.Rngs(0))
    assert type(m) is Stack and m.label == "stack"
    shapes = jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(m)))
    assert shapes == {
        "bn": {"bias": (4, 5), "mean": (4, 5), "scale": (4, 5), "var": (4, 5)},
        "linear": {"bias": (4, 5), "kernel": (4, 3, 5)},
        "node": (4, 2),
    }
    assert isinstance(m.linear, Linear) and isinstance(m.linear.kernel, nnx.Param)


def test_vmapped_init_equals_the_stack_built_by_a_vmapped_constructor():
    rngs_a, rngs_b = nnx.Rngs(7), nnx.Rngs(7)
    m = Stack(rngs_a)
    ref = make_linear(rngs_b)  # Flax's transforms guide: a vmapped function returning one layer
    np.testing.assert_array_equal(m.linear.kernel[...], ref.kernel[...])
    np.testing.assert_array_equal(m.linear.bias[...], ref.bias[...])
    # each member has its own parameters
    k = np.asarray(m.linear.kernel[...])
    assert all(not np.allclose(k[0], k[i]) for i in range(1, 4))
    # the caller's Rngs moved on as the constructor form's did
    assert int(rngs_a.default.count[...]) == int(rngs_b.default.count[...])


def test_the_stacked_module_runs_member_by_member():
    m = Stack(nnx.Rngs(1))
    x = jnp.arange(3.0)
    y = m(x)
    kernel, bias = np.asarray(m.linear.kernel[...]), np.asarray(m.linear.bias[...])
    expected = np.stack([np.asarray(x) @ kernel[i] + bias[i] for i in range(4)])
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_vmapped_init_with_a_non_leading_self_axis_and_without_split_rngs():
    class Scales(nnx.Module):
        @nnx.vmap(in_axes=(0, 0))
        def __init__(self, x):
            self.w = nnx.Param(x * 2.0)

    s = Scales(jnp.arange(3.0))
    np.testing.assert_array_equal(s.w[...], [0.0, 2.0, 4.0])

    class Rows(nnx.Module):
        @nnx.vmap(in_axes=(1, 0))
        def __init__(self, x):
            self.w = nnx.Param(jnp.stack([x, -x]))

    r = Rows(jnp.arange(3.0))
    assert r.w[...].shape == (2, 3)  # stacked along self's axis 1
    np.testing.assert_array_equal(r.w[...], [[0.0, 1.0, 2.0], [0.0, -1.0, -2.0]])


class Stats(nnx.Module):
    def __init__(self, n):
        self.mean = nnx.BatchStat(jnp.zeros((n,)))


STATE_AXES = nnx.StateAxes({(nnx.Param, nnx.RngState): 0, ...: None})


class StackedMLP(nnx.Module):
    """Flax NNX's 0.11 migration guide: self's axes per kind of state."""

    @nnx.split_rngs(splits=5)
    @nnx.vmap(in_axes=(STATE_AXES, STATE_AXES))
    def __init__(self, rngs: nnx.Rngs):
        self.linear = Linear(3, 3, rngs=rngs)
        self.stats = Stats(3)
        self.node = nnx.Param(jnp.ones((2,)))

    @nnx.scan(in_axes=(STATE_AXES, nnx.Carry))
    def __call__(self, x):
        x = jnp.tanh(x @ self.linear.kernel[...] + self.linear.bias[...][None])
        self.stats.mean[...] += x.mean(0)
        return x, None


def test_state_axes_for_self_stacks_what_it_maps_and_shares_the_rest(mode):
    m = StackedMLP(nnx.Rngs(0))
    assert m.linear.kernel.shape == (5, 3, 3) and m.node.shape == (5, 2)
    assert m.stats.mean.shape == (3,)  # `...: None`: one value for every member
    kernels = np.asarray(m.linear.kernel[...])
    assert len({kernels[i].tobytes() for i in range(5)}) == 5  # each member its own keys
    x = jnp.ones((4, 3))
    y, _ = m(x)
    ref, total = np.asarray(x), np.zeros(3)
    for i in range(5):  # the scan over layers, by hand
        ref = np.tanh(ref @ kernels[i] + np.asarray(m.linear.bias[...][i]))
        total += ref.mean(0)
    np.testing.assert_allclose(y, ref, rtol=1e-5)
    np.testing.assert_allclose(m.stats.mean[...], total, rtol=1e-5)


def test_state_axes_for_self_with_a_per_member_value_at_axis_none_names_it():
    class Bad(nnx.Module):
        @nnx.vmap(in_axes=(nnx.StateAxes({nnx.Param: None, ...: 0}), 0))
        def __init__(self, x):
            self.w = nnx.Param(x)

    with pytest.raises(nnx.AxisError, match=r"'w' of the object returned the axis None"):
        Bad(jnp.arange(3.0))
