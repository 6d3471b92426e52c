"""nnx.split_rngs called with a node splits at once and returns SplitBackups (Flax NNX 0.12).

The keys are checked against jax.random by hand: a stream's next key is
fold_in(seed_key, count); the split keys are jax.random.split of it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Linear

import nnx


def _data(key):
    return np.asarray(jax.random.key_data(key))


def test_direct_call_splits_at_once_and_restore_rngs_undoes_it(mode):
    rngs = nnx.Rngs(params=0, dropout=1)
    key_var, count_var = rngs.params.key, rngs.params.count
    backups = nnx.split_rngs(rngs, splits=5, only="params")
    assert isinstance(backups, nnx.SplitBackups)
    # split already, no `with` needed
    assert rngs.params.key.shape == (5,) and rngs.dropout.key.shape == ()
    expected = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 5)
    np.testing.assert_array_equal(_data(rngs.params.key[...]), _data(expected))
    np.testing.assert_array_equal(rngs.params.count[...], np.zeros(5, np.uint32))
    assert int(rngs.dropout.count[...]) == 0  # not split, not drawn from

    nnx.restore_rngs(backups)
    assert rngs.params.key is key_var and rngs.params.count is count_var
    assert rngs.params.key.shape == ()
    np.testing.assert_array_equal(_data(rngs.params.key[...]), _data(jax.random.key(0)))
    assert int(rngs.params.count[...]) == 1  # the count advanced: the next split differs
    again = nnx.split_rngs(rngs, splits=5, only="params")
    expected2 = jax.random.split(jax.random.fold_in(jax.random.key(0), 1), 5)
    np.testing.assert_array_equal(_data(rngs.params.key[...]), _data(expected2))
    nnx.restore_rngs(again)
    assert int(rngs.params.count[...]) == 2


def test_split_keeps_the_storage_mode(mode):
    rngs = nnx.Rngs(0)
    ref, hijax = rngs.default.key.ref, rngs.default.key.hijax
    with nnx.split_rngs(rngs, splits=3):
        assert rngs.default.key.ref == ref and rngs.default.key.hijax == hijax
        assert rngs.default.count.ref == ref and rngs.default.count.hijax == hijax
        assert type(rngs.default.key) is nnx.RngKey and rngs.default.key.tag == "default"
    assert rngs.default.key.shape == ()


def test_with_block_restores_on_exit_and_tuple_splits():
    rngs = nnx.Rngs(params=0, dropout=1)
    with nnx.split_rngs(rngs, splits=(2, 3)) as backups:
        assert isinstance(backups, nnx.SplitBackups)
        assert rngs.params.key.shape == (2, 3) and rngs.dropout.key.shape == (2, 3)
        assert rngs.params.count.shape == (2, 3)
        first = _data(rngs.params.key[...])
    assert rngs.params.key.shape == () and rngs.dropout.key.shape == ()
    assert int(rngs.params.count[...]) == 1 and int(rngs.dropout.count[...]) == 1
    expected = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), (2, 3))
    np.testing.assert_array_equal(first, _data(expected))


def test_with_block_restores_when_the_body_raises():
    rngs = nnx.Rngs(0)
    with pytest.raises(RuntimeError, match="boom"), nnx.split_rngs(rngs, splits=4):
        raise RuntimeError("boom")
    assert rngs.default.key.shape == () and rngs.default.count.shape == ()


def test_squeeze_gives_one_key_of_the_original_shape():
    rngs = nnx.Rngs(0)
    backups = nnx.split_rngs(rngs, splits=1, squeeze=True)
    assert rngs.default.key.shape == () and rngs.default.count.shape == ()
    expected = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 1)[0]
    np.testing.assert_array_equal(_data(rngs.default.key[...]), _data(expected))
    nnx.restore_rngs(backups)
    with pytest.raises(ValueError, match=r"squeeze=True needs splits=1.*splits=3"):
        nnx.split_rngs(rngs, splits=3, squeeze=True)
    assert rngs.default.key.shape == ()  # nothing was split


def test_direct_split_then_vmap_as_in_flax_docs(mode):
    rngs = nnx.Rngs(params=0, dropout=1)
    backups = nnx.split_rngs(rngs, splits=4, only="params")
    stack = nnx.vmap(
        lambda r: Linear(2, 3, rngs=r), in_axes=(nnx.StateAxes({"params": 0, ...: None}),)
    )(rngs)
    nnx.restore_rngs(backups)
    assert stack.w.shape == (4, 2, 3)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 4)
    for i in range(4):
        w_i = jax.random.normal(jax.random.fold_in(keys[i], 0), (2, 3)) * 0.5
        np.testing.assert_allclose(stack.w[i], w_i, rtol=1e-6)
    assert rngs.params.key.shape == () and int(rngs.params.count[...]) == 1


def test_only_matches_the_streams_key_and_count_paths():
    model = nnx.Dict(a=nnx.Rngs(params=0), b=nnx.Rngs(params=1))
    with nnx.split_rngs(model, splits=2, only=nnx.PathContains("b")):
        assert model["b"].params.key.shape == (2,)
        assert model["a"].params.key.shape == ()


def test_tree_mode_checks_before_splitting():
    rngs = nnx.Rngs(0)
    pair = {"a": rngs, "b": rngs}
    with pytest.raises(nnx.AliasingError, match="tree mode.*'a'.*'b'"):
        nnx.split_rngs(pair, splits=2, graph=False)
    assert rngs.default.key.shape == () and int(rngs.default.count[...]) == 0


def test_decorator_form_splits_per_call_only():
    rngs = nnx.Rngs(0)

    @nnx.split_rngs(splits=3)
    def shapes(r):
        return r.default.key.shape, r.default.count.shape

    assert rngs.default.key.shape == ()  # decorating splits nothing
    assert shapes(rngs) == ((3,), (3,))
    assert rngs.default.key.shape == () and int(rngs.default.count[...]) == 1
    with pytest.raises(ValueError, match="squeeze=True needs splits=1"):
        nnx.split_rngs(splits=2, squeeze=True)


def test_jit_with_block_inside(mode):
    @nnx.jit
    def f(rngs):
        with nnx.split_rngs(rngs, splits=2):
            return jax.vmap(lambda k: jax.random.uniform(k))(rngs.default.key[...])

    rngs = nnx.Rngs(0)
    out = f(rngs)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(0), 0), 2)
    np.testing.assert_allclose(out, jax.vmap(lambda k: jax.random.uniform(k))(keys), rtol=1e-6)
    assert rngs.default.key.shape == () and int(rngs.default.count[...]) == 1
    assert jnp.asarray(rngs.default.count[...]).dtype == jnp.uint32
