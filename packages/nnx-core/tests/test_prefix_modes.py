"""``nnx.prefix`` over a model built under ref or hijax defaults.

The prefix holds an axis (an int or None) where each Variable was. Ref and hijax
storage is for arrays, so the prefix's Variables are plain in every mode: their value
is the axis, read by ``get_value()``, the same tree as the one over a plain model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

MODES = {"plain": dict(ref=False, hijax=False), "ref": dict(ref=True), "hijax": dict(hijax=True)}


class Block(nnx.Module):
    def __init__(self):
        self.kernel = nnx.Param(jnp.arange(6.0).reshape(3, 2))
        self.scale = nnx.BatchStat(jnp.array(2.0))


def build(mode: str) -> Block:
    with nnx.var_defaults(**MODES[mode]):
        return Block()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_prefix_variables_are_plain_and_hold_the_axis(mode):
    model = build(mode)
    axes = nnx.prefix(model, {nnx.Param: 0, ...: None})
    for name, axis in (("kernel", 0), ("scale", None)):
        v = getattr(axes, name)
        assert type(v) is type(getattr(model, name))
        assert (v.ref, v.hijax) == (False, False)
        assert v.get_value() == axis and v.get_raw_value() == axis
    # the model is left in its mode
    assert (model.kernel.ref, model.kernel.hijax) == (mode == "ref", mode == "hijax")


@pytest.mark.parametrize("mode", ["ref", "hijax"])
def test_prefix_over_any_mode_is_the_prefix_over_the_plain_model(mode):
    plain = nnx.prefix(build("plain"), {nnx.Param: 0, ...: None})
    other = nnx.prefix(build(mode), {nnx.Param: 0, ...: None})
    assert jax.tree.structure(other) == jax.tree.structure(plain)
    assert jax.tree.leaves(other) == jax.tree.leaves(plain) == [0]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_prefix_from_any_mode_drives_jax_vmap_over_the_plain_model(mode):
    axes = nnx.prefix(build(mode), {nnx.Param: 0, ...: None})
    model = build("plain")
    out = jax.vmap(lambda m: m.kernel.get_value() * m.scale.get_value(), in_axes=(axes,))(model)
    np.testing.assert_allclose(out, np.arange(6.0).reshape(3, 2) * 2.0)


def test_prefix_keeps_the_metadata_of_each_variable():
    with nnx.var_defaults(ref=True):
        model = Block()
        model.kernel.set_metadata(sharding=("data", None))
    axes = nnx.prefix(model, lambda path, x: 0)
    assert axes.kernel.get_metadata("sharding") == ("data", None)
    assert axes.kernel.get_value() == 0
