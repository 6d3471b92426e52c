"""nnx.as_pure, nnx.as_abstract, nnx.map, nnx.prefix and nnx.NodeStates, from Flax NNX
0.12's documented behaviour."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Block(nnx.Module):
    def __init__(self):
        self.kernel = nnx.Param(jnp.arange(6.0).reshape(2, 3))
        self.bias = nnx.Param(jnp.ones(3))
        self.mean = nnx.BatchStat(jnp.zeros(3))


# -- as_pure ---------------------------------------------------------------------------
def test_as_pure_turns_variables_of_a_state_into_raw_values():
    _, state = nnx.split(Block())
    pure = nnx.as_pure(state)
    assert isinstance(pure, nnx.State)
    assert jax.tree.map(jnp.shape, pure.to_pure_dict()) == {
        "bias": (3,),
        "kernel": (2, 3),
        "mean": (3,),
    }
    for leaf in jax.tree.leaves(pure):
        assert not isinstance(leaf, nnx.Variable)
    np.testing.assert_array_equal(pure["kernel"], np.arange(6.0).reshape(2, 3))


def test_as_pure_reads_ref_variables_and_bare_refs():
    with nnx.var_defaults(ref=True, hijax=False):
        v = nnx.Param(jnp.ones(2))
    out = nnx.as_pure({"v": v, "r": jax.new_ref(jnp.full(2, 3.0)), "x": 5})
    assert not isinstance(out["v"], (nnx.Variable, jax.Ref))
    assert not isinstance(out["r"], jax.Ref)
    np.testing.assert_array_equal(out["v"], [1.0, 1.0])
    np.testing.assert_array_equal(out["r"], [3.0, 3.0])
    assert out["x"] == 5


# -- map -------------------------------------------------------------------------------
def test_map_returns_a_new_graph_and_leaves_the_original():
    model = Block()
    new = nnx.map(lambda path, v: v.replace(jnp.zeros_like(v[...])), model)
    assert isinstance(new, Block) and new is not model
    np.testing.assert_array_equal(new.kernel[...], np.zeros((2, 3)))
    np.testing.assert_array_equal(new.bias[...], np.zeros(3))
    np.testing.assert_array_equal(model.kernel[...], np.arange(6.0).reshape(2, 3))
    assert new.kernel is not model.kernel


def test_map_passes_paths_and_keeps_sharing():
    shared = nnx.Param(jnp.ones(2))
    tree = nnx.Dict(a=shared, b=nnx.Dict(c=shared, d=nnx.Param(jnp.full(2, 2.0))))
    seen = []

    def f(path, v):
        seen.append(path)
        return v.replace(v[...] * 10)

    new = nnx.map(f, tree)
    assert sorted(seen) == [("a",), ("b", "d")]  # a shared Variable once
    assert new["a"] is new["b"]["c"]
    np.testing.assert_array_equal(new["b"]["d"][...], [20.0, 20.0])


def test_map_recreate_variables_false_keeps_what_f_returns():
    model = Block()
    same = nnx.map(lambda p, v: v, model, recreate_variables=False)
    assert same is not model and same.kernel is model.kernel
    fresh = nnx.map(lambda p, v: v, model)
    assert fresh.kernel is not model.kernel
    np.testing.assert_array_equal(fresh.kernel[...], model.kernel[...])


# -- prefix ----------------------------------------------------------------------------
def test_prefix_with_a_callable_gives_vmap_axes():
    d = {"a": nnx.Param(jnp.array(2)), "b": nnx.BatchStat(jnp.arange(5))}
    axes = nnx.prefix(d, lambda path, x: 0 if "b" in path else None)
    assert axes == {"a": None, "b": 0}
    out = jax.vmap(lambda d: d["a"][...] * d["b"][...], in_axes=(axes,))(d)
    np.testing.assert_array_equal(out, [0, 2, 4, 6, 8])


def test_prefix_with_a_filter_mapping_first_match_wins():
    d = {"a": nnx.Param(jnp.array(2)), "b": nnx.BatchStat(jnp.arange(5))}
    assert nnx.prefix(d, {nnx.Param: None, nnx.BatchStat: 0}) == {"a": None, "b": 0}
    assert nnx.prefix(d, {nnx.Param: 1, ...: 2}) == {"a": 1, "b": 2}


def test_prefix_of_a_module_has_module_structure_and_nnx_paths():
    model = Block()
    seen = {}

    def fn(path, v):
        seen[path] = type(v).__name__
        return 0 if isinstance(v, nnx.BatchStat) else None

    px = nnx.prefix(model, fn)
    assert seen == {("bias",): "Param", ("kernel",): "Param", ("mean",): "BatchStat"}
    assert isinstance(px, Block)  # a JAX prefix of the Module: its Variables hold the prefixes
    assert px.kernel.get_value() is None and px.bias.get_value() is None
    assert px.mean.get_value() == 0
    model.mean[...] = jnp.arange(3.0)
    out = jax.vmap(lambda m: m.bias[...].sum() * m.mean[...], in_axes=(px,))(model)
    np.testing.assert_array_equal(out, [0.0, 3.0, 6.0])


def test_prefix_unmatched_leaf_is_a_value_error_naming_the_path():
    d = {"layer": {"w": nnx.Param(jnp.ones(2)), "s": nnx.BatchStat(jnp.ones(2))}}
    with pytest.raises(ValueError, match=r"no filter matches the BatchStat at 'layer/s'"):
        nnx.prefix(d, {nnx.Param: 0})


# -- NodeStates ------------------------------------------------------------------------
def test_node_states_from_split_is_a_pytree_of_its_states():
    model = Block()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    ns = nnx.NodeStates.from_split(graphdef, params, rest, metadata="m")
    assert ns.graphdef is graphdef and ns.states == (params, rest) and ns.metadata == "m"
    leaves, treedef = jax.tree.flatten(ns)
    assert len(leaves) == 3
    doubled = jax.tree.map(lambda x: x * 2, ns)
    assert isinstance(doubled, nnx.NodeStates) and doubled.graphdef is graphdef
    back = nnx.merge(doubled.graphdef, *doubled.states)
    np.testing.assert_array_equal(back.bias[...], [2.0, 2.0, 2.0])

    @jax.jit
    def through(ns):
        return ns

    out = through(ns)
    assert out.metadata == "m"
    np.testing.assert_array_equal(out.states[0]["kernel"][...], model.kernel[...])


def test_node_states_state_and_graphdef_errors():
    _, state = nnx.split(Block())
    one = nnx.NodeStates.from_states(state)
    assert one.state is state
    with pytest.raises(ValueError, match="has no GraphDef"):
        one.graphdef
    two = nnx.NodeStates.from_states(state, state)
    with pytest.raises(ValueError, match="expected exactly one State, this NodeStates has 2"):
        two.state
    px = nnx.NodeStates.from_prefixes([0, None], metadata=1)
    assert px.states == (0, None) and px.metadata == 1


# -- as_abstract -----------------------------------------------------------------------
def test_as_abstract_leaves_concrete_and_unannotated_variables_alone():
    model = Block()
    out = nnx.as_abstract(model)
    assert out is not model
    np.testing.assert_array_equal(out.kernel[...], model.kernel[...])


def test_as_abstract_without_a_mesh_names_the_variable():
    abstract = nnx.State(
        {"w": nnx.Param(jax.ShapeDtypeStruct((4, 8), jnp.float32), sharding_names=("a", "b"))}
    )
    with pytest.raises(ValueError, match=r"the Param at 'w' has sharding_names \('a', 'b'\)"):
        nnx.as_abstract(abstract)


def test_as_abstract_adds_named_shardings_on_a_mesh():
    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp
        import nnx

        class M(nnx.Module):  # what nnx.eval_shape gives: abstract values, no shardings
            def __init__(self):
                sds = jax.ShapeDtypeStruct
                self.kernel = nnx.Param(sds((4, 8), jnp.float32), sharding_names=("a", "b"))
                self.bias = nnx.Param(sds((8,), jnp.float32))

        mesh = jax.make_mesh((2, 4), ("a", "b"),
                             axis_types=(jax.sharding.AxisType.Auto,) * 2)
        abs_model = M()
        assert abs_model.kernel.get_value().sharding is None
        with jax.set_mesh(mesh):
            out = nnx.as_abstract(abs_model)
        assert abs_model.kernel.get_value().sharding is None  # a new tree
        k = out.kernel.get_value()
        assert isinstance(out.kernel, nnx.Param), type(out.kernel)
        assert isinstance(k, jax.ShapeDtypeStruct), type(k)
        assert k.sharding.spec == jax.P("a", "b"), k.sharding
        assert out.kernel.sharding.spec == jax.P("a", "b")  # Variable.sharding falls through
        assert k.shape == (4, 8)
        assert out.kernel.get_metadata("sharding_names") == ("a", "b")
        assert out.bias.get_value().sharding is None
        print("OK")
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "OK" in r.stdout
