"""nnx.cond / nnx.switch carry a structural change out when every branch makes the same
one (Flax NNX's graph updates); different changes raise and write nothing."""

import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class M(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.arange(3.0))


def grow(scale):
    def branch(m, x):
        m.w[...] = m.w[...] * scale
        m.extra = nnx.BatchStat(jnp.full((2,), scale))
        m.note = "grown"
        return jnp.sum(m.w[...] * x)

    return branch


@pytest.mark.parametrize("pred", [True, False])
def test_the_same_change_in_both_branches_comes_out(pred, mode):
    m = M()
    out = nnx.cond(jnp.array(pred), grow(2.0), grow(3.0), m, jnp.ones(3))
    s = 2.0 if pred else 3.0
    np.testing.assert_allclose(out, s * 3.0)  # sum(s * [0, 1, 2])
    np.testing.assert_allclose(m.w[...], s * np.arange(3.0))
    assert type(m.extra) is nnx.BatchStat and m.note == "grown"  # pyright: ignore[reportAttributeAccessIssue]
    np.testing.assert_allclose(m.extra[...], [s, s])  # pyright: ignore[reportAttributeAccessIssue]


def test_switch_picks_the_branch_and_carries_its_change():
    m = M()
    out = nnx.switch(jnp.array(2), [grow(1.0), grow(5.0), grow(7.0)], m, jnp.ones(3))
    np.testing.assert_allclose(out, 21.0)
    np.testing.assert_allclose(m.extra[...], [7.0, 7.0])  # pyright: ignore[reportAttributeAccessIssue]


def test_a_change_in_one_branch_only_raises_and_writes_nothing():
    m = M()

    def keep(m, x):
        m.w[...] = m.w[...] + 1.0
        return jnp.sum(x)

    with pytest.raises(nnx.StructureError, match="one branch changes it and another does not"):
        nnx.cond(jnp.array(True), grow(2.0), keep, m, jnp.ones(3))
    np.testing.assert_allclose(m.w[...], np.arange(3.0))
    assert not hasattr(m, "extra")


def test_without_graph_updates_the_structure_stays():
    m = M()
    nnx.cond(jnp.array(True), grow(2.0), grow(2.0), m, jnp.ones(3), graph_updates=False)
    np.testing.assert_allclose(m.w[...], 2.0 * np.arange(3.0))  # the write comes out
    assert not hasattr(m, "extra") and not hasattr(m, "note")
