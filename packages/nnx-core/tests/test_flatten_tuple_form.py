"""Flax NNX's tuple form of ``nnx.graph.flatten`` and its path type names (#14)."""

import jax.numpy as jnp

import nnx


class Pair(nnx.Module):
    def __init__(self):
        self.b = nnx.BatchStat(jnp.zeros(2))
        self.a = nnx.Param(jnp.ones(3))
        self.tied = self.a


def test_graph_flatten_unpacks_into_graphdef_and_flat_state():
    m = Pair()
    graphdef, flat_state = nnx.graph.flatten(m)
    assert graphdef == nnx.graphdef(m)
    assert isinstance(flat_state, nnx.FlatState)
    assert flat_state.paths == (("a",), ("b",))  # the shared Param once, sorted paths
    assert flat_state.leaves[0] is m.a and flat_state.leaves[1] is m.b
    # the Flax filters guide's hand-written split, over the pairs
    params = nnx.State.from_flat_path([(p, v) for p, v in flat_state if isinstance(v, nnx.Param)])
    assert nnx.merge(graphdef, params, nnx.state(m, nnx.BatchStat)).tied is not None


def test_key_and_pathparts_are_the_path_types():
    key_path = tuple[nnx.graph.Key, ...]
    assert key_path == nnx.graph.PathParts == nnx.PathParts
    assert all(isinstance(k, nnx.graph.Key) for k in ("kernel", 0, ("x",)))
