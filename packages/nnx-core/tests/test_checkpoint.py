"""nnx.save_checkpoint / nnx.restore_checkpoint (orbax-checkpoint), and plain orbax over
nnx States, in every Variable mode. Orbax writes to pytest's tmp_path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

ocp = pytest.importorskip("orbax.checkpoint")

MODES = [dict(), dict(hijax=True), dict(ref=True)]
MODE_IDS = ["plain", "hijax", "ref"]


class Net(nnx.Module):
    def __init__(self, n=3, extra=False, seed=0):
        self.w = nnx.Param(jax.random.normal(jax.random.key(seed), (n,)))
        self.layers = nnx.List([nnx.Param(jnp.full((2,), float(seed)))])
        self.count = nnx.BatchStat(jnp.array(seed))
        if extra:
            self.extra = nnx.Param(jnp.ones(2))


def _mode(v: nnx.Variable) -> str:
    return "hijax" if v.hijax else "ref" if v.ref else "plain"


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_save_and_restore_in_place_keeps_the_targets_mode(tmp_path, mode):
    with nnx.var_defaults(**mode):
        saved = Net(seed=1)
        target = Net(seed=2)
    nnx.save_checkpoint(tmp_path / "ckpt", saved)
    out = nnx.restore_checkpoint(tmp_path / "ckpt", target)
    assert out is target
    np.testing.assert_array_equal(target.w[...], saved.w[...])
    np.testing.assert_array_equal(target.layers[0][...], [1.0, 1.0])
    assert int(target.count[...]) == 1
    assert _mode(target.w) == _mode(saved.w)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_restore_into_an_abstract_model_gives_a_new_model_in_its_modes(tmp_path, mode):
    with nnx.var_defaults(**mode):
        saved = Net(seed=1)
    nnx.save_checkpoint(tmp_path / "ckpt", saved)
    abstract = jax.eval_shape(lambda: nnx.vars_as(Net(), hijax=False, ref=False))
    if mode.get("hijax"):
        abstract = nnx.vars_as(abstract, hijax=True)  # what eval_shape under hijax gives
    model = nnx.restore_checkpoint(tmp_path / "ckpt", abstract)
    assert isinstance(model, Net)
    np.testing.assert_array_equal(model.w[...], saved.w[...])
    assert model.w.hijax == bool(mode.get("hijax"))
    if mode.get("hijax"):  # the restored model runs under a plain jax.jit with writes
        jax.jit(lambda m: m.count.set_value(m.count[...] + 1))(model)
        assert int(model.count[...]) == 2


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_plain_orbax_saves_every_mode_and_restores_through_update(tmp_path, mode):
    with nnx.var_defaults(**mode):
        saved = Net(seed=1)
        target = Net(seed=2)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", nnx.state(saved))
    checkpointer.wait_until_finished()
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nnx.state(target))
    restored = checkpointer.restore(tmp_path / "ckpt", abstract)
    nnx.update(target, restored)
    np.testing.assert_array_equal(target.w[...], saved.w[...])
    np.testing.assert_array_equal(target.layers[0][...], [1.0, 1.0])
    assert _mode(target.w) == _mode(saved.w)
    if mode:  # the restored model still carries writes through a plain jax.jit
        jax.jit(lambda m: m.count.set_value(m.count[...] + 1))(target)
        assert int(target.count[...]) == 2


def test_flax_guide_recipe_over_a_ref_model_with_plain_orbax(tmp_path):
    # Flax's checkpointing guide: save nnx.state(model), restore into the State of
    # nnx.eval_shape, merge. The abstract model is plain, so the restored model is.
    with nnx.var_defaults(ref=True):
        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))

    @nnx.jit  # a step that writes through the refs (write-back makes new refs too)
    def bump(m):
        m.bias[...] += 1.0

    bump(model)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", nnx.state(model))
    checkpointer.wait_until_finished()
    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(1))))
    restored = nnx.merge(graphdef, checkpointer.restore(tmp_path / "state", abstract_state))
    np.testing.assert_array_equal(restored.kernel[...], model.kernel[...])
    assert restored.bias is not None and model.bias is not None
    np.testing.assert_array_equal(restored.bias[...], np.ones(3))
    x = jnp.ones((1, 2))
    np.testing.assert_allclose(restored(x), x @ model.kernel[...] + model.bias[...][None, :])


def test_a_shape_mismatch_names_the_parameter_path(tmp_path):
    nnx.save_checkpoint(tmp_path / "ckpt", Net(n=3))
    with pytest.raises(
        nnx.StructureError,
        match=r"'w' is stored with shape \(3,\) float32, but the target holds shape \(4,\)",
    ):
        nnx.restore_checkpoint(tmp_path / "ckpt", Net(n=4))


def test_missing_and_extra_paths_are_named_and_partial_restores_what_both_have(tmp_path):
    nnx.save_checkpoint(tmp_path / "small", Net(seed=1))
    nnx.save_checkpoint(tmp_path / "big", Net(seed=1, extra=True))
    big = Net(seed=2, extra=True)
    with pytest.raises(nnx.StructureError, match=r"checkpoint has no value for 'extra'"):
        nnx.restore_checkpoint(tmp_path / "small", big)
    with pytest.raises(
        nnx.StructureError, match=r"checkpoint holds 'extra', which the target has no place"
    ):
        nnx.restore_checkpoint(tmp_path / "big", Net(seed=2))
    nnx.restore_checkpoint(tmp_path / "small", big, partial=True)
    np.testing.assert_array_equal(big.layers[0][...], [1.0, 1.0])
    np.testing.assert_array_equal(big.extra[...], [1.0, 1.0])  # kept


def test_restore_into_a_state_gives_a_state(tmp_path):
    saved = Net(seed=1)
    nnx.save_checkpoint(tmp_path / "ckpt", saved)
    state = nnx.restore_checkpoint(tmp_path / "ckpt", nnx.state(Net(seed=2)))
    assert isinstance(state, nnx.State)
    np.testing.assert_array_equal(state["w"][...], saved.w[...])
    assert state["layers"][0].get_value().tolist() == [1.0, 1.0]


def test_a_tuple_of_objects_saves_each_shared_array_once(tmp_path):
    class Holder(nnx.Module):
        def __init__(self, net):
            self.net = net
            self.step = nnx.Variable(jnp.array(7))

    net = Net(seed=1)
    holder = Holder(net)  # shares net
    nnx.save_checkpoint(tmp_path / "ckpt", (net, holder))
    meta = ocp.StandardCheckpointer().metadata(tmp_path / "ckpt").item_metadata.tree
    n_arrays = len(jax.tree.leaves(meta, is_leaf=lambda x: hasattr(x, "shape")))
    assert n_arrays == 4  # w, layers/0, count, step: the shared net once
    target_net = Net(seed=2)
    target = (target_net, Holder(target_net))
    nnx.restore_checkpoint(tmp_path / "ckpt", target)
    assert int(target[1].step[...]) == 7
    np.testing.assert_array_equal(target_net.w[...], net.w[...])


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_rngs_streams_round_trip_as_keys_of_their_implementation(tmp_path, mode):
    class WithRngs(nnx.Module):
        def __init__(self, seed):
            self.rngs = nnx.Rngs(seed, dropout=seed + 1)

    with nnx.var_defaults(**mode):
        saved, target = WithRngs(1), WithRngs(2)
    saved.rngs.dropout()  # advance the count
    nnx.save_checkpoint(tmp_path / "ckpt", saved)
    nnx.restore_checkpoint(tmp_path / "ckpt", target)
    assert int(target.rngs.dropout.count[...]) == 1
    np.testing.assert_array_equal(
        jax.random.key_data(target.rngs.dropout()), jax.random.key_data(saved.rngs.dropout())
    )
    abstract = jax.eval_shape(lambda: nnx.vars_as(WithRngs(3), hijax=False, ref=False))
    fresh = nnx.restore_checkpoint(tmp_path / "ckpt", abstract)
    assert jax.dtypes.issubdtype(fresh.rngs.default.key[...].dtype, jax.dtypes.prng_key)  # pyright: ignore[reportPrivateImportUsage]
