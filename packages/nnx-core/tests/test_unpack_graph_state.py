"""nnx.unpack and GraphState: a State that carries its GraphDef (Flax NNX's API)."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Linear

import nnx


class Norm(nnx.Module):
    def __init__(self):
        self.scale = nnx.Param(jnp.ones((2,)))
        self.mean = nnx.BatchStat(jnp.zeros((2,)))


class Foo(nnx.Module):
    def __init__(self, rngs):
        self.norm = Norm()
        self.linear = Linear(2, 3, rngs=rngs)


def test_unpack_then_merge_alone_rebuilds_the_graph():
    node = Foo(nnx.Rngs(0))
    state = nnx.unpack(node)
    assert isinstance(state, nnx.GraphState) and isinstance(state, nnx.State)
    graphdef, plain = nnx.split(node)
    assert state.graphdef == graphdef and state == plain
    new = nnx.merge(state)
    assert isinstance(new, Foo) and isinstance(new.norm, Norm)
    np.testing.assert_array_equal(new.linear.kernel[...], node.linear.kernel[...])


def test_unpack_with_filters_gives_one_graph_state_per_filter():
    node = Foo(nnx.Rngs(0))
    params, stats = nnx.unpack(node, nnx.Param, nnx.BatchStat)
    assert sorted(p for p, _ in params.flat_state()) == [
        ("linear", "bias"),
        ("linear", "kernel"),
        ("norm", "scale"),
    ]
    assert [p for p, _ in stats.flat_state()] == [("norm", "mean")]
    assert params.graphdef == stats.graphdef
    new = nnx.merge(params, stats)
    assert isinstance(new, Foo) and new.norm.mean is node.norm.mean  # no copies
    only = nnx.unpack(node, ...)
    assert isinstance(only, nnx.GraphState)  # one filter: one GraphState, not a tuple


def test_graph_state_is_a_pytree_that_keeps_its_graphdef():
    node = Foo(nnx.Rngs(0))
    params, stats = nnx.unpack(node, nnx.Param, nnx.BatchStat)
    doubled = jax.tree.map(lambda x: x * 2, params)
    assert type(doubled) is nnx.GraphState and doubled.graphdef == params.graphdef
    new = nnx.merge(doubled, stats)
    np.testing.assert_array_equal(new.norm.scale[...], [2.0, 2.0])

    @jax.jit
    def step(p, s):
        m = nnx.merge(p, s)
        m.norm.mean[...] += 1.0
        return nnx.unpack(m, nnx.Param, nnx.BatchStat)

    p2, s2 = step(params, stats)
    assert type(s2) is nnx.GraphState
    np.testing.assert_array_equal(s2.norm.mean[...], [1.0, 1.0])
    nnx.update(node, s2)  # a GraphState is a State everywhere else
    np.testing.assert_array_equal(node.norm.mean[...], [1.0, 1.0])


def test_graph_state_pickles_and_attribute_access_reads_keys():
    node = Foo(nnx.Rngs(0))
    state = nnx.unpack(node)
    back = pickle.loads(pickle.dumps(state))
    assert type(back) is nnx.GraphState and back.graphdef == state.graphdef
    assert back.norm.scale[...].tolist() == [1.0, 1.0]
    assert repr(state).startswith("GraphState({\n  'linear': {")


def test_merge_refuses_a_mix_of_graph_states_and_plain_states():
    node = Foo(nnx.Rngs(0))
    params, stats = nnx.unpack(node, nnx.Param, nnx.BatchStat)
    with pytest.raises(ValueError, match=r"every State must be one .* got a State"):
        nnx.merge(params, nnx.state(node, nnx.BatchStat))
    other = nnx.unpack(Linear(2, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="GraphDefs differ"):
        nnx.merge(params, other)
    with pytest.raises(TypeError, match=r"expected a GraphDef .* or a GraphState .* got function"):
        nnx.merge(lambda: 0, stats)  # pyright: ignore[reportArgumentType]


def test_split_state_and_graphdef_take_graph_false_and_refuse_sharing():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(m, graph=False)  # a tree: the same result
    assert nnx.merge(graphdef, state).kernel is m.kernel
    assert nnx.graphdef(m, graph=False) == graphdef
    m.tied = m.kernel
    for call in (
        lambda: nnx.split(m, graph=False),
        lambda: nnx.state(m, nnx.Param, graph=False),
        lambda: nnx.graphdef(m, graph=False),
        lambda: nnx.unpack(m, graph=False),
    ):
        with pytest.raises(nnx.AliasingError, match=r"'kernel' and at 'tied'"):
            call()
    with nnx.set_graph_mode(False):  # the setting is the default of graph=
        with pytest.raises(nnx.AliasingError, match="tree mode"):
            nnx.split(m)
        assert len(nnx.split(m, graph=True)) == 2
