"""Eager sharding, logical axis rules, abstract models with shardings, StateSharding.

Each test runs its script in a fresh process with 8 simulated CPU devices.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec as P

import nnx

PRELUDE = """
import jax, jax.numpy as jnp, numpy as np, nnx
from jax.sharding import NamedSharding, PartitionSpec as P
assert len(jax.devices()) == 8
mesh = jax.make_mesh((2, 4), ("data", "model"))
init = nnx.with_partitioning(jax.nn.initializers.lecun_normal(), (None, "model"))

class M(nnx.Module):
    def __init__(self, key=0):
        self.w = nnx.Param(init(jax.random.key(key), (4, 8)))
        self.b = nnx.Param(jnp.zeros(8), sharding_names=("model",))
        self.s = nnx.BatchStat(jnp.ones(3))

    def __call__(self, x):
        return x @ self.w + self.b
"""


def run8(body: str) -> str:
    script = PRELUDE + textwrap.dedent(body) + "\nprint('ok')\n"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("ok"), out.stdout
    return out.stdout


def test_variables_are_sharded_when_created_under_a_mesh():
    run8(
        """
        with jax.set_mesh(mesh):
            model = M()
        w = model.w[...]
        assert w.sharding.spec == P(None, "model"), w.sharding
        assert {s.data.shape for s in w.addressable_shards} == {(4, 2)}
        assert model.b[...].sharding.spec == P("model")
        # jax.jit with the model's named shardings, no shard_state first
        shardings = nnx.get_named_sharding(nnx.state(model), mesh)
        g, s = nnx.split(model)
        f = jax.jit(lambda s, x: nnx.merge(g, s)(x), in_shardings=(shardings, None))
        x = jnp.ones((2, 4))
        np.testing.assert_allclose(f(s, x), x @ np.asarray(w) + np.asarray(model.b[...]), rtol=1e-5)
        """
    )


def test_eager_sharding_in_every_variable_mode_and_under_jit():
    run8(
        """
        for mode in (dict(hijax=True), dict(ref=True)):
            with nnx.var_defaults(**mode), jax.set_mesh(mesh):
                model = M()
            assert model.w[...].sharding.spec == P(None, "model"), mode
            specs = nnx.get_partition_spec(nnx.state(model))
            assert specs["w"].get_value() == P(None, "model")
            assert not specs["w"].hijax and not specs["w"].ref
        with jax.set_mesh(mesh):
            model = jax.jit(lambda: nnx.split(M())[1])()
        assert model["w"][...].sharding.spec == P(None, "model")
        """
    )


def test_use_eager_sharding_turns_it_off_now_in_a_block_and_for_a_function():
    run8(
        """
        assert nnx.using_eager_sharding() is True
        with jax.set_mesh(mesh):
            with nnx.use_eager_sharding(False):
                assert nnx.using_eager_sharding() is False
                assert M().w[...].sharding.spec == P(None, None)
            assert nnx.using_eager_sharding() is True
            nnx.use_eager_sharding(False)
            assert nnx.using_eager_sharding() is False
            nnx.use_eager_sharding(True)

            @nnx.use_eager_sharding(False)
            def build():
                assert nnx.using_eager_sharding() is False
                return M()

            assert nnx.using_eager_sharding() is True
            assert build().w[...].sharding.spec == P(None, None)
            # one Variable opts out
            p = nnx.Param(jnp.ones((4, 8)), sharding_names=(None, "model"), eager_sharding=False)
            assert p[...].sharding.spec == P(None, None)
            assert p.sharding_names == (None, "model")
        """
    )


def test_mesh_metadata_shards_without_a_mesh_context():
    run8(
        """
        init = nnx.with_partitioning(jax.nn.initializers.ones, ("data", "model"), mesh=mesh)
        p = nnx.Param(init(jax.random.key(0), (4, 8)))
        assert p[...].sharding == NamedSharding(mesh, P("data", "model"))
        """
    )


def test_logical_axis_rules_map_names_when_sharding_and_in_specs():
    run8(
        """
        rules = (("batch", "data"), ("hidden", "model"), ("embed", None))
        with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
            p = nnx.Param(jnp.ones((4, 8)), sharding_names=("embed", "hidden"))
            assert p[...].sharding.spec == P(None, "model")
            assert nnx.get_partition_spec(p)[...] == P(None, "model")
        # the rules apply where they are active
        assert nnx.get_partition_spec(p)[...] == P("embed", "hidden")
        # a Variable's own rules
        q = nnx.Param(jnp.ones((4, 8)), sharding_names=("rows", "cols"),
                      sharding_rules=(("cols", "model"),))
        assert nnx.get_partition_spec(q)[...] == P(None, "model")
        """
    )


def test_abstract_model_and_abstract_with_sharding_carry_named_shardings():
    run8(
        """
        graphdef, abstract = nnx.get_abstract_model(lambda: M(), mesh)
        w = abstract["w"].get_value()
        assert isinstance(w, jax.ShapeDtypeStruct)
        assert w.sharding == NamedSharding(mesh, P(None, "model")), w.sharding
        s_sh = abstract["s"].get_value().sharding
        assert s_sh.mesh == mesh and s_sh.is_fully_replicated, s_sh
        # the abstract state restores: device_put of real arrays onto it, then merge
        real = nnx.state(M())
        shardings = jax.tree.map(lambda a: a.sharding, abstract)
        model = nnx.merge(graphdef, jax.device_put(real, shardings))
        assert model.w[...].sharding.spec == P(None, "model")

        sds = jax.ShapeDtypeStruct((4, 8), jnp.float32)
        abstract2 = nnx.abstract_with_sharding(
            nnx.State({"w": nnx.Param(sds, sharding_names=(None, "model"))}), mesh
        )
        assert abstract2["w"].get_value().sharding == NamedSharding(mesh, P(None, "model"))
        with jax.set_mesh(mesh):  # the mesh of the context
            abstract3 = nnx.abstract_with_sharding(nnx.State({"w": nnx.Param(sds, sharding_names=("data", None))}))
        assert abstract3["w"].get_value().sharding == NamedSharding(mesh, P("data", None))
        """
    )


def test_logical_rules_reject_a_name_used_twice():
    p = nnx.Param(jnp.ones((2, 2)), sharding_names=("x", "x"))
    with (
        nnx.logical_axis_rules((("x", "model"),)),
        pytest.raises(ValueError, match=r"name the logical axes \['x'\] more than once"),
    ):
        nnx.get_partition_spec(p)


def test_logical_rules_pick_the_first_free_mesh_axis():
    p = nnx.Param(jnp.ones((2, 3, 4)), sharding_names=("batch", "heads", "features"))
    rules = (("batch", "X"), ("features", "X"), ("heads", "Y"), ("batch", "Z"))
    with nnx.logical_axis_rules(rules):
        assert nnx.get_partition_spec(p)[...] == P("X", "Y", None)


def test_without_a_mesh_the_names_are_recorded_and_the_array_is_untouched():
    x = jnp.ones((4, 8))
    p = nnx.Param(x, sharding_names=(None, "model"))
    assert p[...] is x
    assert nnx.get_partition_spec(p)[...] == P(None, "model")


def test_state_sharding_picks_the_first_matching_filter():
    ss = nnx.StateSharding({nnx.Param: "param-sharding", ...: None})
    p, b = nnx.Param(jnp.ones(2)), nnx.BatchStat(jnp.ones(2))
    assert ss.sharding_for(("w",), p) == "param-sharding"
    assert ss.sharding_for(("s",), b) is None
    assert ss.filters == (nnx.Param, ...)
    assert ss == nnx.StateSharding([(nnx.Param, "param-sharding"), (..., None)])


def test_partition_specs_of_a_hijax_model_are_plain_variables():
    with nnx.var_defaults(hijax=True):
        p = nnx.Param(jnp.ones((2, 4)), sharding_names=(None, "model"))
    spec = nnx.get_partition_spec(nnx.State({"p": p}))["p"]
    assert spec.get_value() == P(None, "model") and not spec.hijax
    assert jax.tree.leaves(spec) == [P(None, "model")]
