"""nnx.transform_metadata (Flax NNX 0.12.8): a mapped axis leaves the Variables'
sharding metadata while the function runs, and comes back (or is added) after."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Holder(nnx.Module):
    def __init__(self, value, names):
        self.w = nnx.Param(value, sharding_names=names)


def test_inside_the_mapped_axis_is_gone_and_comes_back():
    v = nnx.Param(jnp.ones((4, 3)), sharding_names=("layers", "model"))

    @nnx.transform_metadata(partition="layers")
    def seen(v):
        return v.sharding_names

    assert seen(v) == ("model",)
    assert v.sharding_names == ("layers", "model") and v.out_sharding == ("layers", "model")


def test_per_argument_axes_and_writes_stay():
    a = Holder(jnp.ones((2, 3)), ("model", "layers"))
    b = Holder(jnp.ones(3), ("layers",))

    @nnx.transform_metadata(in_axes=(1, None), partition="layers")
    def f(a, b):
        a.w[...] = a.w[...] * 2
        return a.w.sharding_names, b.w.sharding_names

    assert f(a, b) == (("model",), ("layers",))
    assert a.w.sharding_names == ("model", "layers")
    np.testing.assert_array_equal(a.w.get_value(), np.full((2, 3), 2.0))


def test_under_jax_vmap_new_variables_get_the_axis():
    @nnx.transform_metadata(in_axes=0, out_axes=0, partition="layers")
    def make(x):
        return Holder(x, ("model",))

    # the raw transform maps the arrays; transform_metadata the names
    stacked = jax.vmap(make)(jnp.ones((5, 3)))
    assert stacked.w.get_value().shape == (5, 3)
    assert stacked.w.sharding_names == ("layers", "model")


def test_a_shared_variable_is_handled_once_and_a_failed_removal_changes_nothing():
    shared = nnx.Param(jnp.ones((2, 3)), sharding_names=("layers", "model"))
    other = nnx.Param(jnp.ones((2, 3)), sharding_names=("model", "data"))

    @nnx.transform_metadata(partition="layers")
    def f(x, y):
        return x.sharding_names, y.sharding_names

    assert f(shared, shared) == (("model",), ("model",))
    assert shared.sharding_names == ("layers", "model")
    with pytest.raises(ValueError, match="'layers' at 0"):
        f(shared, other)  # other has no 'layers' at axis 0
    assert shared.sharding_names == ("layers", "model")  # put back
    assert other.sharding_names == ("model", "data")


def test_hooks_and_keyword_arguments():
    calls = []

    def on_remove(v, index, name):
        calls.append(("remove", index, name))

    def on_add(v, index, name):
        calls.append(("add", index, name))

    v = nnx.Param(jnp.ones((2,)), on_remove_axis=on_remove, on_add_axis=on_add)

    @nnx.transform_metadata(partition=None)
    def f(x):
        return 1

    assert f(x=v) == 1
    assert calls == [("remove", 0, None), ("add", 0, None)]
    with pytest.raises(ValueError, match="in_axes has 2 entries"):
        nnx.transform_metadata(in_axes=(0, 0), partition="p")(f)(v)


def test_scan_transform_metadata_like_vmap():
    # Flax NNX's scan-over-layers with a partition name for the layer axis
    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make(x):
        return Holder(x, ("din",))

    stack = make(jnp.ones((4, 3)))
    assert stack.w.sharding_names == ("layers", "din")
    seen = []

    @nnx.scan(
        in_axes=(nnx.Carry, 0),
        out_axes=(nnx.Carry, 0),
        transform_metadata={nnx.PARTITION_NAME: "layers"},
    )
    def step(x, layer):
        seen.append(layer.w.sharding_names)
        return x + layer.w[...].sum(), Holder(layer.w[...] * 2, ("din",))

    total, doubled = step(jnp.array(0.0), stack)
    assert seen == [("din",)]
    assert float(total) == 12.0
    assert stack.w.sharding_names == ("layers", "din")  # put back
    assert doubled.w.sharding_names == ("layers", "din")  # new: the axis added
    np.testing.assert_array_equal(doubled.w.get_value(), np.full((4, 3), 2.0))

    @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
    def plain(x, layer):
        seen.append(layer.w.sharding_names)
        return x

    plain(jnp.array(0.0), stack)
    assert seen[-1] == ("layers", "din")  # without transform_metadata nothing changes
