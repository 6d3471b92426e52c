"""Filter forms and State."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Count

import nnx


class Model(nnx.Module):
    def __init__(self):
        self.linear = nnx.Dict(kernel=nnx.Param(jnp.ones((2, 2))), bias=nnx.Param(jnp.zeros(2)))
        self.bn = nnx.Dict(mean=nnx.BatchStat(jnp.zeros(2)))
        self.count = Count(jnp.array(0))
        self.tagged = nnx.Variable(jnp.ones(1), tag="dropout")
        self.layers = [nnx.Param(jnp.ones(1)), nnx.Param(jnp.ones(1))]


def paths(state):
    return sorted(tuple(map(str, p)) for p, _ in state.flat_state())


@pytest.mark.parametrize(
    "filter_, expected",
    [
        (nnx.Param, [("layers", "0"), ("layers", "1"), ("linear", "bias"), ("linear", "kernel")]),
        ("bn", [("bn", "mean")]),
        (lambda path, x: isinstance(x, Count), [("count",)]),
        (nnx.PathContains("bias"), [("linear", "bias")]),
        (nnx.OfType(nnx.BatchStat), [("bn", "mean")]),
        (nnx.WithTag("dropout"), [("tagged",)]),
        (nnx.All(nnx.Param, "linear"), [("linear", "bias"), ("linear", "kernel")]),
        (nnx.Any(nnx.BatchStat, Count), [("bn", "mean"), ("count",)]),
        (nnx.Not(nnx.Param), [("bn", "mean"), ("count",), ("tagged",)]),
        ([nnx.BatchStat, Count], [("bn", "mean"), ("count",)]),
        (nnx.Nothing, []),
        (False, []),
    ],
)
def test_filter_forms(filter_, expected):
    assert paths(nnx.state(Model(), filter_)) == expected


@pytest.mark.parametrize("everything", [..., True, nnx.Everything])
def test_everything_forms(everything):
    assert len(nnx.state(Model(), everything).flat_state()) == 7


def test_invalid_filter_message():
    with pytest.raises(TypeError, match="Invalid filter 3"):
        nnx.state(Model(), 3)


def test_state_mapping_and_attribute_access():
    _, state = nnx.split(Model())
    assert state.linear.kernel is state["linear"]["kernel"]
    flat = state.flat_state()
    assert flat[0][0] == ("bn", "mean")
    rebuilt = nnx.State.from_flat(flat)
    assert rebuilt == state


def test_state_filter_split_merge():
    _, state = nnx.split(Model())
    params, rest = state.split(nnx.Param, ...)
    assert len(params.flat_state()) == 4 and len(rest.flat_state()) == 3
    with pytest.raises(nnx.FilterError, match="bn/mean"):
        state.split(nnx.Param)
    merged = nnx.State.merge(params, rest)
    assert merged == state
    only = state.filter(nnx.BatchStat)
    assert paths(only) == [("bn", "mean")]


def test_pure_dict_round_trip_keeps_int_keys():
    _, state = nnx.split(Model())
    pure = state.to_pure_dict()
    assert isinstance(pure["layers"][0], jax.Array) and 0 in pure["layers"]
    pure["layers"][1] = jnp.full(1, 5.0)
    pure["count"] = jnp.array(3)
    # keys as strings, as some checkpoint formats write them
    pure["layers"] = {str(k): v for k, v in pure["layers"].items()}
    state.replace_by_pure_dict(pure)
    assert float(state["layers"][1][...][0]) == 5.0 and int(state["count"][...]) == 3


def test_replace_by_pure_dict_missing_entry():
    _, state = nnx.split(Model())
    with pytest.raises(nnx.StructureError, match="no entry for 'bn'"):
        state.replace_by_pure_dict({"linear": {}})


def test_state_equality_compares_values():
    _, a = nnx.split(Model())
    _, b = nnx.split(Model())
    assert a == b
    b["count"][...] = jnp.array(1)
    assert a != b


def test_state_repr_is_readable():
    _, state = nnx.split(Model())
    text = repr(state)
    assert text.startswith("State({\n  'bn': {\n")
    assert "  'kernel': Param( # 4 (16 B)\n      value=Array([[1., 1.],\n" in text


def test_state_pytree_order_is_sorted_paths():
    _, state = nnx.split(Model())
    leaves = jax.tree.leaves(state)
    assert len(leaves) == 7
    np.testing.assert_array_equal(leaves[0], np.zeros(2))  # bn/mean first


def test_ellipsis_not_last_is_a_filter_error():
    with pytest.raises(nnx.FilterError, match="it is filter 0 of 2"):
        nnx.state(Model(), ..., nnx.Param)


def test_filter_error_names_a_nested_path_and_the_filters():
    class Outer(nnx.Module):
        def __init__(self):
            self.blocks = [Model()]

    with pytest.raises(
        nnx.FilterError,
        match=r"No filter matched the BatchStat at path 'blocks/0/bn/mean'.*add `\.\.\.`",
    ):
        nnx.split(Outer(), nnx.Param, Count, nnx.WithTag("dropout"))


@pytest.mark.parametrize(
    "filter_, expected",
    [
        (nnx.PathContains(0), [("layers", "0")]),
        (nnx.All(nnx.Param, nnx.Not("layers")), [("linear", "bias"), ("linear", "kernel")]),
        ((nnx.BatchStat, "count"), [("bn", "mean"), ("count",)]),
        (nnx.Any(), []),
        (nnx.All(), None),
        (lambda path, x: path[-1] == "bias", [("linear", "bias")]),
    ],
)
def test_more_filter_forms(filter_, expected):
    if expected is None:  # All() of nothing matches everything
        assert len(nnx.state(Model(), filter_).flat_state()) == 7
    else:
        assert paths(nnx.state(Model(), filter_)) == expected


def test_to_predicate_forms_and_combinator_equality():
    x = nnx.Param(jnp.ones(1))
    assert nnx.to_predicate(nnx.Param)(("a",), x) is True
    assert nnx.to_predicate("a")(("a", "b"), x) is True
    assert nnx.to_predicate("c")(("a", "b"), x) is False
    assert nnx.to_predicate(...) is nnx.Everything and nnx.to_predicate(True) is nnx.Everything
    assert nnx.to_predicate(False) is nnx.Nothing and nnx.to_predicate(None) is nnx.Nothing
    assert nnx.to_predicate(nnx.Param) == nnx.OfType(nnx.Param)
    assert nnx.Not(nnx.Param) == nnx.Not(nnx.Param) and nnx.All("a") != nnx.Any("a")
    assert hash(nnx.PathContains("a")) == hash(nnx.PathContains("a"))
    # each filter prints as its predicate (a type as OfType, by its name, not a private
    # module path); a string stays the string it was written as
    assert repr(nnx.All(nnx.Param, "a")) == "All(OfType(Param), 'a')"
    assert repr(nnx.to_predicate((nnx.Param, "x"))) == "Any(OfType(Param), 'x')"
    assert repr(nnx.Not(nnx.Param)) == "Not(OfType(Param))"
    assert repr(nnx.to_predicate(...)) == "Everything()"
    assert repr(nnx.to_predicate(None)) == "Nothing()"


def test_every_filter_form_splits_exhaustively_with_ellipsis():
    for f in (nnx.Param, "bn", nnx.WithTag("dropout"), nnx.Not(nnx.Param), [Count]):
        g, chosen, rest = nnx.split(Model(), f, ...)
        assert len(chosen.flat_state()) + len(rest.flat_state()) == 7
        assert nnx.merge(g, chosen, rest).count.value == 0


def test_from_flat_rejects_an_empty_path():
    with pytest.raises(nnx.StructureError, match="needs a non-empty path"):
        nnx.State.from_flat([((), jnp.ones(1))])


def test_state_merge_later_states_win_and_functional_aliases():
    _, state = nnx.split(Model())
    override = nnx.State({"count": Count(jnp.array(9))})
    merged = nnx.merge_state(state, override)
    assert int(merged["count"][...]) == 9 and len(merged.flat_state()) == 7
    assert (state | override)["count"] is override["count"]
    assert nnx.to_flat_state(state) == state.flat_state()
    assert nnx.from_flat_state(state.flat_state()) == state
    assert paths(nnx.filter_state(state, nnx.BatchStat)) == [("bn", "mean")]
    params, rest = nnx.split_state(state, nnx.Param, ...)
    assert len(params.flat_state()) == 4 and len(rest.flat_state()) == 3


def test_state_equality_checks_kinds_paths_and_shapes():
    _, a = nnx.split(Model())
    _, b = nnx.split(Model())
    b["count"] = nnx.Param(jnp.array(0))  # same value, other kind
    assert a != b
    _, c = nnx.split(Model())
    c["tagged"] = nnx.Variable(jnp.ones(2))  # other shape
    assert a != c
    _, d = nnx.split(Model())
    del d["count"]
    assert a != d
    assert a != 3


@pytest.mark.parametrize("mode", [{"ref": True}, {"hijax": True}])
def test_pure_dicts_with_ref_and_hijax_variables(mode):
    with nnx.var_defaults(**mode):
        m = Model()
    _, state = nnx.split(m)
    pure = state.to_pure_dict()
    assert isinstance(pure["count"], jax.Array)
    pure["count"] = jnp.array(4)
    count = m.count
    nnx.replace_by_pure_dict(state, pure)
    assert int(m.count[...]) == 0  # as in Flax: the State gets new Variables, not the model
    assert int(state["count"][...]) == 4 and state["count"] is not count
    assert state["count"].ref == count.ref and state["count"].hijax == count.hijax
    nnx.update(m, state)  # applies them
    assert m.count is count and int(m.count[...]) == 4
    assert m.count.ref or m.count.hijax


def test_replace_by_pure_dict_not_strict_keeps_missing_values():
    _, state = nnx.split(Model())
    state.replace_by_pure_dict({"count": jnp.array(2)}, strict=False)
    assert int(state["count"][...]) == 2
    np.testing.assert_array_equal(state["linear"]["kernel"][...], np.ones((2, 2)))


def test_state_repr_summarizes_large_arrays_and_nests():
    _, state = nnx.split(Model())
    state["big"] = nnx.Param(jnp.zeros((512, 512)))
    text = repr(state)
    assert (
        "'big': Param( # 262,144 (1.0 MB)\n    value=Array([[0., 0., 0., ..., 0., 0., 0.]," in text
    )
    assert (
        "'bn': {\n    'mean': BatchStat( # 2 (8 B)\n"
        "      value=Array([0., 0.], dtype=float32)\n    )\n  },"
    ) in text
    assert len(text) < 2000


def test_pure_dict_with_key_data_round_trips_rng_keys_through_numpy(tmp_path):
    class M(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(jnp.arange(4.0).reshape(2, 2))
            self.rngs = rngs

    m = M(nnx.Rngs(params=0, dropout=1))
    m.rngs.dropout()  # advance one stream
    pure = nnx.state(m).to_pure_dict(key_data=True)
    key = pure["rngs"]["dropout"]["key"]
    assert key.dtype == jnp.uint32 and key.shape == (2,)  # plain data, not key<fry>
    # through a format that knows only arrays and string keys
    flat: dict[str, Any] = {"/".join(map(str, p)): np.asarray(v) for p, v in _flat_pure(pure)}
    np.savez(tmp_path / "ckpt.npz", **flat)
    with np.load(tmp_path / "ckpt.npz") as f:
        restored = _unflat_pure({k: f[k] for k in f.files})
    fresh = M(nnx.Rngs(params=5, dropout=6))
    state = nnx.state(fresh)
    state.replace_by_pure_dict(restored)
    nnx.update(fresh, state)
    assert jax.dtypes.issubdtype(fresh.rngs.dropout.key[...].dtype, jax.dtypes.prng_key)  # pyright: ignore[reportPrivateImportUsage]
    assert jax.random.key_impl(fresh.rngs.dropout.key[...]) == jax.random.key_impl(
        m.rngs.dropout.key[...]
    )
    np.testing.assert_array_equal(fresh.w[...], m.w[...])
    # the restored stream continues exactly where the saved one was
    np.testing.assert_array_equal(
        jax.random.key_data(fresh.rngs.dropout()), jax.random.key_data(m.rngs.dropout())
    )
    # without key_data the typed keys stay keys (for use inside JAX)
    assert jax.dtypes.issubdtype(  # pyright: ignore[reportPrivateImportUsage]
        nnx.state(m).to_pure_dict()["rngs"]["dropout"]["key"].dtype, jax.dtypes.prng_key
    )


def test_replace_by_pure_dict_checks_shapes_before_writing_anything():
    state = nnx.State({"a": nnx.Param(jnp.zeros(2)), "b": nnx.Param(jnp.zeros((2, 3)))})
    with pytest.raises(
        nnx.StructureError, match=r"'b' has shape \(3, 2\), but the Variable holds \(2, 3\)"
    ):
        state.replace_by_pure_dict({"a": jnp.ones(2), "b": jnp.ones((3, 2))})
    np.testing.assert_array_equal(state["a"][...], [0.0, 0.0])  # 'a' was not written either
    state.replace_by_pure_dict({"a": jnp.ones(2), "b": jnp.ones((3, 2))}, strict=False)
    assert state["b"][...].shape == (3, 2)


def _flat_pure(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat_pure(v, (*prefix, k))
        else:
            yield (*prefix, k), v


def _unflat_pure(flat):
    out: dict = {}
    for path, v in flat.items():
        *parents, last = path.split("/")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return out


def test_a_string_filter_matches_a_random_stream_by_its_name_as_in_flax():
    # Flax reads a string filter as WithTag: a layer's own stream (`rngs.dropout.fork()`
    # kept as `self.rngs`) sits at a path without "dropout" but carries the tag. nnx
    # matches the tag as well as a path component (its meaning so far).
    class Noisy(nnx.Module):
        def __init__(self, rngs):
            self.rngs = rngs.dropout.fork()
            self.w = nnx.Param(jnp.ones(2))

    m = Noisy(nnx.Rngs(params=0, dropout=1))
    assert paths(nnx.state(m, "dropout")) == [("rngs", "count"), ("rngs", "key")]
    assert paths(nnx.state(m, "w")) == [("w",)]
    assert nnx.to_predicate("dropout")(("rngs", "key"), m.rngs.key) is True
    assert nnx.to_predicate("params")(("rngs", "key"), m.rngs.key) is False


def test_everything_and_nothing_are_written_as_flax_writes_them():
    # Flax NNX's Everything/Nothing are classes: code writes `nnx.Everything()`; nnx's
    # are ready-made filters, and calling one with no arguments gives it back
    m = Model()
    assert nnx.Everything() is nnx.Everything and nnx.Nothing() is nnx.Nothing
    assert len(nnx.state(m, nnx.Everything()).flat_state()) == 7
    assert nnx.state(m, nnx.Nothing()).flat_state() == []
    g, params, rest = nnx.split(m, nnx.Param, nnx.Everything())
    assert len(params.flat_state()) == 4 and len(rest.flat_state()) == 3
    assert nnx.Not(nnx.Everything())((), m.count) is False


def test_of_type_matches_a_value_whose_type_attribute_is_the_kind():
    # Flax's filters guide: a type filter matches instances of the type, and values with
    # a `type` attribute that is a subclass of it (a VariableState(type=Param, ...))
    is_param = nnx.OfType(nnx.Param)
    assert is_param((), nnx.Param(0)) is True
    assert is_param((), nnx.VariableState(type=nnx.Param, value=0)) is True
    assert is_param((), nnx.VariableState(type=nnx.BatchStat, value=0)) is False

    class Described:
        type = nnx.Param

    class Spelled:
        type = "Param"  # not a class: no match, and no error

    assert is_param((), Described()) is True
    assert is_param((), Spelled()) is False
    assert is_param((), nnx.BatchStat(0)) is False
    assert nnx.to_predicate(nnx.Variable)((), nnx.VariableState(type=nnx.Param, value=0))


def test_statelib_diff_keeps_the_paths_the_other_state_lacks():
    # Flax NNX's nnx.statelib.diff: entries of the first State at paths not in the second
    state = nnx.State({"kernel": nnx.Param(jnp.ones((2, 3))), "bias": nnx.Param(jnp.zeros(3))})
    biases = state.filter(lambda path, v: path[-1] == "bias")
    d = nnx.statelib.diff(state, biases)
    assert nnx.statelib.diff is nnx.diff_state
    assert type(d) is nnx.State and d.flat_state().paths == (("kernel",),)
    assert d["kernel"] is state["kernel"]  # the same Variable, not a copy
    assert nnx.statelib.diff(state, nnx.State({})) is state
    nested = nnx.State({"a": {"b": 1, "c": 2}, "d": 3})
    assert nnx.diff_state(nested, nnx.State({"a": {"c": 0}})).to_pure_dict() == {
        "a": {"b": 1},
        "d": 3,
    }
