"""Flax NNX 0.12 parity of Variables: metadata API, sharding, copy_from,
update_from_state, to_state, add_axis/remove_axis, raw_value, with_metadata,
set_metadata and the collection-name registry; in every storage mode."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

MODES = {"plain": {}, "ref": {"ref": True}, "hijax": {"hijax": True}}


def make(value, mode, cls: type[nnx.Variable] = nnx.Param, **meta):
    return cls(value, **MODES[mode], **meta)


@pytest.mark.parametrize("mode", MODES)
def test_get_metadata_without_a_key_is_the_whole_dict(mode):
    v = make(jnp.ones(2), mode, tag="w", sharding_names=(None,))
    md = v.get_metadata()
    # as in Flax NNX, with the entries every Variable has (its storage mode, eager sharding)
    assert md == {
        "tag": "w",
        "out_sharding": (None,),
        "hijax": mode == "hijax",
        "ref": mode == "ref",
        "eager_sharding": True,
    }
    assert list(md)[:2] == ["tag", "out_sharding"]
    assert v.get_metadata(exclude_required=True) == {"tag": "w", "out_sharding": (None,)}
    md["tag"] = "changed"  # a copy
    assert v.tag == "w"
    assert v.get_metadata("tag") == "w" and v.get_metadata("nope", 3) == 3


@pytest.mark.parametrize("mode", MODES)
def test_set_metadata_forms(mode):
    v = make(jnp.ones(2), mode, a=1)
    v.set_metadata("b", 2)
    v.set_metadata(c=3, sharding=("x",))
    assert v.get_metadata(exclude_required=True) == {"a": 1, "b": 2, "c": 3, "out_sharding": ("x",)}
    v.set_metadata({"only": True})
    assert v.get_metadata(exclude_required=True) == {"only": True}
    with pytest.raises(TypeError, match="not positional and keyword arguments together"):
        v.set_metadata("a", 1, b=2)
    with pytest.raises(TypeError, match="got 3 positional arguments"):
        v.set_metadata("a", 1, 2)
    v.del_metadata("only")
    with pytest.raises(KeyError, match="has no metadata 'only'"):
        v.del_metadata("only")


@pytest.mark.parametrize("mode", MODES)
def test_sharding_is_the_arrays_sharding(mode):
    x = jnp.arange(4.0)
    v = make(x, mode, sharding_names=("data",))
    assert v.sharding == x.sharding
    assert v.sharding_names == ("data",)
    w = make({"a": jnp.ones(2)}, mode)
    with pytest.raises(AttributeError, match=r"\.sharding: its value .* has no sharding"):
        w.sharding


@pytest.mark.parametrize("mode", MODES)
def test_copy_from_keeps_identity_and_mode(mode):
    v = make(jnp.zeros(3), mode, tag="a")
    other = nnx.Param(jnp.arange(3.0), tag="b", lr=0.1)
    raw_type = type(v.get_raw_value())
    v.copy_from(other)
    np.testing.assert_array_equal(v[...], np.arange(3.0))
    assert v.get_metadata(exclude_required=True) == {"tag": "b", "lr": 0.1}
    assert type(v.get_raw_value()) is raw_type and (v.ref, v.hijax) == (
        mode == "ref",
        mode == "hijax",
    )
    other[...] = jnp.ones(3)  # no aliasing
    np.testing.assert_array_equal(v[...], np.arange(3.0))
    with pytest.raises(ValueError, match="Cannot copy from incompatible container.*BatchStat"):
        v.copy_from(nnx.BatchStat(jnp.zeros(3)))
    v.copy_from(make(jnp.ones((2, 2)), "plain"))  # a new shape is fine
    assert v.shape == (2, 2)


@pytest.mark.parametrize("mode", MODES)
def test_update_from_state_takes_value_and_metadata(mode):
    model_var = make(jnp.zeros(2), mode, tag="w")
    state_leaf = nnx.Variable(jnp.full(2, 5.0), tag="w2")
    model_var.update_from_state(state_leaf)
    assert type(model_var) is nnx.Param
    np.testing.assert_array_equal(model_var[...], [5.0, 5.0])
    assert model_var.tag == "w2"
    with pytest.raises(TypeError, match="needs a Variable, got ndarray"):
        model_var.update_from_state(np.ones(2))  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("mode", MODES)
def test_to_state_is_a_copy(mode):
    v = make(jnp.ones(2), mode, tag="t")
    s = v.to_state()
    assert type(s) is nnx.Param and s is not v and s.tag == "t"
    s[...] = jnp.zeros(2)
    np.testing.assert_array_equal(v[...], [1.0, 1.0])


@pytest.mark.parametrize("mode", MODES)
def test_add_and_remove_axis_update_sharding_names(mode):
    v = make(jnp.ones((2, 3)), mode, sharding_names=("a", "b"))
    v.add_axis(0, "layers")
    assert v.sharding_names == ("layers", "a", "b")
    v.add_axis(-1, "last")
    assert v.sharding_names == ("layers", "a", "b", "last")
    v.remove_axis(0, "layers")
    assert v.sharding_names == ("a", "b", "last")
    with pytest.raises(ValueError, match=r"have no 'zzz' at 1"):
        v.remove_axis(1, "zzz")
    plain = make(jnp.ones(2), mode)
    plain.add_axis(0, "x")  # no sharding names: nothing to record
    assert plain.get_metadata(exclude_required=True) == {}


def test_add_axis_calls_the_metadata_hook():
    calls = []
    v = nnx.Param(
        jnp.ones(2),
        on_add_axis=lambda var, i, name: calls.append(("add", i, name)),
        on_remove_axis=lambda var, i, name: calls.append(("remove", i, name)),
    )
    v.add_axis(1, "x")
    v.remove_axis(1, "x")
    assert calls == [("add", 1, "x"), ("remove", 1, "x")]


@pytest.mark.parametrize("mode", MODES)
def test_raw_value_reads_and_writes_the_stored_object(mode):
    v = make(jnp.ones(2), mode)
    assert v.raw_value is v.get_raw_value()
    if mode == "plain":
        v.raw_value = jnp.zeros(2)
        np.testing.assert_array_equal(v[...], [0.0, 0.0])


def test_with_metadata_wraps_an_initializer():
    init = nnx.with_metadata(jax.nn.initializers.lecun_normal(), lr_scale=0.5, sharding=(None, "m"))
    key = jax.random.key(0)
    p = nnx.Param(init(key, (3, 4)))
    np.testing.assert_allclose(np.asarray(p[...]), jax.nn.initializers.lecun_normal()(key, (3, 4)))
    assert p.get_metadata(exclude_required=True) == {"lr_scale": 0.5, "out_sharding": (None, "m")}
    both = nnx.with_metadata(nnx.with_partitioning(jax.nn.initializers.ones, ("a",)), note=1)
    q = nnx.Param(both(key, (2,)))
    assert q.sharding_names == ("a",) and q.note == 1
    ones = nnx.with_metadata(jax.nn.initializers.ones, tag="o")  # a module function
    assert pickle.loads(pickle.dumps(ones)) == ones


def test_module_level_set_metadata_uses_the_filter():
    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2))
            self.b = nnx.Param(jnp.zeros(2))
            self.s = nnx.BatchStat(jnp.zeros(2))

    m = M()
    nnx.set_metadata(m, only=nnx.Param, frozen=True)
    assert m.w.frozen and m.b.frozen and m.s.get_metadata("frozen", None) is None
    nnx.set_metadata(m, "group", 2, only=nnx.All(nnx.Param, nnx.PathContains("w")))
    assert m.w.group == 2 and m.b.get_metadata("group", None) is None
    nnx.set_metadata(m, note="all")
    assert m.s.note == "all"


def test_collection_name_registry():
    assert nnx.variable_type_from_name("params") is nnx.Param
    assert nnx.variable_type_from_name("batch_stats") is nnx.BatchStat
    assert nnx.variable_name_from_type(nnx.Cache) == "cache"
    assert nnx.variable_name_from_type(nnx.Intermediate) == "intermediates"
    with pytest.raises(ValueError, match="Name 'zz_counts' is not registered"):
        nnx.variable_type_from_name("zz_counts")
    made = nnx.variable_type_from_name("zz_counts", allow_register=True)
    assert issubclass(made, nnx.Variable) and made.__name__ == "zz_counts"
    assert nnx.variable_type_from_name("zz_counts") is made
    assert nnx.variable_name_from_type(made) == "zz_counts"

    @nnx.register_variable_name("zz_mine")
    class Mine(nnx.Variable):
        pass

    assert nnx.variable_type_from_name("zz_mine") is Mine
    assert nnx.variable_name_from_type(Mine) == "zz_mine"
    with pytest.raises(ValueError, match="'zz_mine' is already mapped to Mine.*overwrite=True"):
        nnx.register_variable_name("zz_mine", nnx.Param)

    class Other(nnx.Variable):
        pass

    with pytest.raises(ValueError, match="Type Other is not registered"):
        nnx.variable_name_from_type(Other)
    assert nnx.variable_name_from_type(Other, allow_register=True) == "Other"
    assert nnx.variable_type_from_name("Other") is Other


@pytest.mark.parametrize("mode", MODES)
def test_out_sharding_is_the_metadata_key_and_sharding_names_its_alias(mode):
    # Flax NNX 0.12.8 stores the sharding names as `out_sharding`; `sharding_names`
    # (its older spelling) reads and writes the same entry, in replace() too.
    v = make(jnp.ones((2, 3)), mode, sharding_names=("a", "b"))
    assert v.get_metadata(exclude_required=True) == {"out_sharding": ("a", "b")}
    assert v.out_sharding == v.sharding_names == ("a", "b")
    w = v.replace(out_sharding=("c", None))
    assert w.out_sharding == ("c", None) and w.get_metadata("sharding_names") == ("c", None)
    u = v.replace(sharding_names=(None, "d"))
    assert u.get_metadata(exclude_required=True) == {"out_sharding": (None, "d")}
    assert v.out_sharding == ("a", "b")


@pytest.mark.parametrize("mode", MODES)
def test_setitem_ellipsis_writes_into_the_array(mode):
    # Flax NNX: `v[...] = x` writes x into the array (broadcast, cast to its dtype);
    # a value of the same shape and dtype replaces it
    v = make(jnp.ones((2, 3)), mode, nnx.BatchStat)
    v[...] = 0.0
    np.testing.assert_array_equal(v.get_value(), np.zeros((2, 3)))
    v[...] = jnp.arange(3.0)
    np.testing.assert_array_equal(v.get_value(), np.tile(np.arange(3.0), (2, 1)))
    v[...] = jnp.ones((2, 3), jnp.int32)
    assert v.get_value().dtype == jnp.float32
    new = jnp.full((2, 3), 4.0)
    v[...] = new
    np.testing.assert_array_equal(v.get_value(), new)
    with pytest.raises(ValueError) as e:
        v[...] = jnp.zeros((4, 2))
    assert "set_value" in str(e.value) and "BatchStat" in str(e.value)
    np.testing.assert_array_equal(v.get_value(), new)  # nothing written
    if mode != "ref":  # (a ref's shape is fixed)
        v.set_value(jnp.zeros((4, 2)))  # the way to change the shape
        assert v.get_value().shape == (4, 2)


def test_setitem_ellipsis_under_jit_and_on_numpy():
    import jax

    v = nnx.Param(jnp.zeros(3))

    @jax.jit
    def f(x):
        w = nnx.Param(jnp.zeros(3))
        w[...] = x
        return w.get_value()

    np.testing.assert_array_equal(f(2.0), np.full(3, 2.0))
    v[...] = 1
    assert v.get_value().dtype == jnp.float32
    n = nnx.Param(np.zeros((2,), np.float32))
    n[...] = 3
    assert isinstance(n.get_value(), np.ndarray)
    np.testing.assert_array_equal(n.get_value(), np.full(2, 3.0))


def test_type_is_the_kind_as_in_flax():
    assert nnx.Param(jnp.ones(2)).type is nnx.Param
    assert nnx.BatchStat(1.0).type is nnx.BatchStat
    # the older VariableState spelling keeps the kind it was given
    assert nnx.VariableState(type=nnx.Param, value=0).type is nnx.Param


def test_scalar_conversions_read_the_value_as_in_flax():
    assert float(nnx.Param(jnp.array(2.5))) == 2.5
    assert int(nnx.BatchStat(jnp.array(3))) == 3
    assert complex(nnx.Param(jnp.array(1.0))) == 1 + 0j
    assert [10, 20, 30][nnx.Param(jnp.array(1))] == 20  # __index__
    assert list(range(nnx.Param(3))) == [0, 1, 2]
    with pytest.raises(TypeError, match="scalar"):
        float(nnx.Param(jnp.ones(2)))
    with pytest.raises(TypeError, match="integer scalar"):
        [1][nnx.Param(jnp.array(0.5))]  # noqa: B018


def test_get_metadata_of_an_absent_entry_is_a_key_error_without_a_default():
    # Flax NNX documents it: "If not provided and the key is not found, raises a KeyError"
    v = nnx.Param(jnp.ones(2), lr=0.1)
    assert v.get_metadata("lr") == 0.1
    assert v.get_metadata("group", None) is None and v.get_metadata("group", 3) == 3
    with pytest.raises(KeyError, match=r"has no metadata 'group'.*v.get_metadata\('group', None\)"):
        v.get_metadata("group")
    # the alias names the stored entry
    named = nnx.Param(jnp.ones(2), sharding_names=("a",))
    assert named.get_metadata("sharding_names") == ("a",) == named.get_metadata("out_sharding")
    with pytest.raises(KeyError):
        nnx.Param(jnp.ones(2)).get_metadata("sharding_names")


@pytest.mark.parametrize("mode", MODES)
def test_required_metadata_entries(mode):
    v = make(jnp.ones(2), mode, a=1)
    assert nnx.Variable.required_metadata == {"hijax", "ref", "eager_sharding"}
    assert v.get_metadata("hijax") is (mode == "hijax")
    assert v.get_metadata("ref") is (mode == "ref")
    assert v.get_metadata("eager_sharding") is True
    with nnx.use_eager_sharding(False):
        assert v.get_metadata()["eager_sharding"] is False
    # a Variable built from another's metadata gets its storage mode (Flax's idiom)
    w = nnx.Param(jnp.zeros(2), **v.get_metadata())
    assert (w.hijax, w.ref, w.a) == (v.hijax, v.ref, 1)
    # the whole dict given back is accepted; the storage mode is not metadata to change
    v.set_metadata({**v.get_metadata(), "b": 2})
    assert v.get_metadata(exclude_required=True) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match="cannot change 'hijax'.*nnx.vars_as"):
        v.set_metadata({"b": 2, "hijax": mode != "hijax"})
    with pytest.raises(ValueError, match="cannot change 'ref'"):
        v.set_metadata(ref=mode != "ref")
    with pytest.raises(ValueError, match="cannot change 'eager_sharding'"):
        v.set_metadata("eager_sharding", False)
    assert v.get_metadata(exclude_required=True) == {"a": 1, "b": 2}  # nothing changed
    with pytest.raises(TypeError, match="a default needs a name"):
        v.get_metadata(default=1)  # pyright: ignore[reportCallIssue]
    with pytest.raises(TypeError, match="not both"):
        v.get_metadata("a", exclude_required=True)  # pyright: ignore[reportCallIssue]
