"""What JAX's pytree functions see of hijax Variables: the Variable, never its cell
(decision 0009), while a plain ``jax.jit`` still carries their writes."""

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class OptState(nnx.Variable):
    pass


class Counter(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.arange(3.0), tag="weights")
        self.count = nnx.BatchStat(jnp.array(0))

    def __call__(self, x):
        self.count[...] += 1
        return x * self.w[...]


@pytest.fixture
def model():
    with nnx.var_defaults(hijax=True):
        return Counter()


def test_tree_map_over_a_state_hands_out_variables(model):
    seen = []
    jax.tree.map(seen.append, nnx.state(model, nnx.Param))
    (leaf,) = seen
    assert isinstance(leaf, nnx.Param) and isinstance(leaf, nnx.Variable)
    assert type(leaf).__name__ == "Param"
    np.testing.assert_array_equal(leaf[...], [0.0, 1.0, 2.0])
    assert leaf.get_metadata("tag") == "weights" and leaf.tag == "weights"
    assert "Cell" not in repr(leaf) and repr(leaf).startswith("Param(")


def test_optimizer_state_built_by_tree_map_as_in_flax_programs(model):
    params = nnx.state(model, nnx.Param)

    def make_opt_state(x):
        if isinstance(x, nnx.Variable):
            return OptState(jnp.zeros_like(x[...]), **x.metadata)
        return OptState(jnp.zeros_like(x))

    momentum = jax.tree.map(make_opt_state, params)
    assert type(momentum["w"]) is OptState
    np.testing.assert_array_equal(momentum["w"][...], jnp.zeros(3))
    assert momentum["w"].tag == "weights"


def test_tree_map_computing_arrays_gives_hijax_variables_of_the_same_kind(model):
    zeros = jax.tree.map(jnp.zeros_like, nnx.state(model))
    assert type(zeros["w"]) is nnx.Param and zeros["w"].hijax
    np.testing.assert_array_equal(zeros["w"][...], jnp.zeros(3))
    doubled = jax.tree.map(lambda x: x * 2, nnx.state(model))
    np.testing.assert_array_equal(doubled["w"][...], [0.0, 2.0, 4.0])
    assert model.w is not doubled["w"]  # a new Variable; the model is untouched
    np.testing.assert_array_equal(model.w[...], [0.0, 1.0, 2.0])


def test_identity_tree_map_returns_the_same_variables(model):
    again = jax.tree.map(lambda x: x, model)
    assert again.w is model.w and again.count is model.count


def test_leaves_and_their_writes_are_the_model_variables(model):
    leaves = jax.tree.leaves(model)
    assert [type(x).__name__ for x in leaves] == ["BatchStat", "Param"]
    leaves[1][...] = jnp.ones(3)  # a write through what jax.tree.leaves gave
    np.testing.assert_array_equal(model.w[...], jnp.ones(3))
    leaves[1].note = "set through the leaf"
    assert model.w.note == "set through the leaf"
    assert copy.deepcopy(leaves[1]).note == "set through the leaf"
    assert type(pickle.loads(pickle.dumps(leaves[1]))) is nnx.Param


def test_plain_jax_jit_still_carries_writes(model):
    step = jax.jit(lambda m, x: m(x))
    for _ in range(3):
        y = step(model, jnp.ones(3))
    np.testing.assert_array_equal(y, [0.0, 1.0, 2.0])
    assert int(model.count[...]) == 3


def test_an_abstract_hijax_state_shows_its_shape_dtype_structs():
    with nnx.var_defaults(hijax=True):
        p = nnx.Param(jax.ShapeDtypeStruct((2, 3), jnp.float32))
    assert p.hijax
    (leaf,) = jax.tree.leaves(nnx.State({"p": p}))
    assert leaf == jax.ShapeDtypeStruct((2, 3), jnp.float32)
    # a restore target: arrays put in its place are hijax Variables of the same kind
    restored = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), nnx.State({"p": p}))
    assert type(restored["p"]) is nnx.Param and restored["p"].hijax


def test_checkpoint_libraries_see_numpy_copies_as_plain_variables(model):
    host = jax.tree.map(np.asarray, nnx.state(model))
    assert isinstance(host["w"].get_value(), np.ndarray) and not host["w"].hijax
    assert jax.tree.leaves(host)[1].tolist() == [0.0, 1.0, 2.0]
