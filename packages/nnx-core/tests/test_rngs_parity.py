"""Flax NNX 0.12 parity of Rngs: samplers, initializer methods, reseed, fork_rngs,
restore_rngs, with_rngs. Numbers are checked against jax.random / jax.nn.initializers
called with the key the stream must hand out (fold_in(seed key, count))."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

MODES = [{}, {"ref": True}, {"hijax": True}]


def _k(seed, count):
    return jax.random.fold_in(jax.random.key(seed), count)


def _kd(k):
    return np.asarray(jax.random.key_data(k))


def test_rngs_samplers_draw_from_the_default_stream():
    rngs = nnx.Rngs(0, params=1)
    np.testing.assert_allclose(rngs.normal((2, 3)), jax.random.normal(_k(0, 0), (2, 3)))
    np.testing.assert_allclose(
        rngs.uniform((4,), minval=-1.0, maxval=2.0),
        jax.random.uniform(_k(0, 1), (4,), minval=-1.0, maxval=2.0),
    )
    np.testing.assert_array_equal(
        rngs.bernoulli(0.3, (5,)), jax.random.bernoulli(_k(0, 2), 0.3, (5,))
    )
    np.testing.assert_allclose(rngs.gamma(2.0, (3,)), jax.random.gamma(_k(0, 3), 2.0, (3,)))
    assert int(rngs.default.count[...]) == 4 and int(rngs.params.count[...]) == 0


def test_stream_samplers_use_their_own_stream():
    rngs = nnx.Rngs(0, params=1)
    np.testing.assert_allclose(rngs.params.uniform((2, 3)), jax.random.uniform(_k(1, 0), (2, 3)))
    np.testing.assert_allclose(rngs.params.normal((3,)), jax.random.normal(_k(1, 1), (3,)))
    np.testing.assert_array_equal(
        rngs.params.randint((4,), 0, 10), jax.random.randint(_k(1, 2), (4,), 0, 10)
    )
    np.testing.assert_allclose(rngs.params.laplace((2,)), jax.random.laplace(_k(1, 3), (2,)))
    np.testing.assert_array_equal(rngs.params.permutation(5), jax.random.permutation(_k(1, 4), 5))
    np.testing.assert_allclose(rngs.params.orthogonal(3), jax.random.orthogonal(_k(1, 5), 3))
    assert int(rngs.params.count[...]) == 6 and int(rngs.default.count[...]) == 0


def test_initializer_methods_return_the_initializer_bound_to_a_fresh_key():
    rngs = nnx.Rngs(0, params=1)
    rngs.normal((2, 3))  # count 0
    init = rngs.lecun_normal()
    assert int(rngs.default.count[...]) == 2  # the key is drawn when the method is called
    want = jax.nn.initializers.lecun_normal()(_k(0, 1), (2, 3))
    np.testing.assert_allclose(init((2, 3)), want)
    np.testing.assert_allclose(init((2, 3)), want)  # bound: same key every call
    np.testing.assert_allclose(
        rngs.params.lecun_uniform()((2, 3)),
        jax.nn.initializers.lecun_uniform()(_k(1, 0), (2, 3)),
    )
    np.testing.assert_allclose(
        rngs.params.glorot_normal(in_axis=0, out_axis=1)((4, 5), jnp.float16),
        jax.nn.initializers.glorot_normal(in_axis=0, out_axis=1)(_k(1, 1), (4, 5), jnp.float16),
    )
    np.testing.assert_allclose(
        rngs.he_uniform()((3, 3)), jax.nn.initializers.he_uniform()(_k(0, 2), (3, 3))
    )
    np.testing.assert_allclose(
        rngs.variance_scaling(2.0, "fan_out", "uniform")((6, 2)),
        jax.nn.initializers.variance_scaling(2.0, "fan_out", "uniform")(_k(0, 3), (6, 2)),
    )


def test_a_method_name_is_never_a_new_stream():
    rngs = nnx.Rngs(0)
    rngs.lecun_normal()((2, 2))
    rngs.xavier_uniform()((2, 2))
    assert rngs.stream_names() == ["default"]
    with pytest.raises(ValueError, match="'lecun_normal' cannot name a stream"):
        nnx.Rngs(lecun_normal=0)


def test_unknown_stream_without_default_names_the_streams():
    rngs = nnx.Rngs(params=0, dropout=1)
    with pytest.raises(
        AttributeError, match=r"No RngStream named 'noise'.*Streams: \['params', 'dropout'\]"
    ):
        rngs.noise()
    with pytest.raises(KeyError, match="No RngStream named 'noise'"):
        rngs["noise"]
    assert list(rngs) == ["params", "dropout"] and len(rngs) == 2
    assert "params" in rngs and "noise" not in rngs


def test_rngs_accepts_a_mapping_and_stores_the_key_it_is_given():
    key = jax.random.key(3)
    rngs = nnx.Rngs({"params": key}, dropout=1)
    assert rngs.params.key[...] is key
    np.testing.assert_array_equal(_kd(rngs.params()), _kd(_k(3, 0)))


@pytest.mark.parametrize("mode", MODES, ids=["plain", "ref", "hijax"])
def test_reseed_restarts_the_streams_with_that_tag(mode):
    with nnx.var_defaults(**mode):
        rngs = nnx.Rngs(params=0, dropout=42)
        kept = rngs.dropout.fork()  # what a layer keeps: key fold_in(key(42), 0)
        first = [_kd(kept()).tolist() for _ in range(2)]
        params_before = _kd(rngs.params())
    nnx.reseed([kept, rngs], dropout=42)
    assert [_kd(kept()).tolist() for _ in range(2)] == first
    # the Rngs' own dropout stream got the next key of a fresh nnx.Rngs(dropout=42)
    np.testing.assert_array_equal(_kd(rngs.dropout.key[...]), _kd(_k(42, 1)))
    assert int(rngs.dropout.count[...]) == 0
    np.testing.assert_array_equal(_kd(rngs.params()), _kd(_k(0, 1)))  # untouched
    assert not np.array_equal(params_before, _kd(_k(0, 1)))


def test_reseed_policies_for_split_streams():
    stacked = nnx.Rngs(params=0).fork(split=3)
    with pytest.raises(ValueError, match=r"at path \('params',\) has a key of shape \(3,\)"):
        nnx.reseed(stacked, params=5)
    nnx.reseed(stacked, params=5, policy="match_shape")
    np.testing.assert_array_equal(_kd(stacked.params.key[...]), _kd(jax.random.split(_k(5, 0), 3)))
    np.testing.assert_array_equal(stacked.params.count[...], np.zeros(3))
    nnx.reseed(stacked, params=6, policy=lambda path, k, shape: jax.random.split(k, shape)[::-1])
    np.testing.assert_array_equal(
        _kd(stacked.params.key[...]), _kd(jax.random.split(_k(6, 0), 3)[::-1])
    )
    with pytest.raises(ValueError, match="policy must be 'scalars_only', 'match_shape'"):
        nnx.reseed(stacked, params=1, policy="nope")


@pytest.mark.parametrize("mode", MODES, ids=["plain", "ref", "hijax"])
def test_fork_rngs_and_restore_rngs(mode):
    with nnx.var_defaults(**mode):
        rngs = nnx.Rngs(params=0, dropout=1)
    key_var = rngs.params.key
    backups = nnx.fork_rngs(rngs, split={"params": 4, "dropout": None})
    assert rngs.params.key.shape == (4,) and rngs.dropout.key.shape == ()
    # the fork drew one key from each stream: params' keys are split(fold_in(key(0), 0))
    np.testing.assert_array_equal(_kd(rngs.params.key[...]), _kd(jax.random.split(_k(0, 0), 4)))
    np.testing.assert_array_equal(_kd(rngs.dropout.key[...]), _kd(_k(1, 0)))
    nnx.restore_rngs(backups)
    assert rngs.params.key is key_var and rngs.params.key.shape == ()
    # the original streams advanced by the key the fork drew
    np.testing.assert_array_equal(_kd(rngs.params()), _kd(_k(0, 1)))


def test_fork_rngs_context_manager_and_decorator():
    rngs = nnx.Rngs(params=0, dropout=1)
    with nnx.fork_rngs(rngs, split=2):
        assert rngs.params.key.shape == (2,) and rngs.dropout.key.shape == (2,)
    assert rngs.params.key.shape == ()

    seen = []

    @nnx.fork_rngs(split={"dropout": 3})
    def f(r):
        seen.append((r.params.key.shape, r.dropout.key.shape))
        return r.dropout.key.shape

    assert f(rngs) == (3,)
    assert seen == [((), (3,))] and rngs.dropout.key.shape == ()


def test_with_rngs_returns_a_copy_with_rewritten_streams():
    rngs = nnx.Rngs(params=0, dropout=1, noise=2)
    key_var = rngs.params.key
    new = nnx.with_rngs(rngs, split={"params": 4, ...: (2, 3)})
    assert new.params.key.shape == (4,) and new.dropout.key.shape == (2, 3)
    assert new.noise.key.shape == (2, 3)
    assert rngs.params.key is key_var and rngs.params.key.shape == ()
    assert int(rngs.params.count[...]) == 1  # one key drawn to make the split
    np.testing.assert_array_equal(_kd(new.params.key[...]), _kd(jax.random.split(_k(0, 0), 4)))

    rngs = nnx.Rngs(params=0, dropout=1)
    new = nnx.with_rngs(rngs, fork="params")
    assert new.dropout is not rngs.dropout  # a copy ...
    np.testing.assert_array_equal(_kd(new.dropout.key[...]), _kd(rngs.dropout.key[...]))
    assert int(rngs.dropout.count[...]) == 0  # ... untouched
    np.testing.assert_array_equal(_kd(new.params.key[...]), _kd(_k(0, 0)))

    new = nnx.with_rngs(rngs, broadcast={"dropout": 3})
    want = np.broadcast_to(_kd(_k(1, 0)), (3, 2))
    np.testing.assert_array_equal(_kd(new.dropout.key[...]), want)


def test_with_rngs_on_plain_trees_and_as_a_decorator():
    tree = {"a": nnx.RngStream(0, tag="params"), "b": nnx.RngStream(1, tag="dropout")}
    new = nnx.with_rngs(tree, split=4)
    assert new["a"].key.shape == (4,) and new["b"].key.shape == (4,)
    assert tree["a"].key.shape == ()

    @nnx.with_rngs(split={"params": 2}, fork=...)
    def f(r):
        return r.params.key.shape, r.dropout.key.shape

    rngs = nnx.Rngs(params=0, dropout=1)
    assert f(rngs) == ((2,), ())
    assert rngs.params.key.shape == ()


def test_with_rngs_rejects_two_specific_rules_for_one_stream():
    rngs = nnx.Rngs(params=0)
    with pytest.raises(ValueError, match=r"path \('params',\) matches several rules"):
        nnx.with_rngs(rngs, split={"params": 2}, fork="params")


def test_the_typing_stub_of_the_random_methods_lists_every_installed_method():
    # type checkers see rngs.normal / rngs.params.lecun_normal through _RandomMethods
    # (a TYPE_CHECKING class); it must name exactly the methods installed at import
    import ast
    import inspect

    from nnx.core import _rngs

    tree = ast.parse(inspect.getsource(_rngs))
    stub = next(
        n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "_RandomMethods"
    )
    declared = [
        a.target.id
        for a in stub.body
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)
    ]
    assert declared == [*_rngs.SAMPLERS, *_rngs.INITIALIZERS]
    for name in declared:
        assert callable(getattr(nnx.Rngs, name)) and callable(getattr(nnx.RngStream, name))


# -- Flax NNX 0.12's graph / graph_updates arguments of the rng helpers, broadcast ------
def test_rngs_broadcast_repeats_one_new_key_per_stream():
    rngs = nnx.Rngs(0)
    b = rngs.broadcast(5)
    assert b.default.key.shape == (5,)
    expected = _kd(_k(0, 0))  # the stream's first key, repeated
    for i in range(5):
        np.testing.assert_array_equal(_kd(b.default.key[...][i]), expected)
    assert int(rngs.default.count[...]) == 1  # one key drawn
    b = nnx.Rngs(params=1, dropout=2, noise=3).broadcast(
        {"params": 5, "dropout": None, ...: (2, 5)}
    )
    assert b.params.key.shape == (5,) and b.dropout.key.shape == ()
    assert b.noise.key.shape == (2, 5)
    s = nnx.Rngs(params=4).params.broadcast((2, 3))
    assert s.key.shape == (2, 3) and s.count.shape == (2, 3)


def test_fork_rngs_returns_a_copy_without_graph_updates():
    rngs = nnx.Rngs(params=0, dropout=1)
    copy = nnx.fork_rngs(rngs, split={"params": 4}, graph_updates=False)
    assert isinstance(copy, nnx.Rngs) and copy is not rngs
    assert copy.params.key.shape == (4,) and copy.dropout.key.shape == ()
    assert rngs.params.key.shape == ()  # the original keeps its streams...
    assert int(rngs.params.count[...]) == 1  # ...which drew the keys
    # the forked key is the one the stream handed out
    np.testing.assert_array_equal(_kd(copy.params.key[...]), _kd(jax.random.split(_k(0, 0), 4)))
    with nnx.set_graph_mode(False):
        assert nnx.fork_rngs(rngs) is not rngs  # tree mode: a copy too
    backups = nnx.fork_rngs(rngs, graph=True, graph_updates=True)  # in place
    assert isinstance(backups, nnx.SplitBackups)
    nnx.restore_rngs(backups)

    seen = []

    @nnx.fork_rngs(split=2, graph_updates=False)
    def f(r):
        seen.append((r is rngs, r.params.key.shape))

    f(rngs)
    assert seen == [(False, (2,))] and rngs.params.key.shape == ()


def test_with_rngs_takes_flax_graph_arguments_and_tree_mode_checks_sharing():
    rngs = nnx.Rngs(params=0, dropout=1)
    new = nnx.with_rngs(rngs, split=4, graph=False)
    assert new.params.key.shape == (4,) and new.dropout.key.shape == (4,)
    new = nnx.with_rngs(rngs, split={"params": 4}, fork=nnx.Not("params"), graph=False)
    assert new.params.key.shape == (4,) and new.dropout.key.shape == ()
    with pytest.raises(nnx.AliasingError, match=r"with_rngs: graph=False.*'0'.*'1'"):
        nnx.with_rngs([rngs, rngs], split=2, graph=False)
    both = nnx.with_rngs([rngs, rngs], split=2, graph=True)  # graph mode keeps sharing
    assert both[0] is both[1]


def test_streams_are_listed_named_ones_first_then_default_as_in_flax():
    rngs = nnx.Rngs(0, params=1, dropout=2)
    assert list(rngs) == ["params", "dropout", "default"]
    assert [k for k, _ in rngs.items()] == ["params", "dropout", "default"]
    # a `default=` keyword wins over the positional seed and keeps its place
    both = nnx.Rngs(5, default=1, params=2)
    assert list(both) == ["default", "params"]
    assert jnp.array_equal(
        jax.random.key_data(both.default.key[...]), jax.random.key_data(jax.random.key(1))
    )
