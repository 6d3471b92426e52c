"""Every access form and operator in every storage mode, and each mode under jit/grad/vmap."""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Count

import nnx

MODES = {"plain": {}, "ref": {"ref": True}, "hijax": {"hijax": True}}
RAW_TYPES = {"plain": jax.Array, "ref": jax.Ref, "hijax": object}


def make(value, mode, cls=nnx.Variable, **meta):
    return cls(value, **MODES[mode], **meta)


@pytest.mark.parametrize("mode", MODES)
def test_access_forms_read_and_write_the_same_value(mode):
    v = make(jnp.array([1.0, 2.0, 3.0]), mode)
    same = v
    v[...] = jnp.array([4.0, 5.0, 6.0])
    np.testing.assert_array_equal(v[...], [4.0, 5.0, 6.0])
    v[...] += 1
    np.testing.assert_array_equal(v.value, [5.0, 6.0, 7.0])
    v.value = jnp.zeros(3)
    np.testing.assert_array_equal(v.get_value(), [0.0, 0.0, 0.0])
    v.set_value(jnp.arange(3.0))
    v[1] = 10.0
    np.testing.assert_array_equal(v[...], [0.0, 10.0, 2.0])
    np.testing.assert_array_equal(v[1:], [10.0, 2.0])
    np.testing.assert_array_equal(jnp.asarray(v), [0.0, 10.0, 2.0])  # __jax_array__
    assert v is same
    assert isinstance(v.get_raw_value(), RAW_TYPES[mode])
    assert (v.hijax, v.ref) == (mode == "hijax", mode == "ref")


@pytest.mark.parametrize("mode", MODES)
def test_dict_values_are_updated_by_key(mode):
    v = make({"a": jnp.array(1), "b": jnp.array(2.0)}, mode)
    v["a"] += 1
    v["b"] *= 3
    assert int(v["a"]) == 2 and float(v["b"]) == 6.0
    assert set(v[...]) == {"a", "b"}


@pytest.mark.parametrize("mode", ["plain", "hijax"])
def test_dict_values_gain_keys(mode):
    v = make({"a": jnp.array(1)}, mode)
    v["new"] = jnp.array(5)
    assert set(v.get_value()) == {"a", "new"} and int(v["new"]) == 5


def test_ref_dict_values_cannot_gain_keys_and_say_what_to_use():
    v = make({"a": jnp.array(1)}, "ref")
    with pytest.raises(nnx.HijaxError, match="Use a hijax Variable for dicts that grow"):
        v["new"] = jnp.array(5)


BINARY = [
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.floordiv,
    operator.mod,
    operator.pow,
]
COMPARE = [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne]
INPLACE = {
    operator.iadd: operator.add,
    operator.isub: operator.sub,
    operator.imul: operator.mul,
    operator.itruediv: operator.truediv,
    operator.ifloordiv: operator.floordiv,
    operator.imod: operator.mod,
    operator.ipow: operator.pow,
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", BINARY + COMPARE, ids=lambda op: op.__name__)
def test_binary_operators_act_on_the_value(mode, op):
    x = jnp.array([1.0, 2.0, 3.0])
    v = make(x, mode)
    np.testing.assert_allclose(op(v, 2.0), op(x, 2.0))
    np.testing.assert_allclose(op(2.0, v), op(2.0, x))
    np.testing.assert_allclose(op(v, v), op(x, x))


@pytest.mark.parametrize("mode", MODES)
def test_integer_and_matrix_operators(mode):
    i = make(jnp.array([6, 3]), mode)
    np.testing.assert_array_equal(i & 2, [2, 2])
    np.testing.assert_array_equal(i | 1, [7, 3])
    np.testing.assert_array_equal(i ^ 1, [7, 2])
    np.testing.assert_array_equal(i << 1, [12, 6])
    np.testing.assert_array_equal(i >> 1, [3, 1])
    np.testing.assert_array_equal(~i, [-7, -4])
    m = make(jnp.array([[1.0, 2.0], [3.0, 4.0]]), mode)
    np.testing.assert_allclose(m @ jnp.ones(2), [3.0, 7.0])
    np.testing.assert_allclose(jnp.ones(2) @ m, [4.0, 6.0])
    np.testing.assert_allclose(-m, -np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_allclose(abs(-m), [[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("iop", list(INPLACE), ids=lambda op: op.__name__)
def test_inplace_operators_write_the_value_and_keep_identity(mode, iop):
    x = jnp.array([5.0, 7.0])
    v = make(x, mode)
    out = iop(v, 2.0)
    assert out is v
    np.testing.assert_allclose(v[...], INPLACE[iop](x, 2.0))


@pytest.mark.parametrize("mode", MODES)
def test_user_subclass_in_every_mode_survives_split_merge(mode):
    class Model(nnx.Module):
        def __init__(self):
            self.count = make(jnp.array(0), mode, Count, tag="steps")

        def __call__(self):
            self.count += 1

    m = Model()
    count = m.count
    m()
    assert m.count is count and int(m.count[...]) == 1
    g, s = nnx.split(m)
    m2 = nnx.merge(g, s, copy=True)
    assert type(m2.count) is Count and m2.count is not count
    assert m2.count.tag == "steps" and (m2.count.hijax, m2.count.ref) == (count.hijax, count.ref)
    assert int(m2.count[...]) == 1


@pytest.mark.parametrize("mode", MODES)
def test_metadata_read_set_delete_and_survive_split_merge(mode):
    v = make(jnp.ones(2), mode, nnx.Param, sharding_names=(None,))
    v.tag = "w"
    v.set_metadata(lr_scale=0.5, note=[1, 2])
    assert v.sharding_names == (None,) and v.out_sharding == (None,)
    assert v.sharding == v[...].sharding  # the array's sharding, as Flax NNX
    assert v.get_metadata("lr_scale") == 0.5 and v.get_metadata("missing", 7) == 7
    assert v.metadata == {"out_sharding": (None,), "tag": "w", "lr_scale": 0.5, "note": [1, 2]}
    del v.note
    with pytest.raises(AttributeError, match="note"):
        del v.note

    class M(nnx.Module):
        def __init__(self):
            self.w = v

    g, s = nnx.split(M())
    w2 = nnx.merge(g, s, copy=True).w
    assert w2 is not v and w2.metadata == {"out_sharding": (None,), "tag": "w", "lr_scale": 0.5}
    frozen = nnx.vars_as(v, mutable=False)
    assert frozen.tag == "w" and frozen.lr_scale == 0.5


def test_metadata_change_changes_the_graphdef():
    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.ones(2), tag="a")

    m = M()
    before = nnx.graphdef(m)
    m.w.tag = "b"
    assert nnx.graphdef(m) != before


# -- the modes under plain JAX transforms -------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_jit_argument_writes(mode):
    v = make(jnp.array([1.0, 2.0]), mode)

    @jax.jit
    def step(v):
        v[...] += 1.0
        v *= 2.0
        return v[...].sum()

    total = step(v)
    assert float(total) == 10.0
    # ref and hijax writes come out of plain jax.jit; a plain Variable is JAX's copy
    expected = [1.0, 2.0] if mode == "plain" else [4.0, 6.0]
    np.testing.assert_allclose(v[...], expected)


@pytest.mark.parametrize("mode", ["ref", "hijax"])
def test_jit_dict_value_writes_by_key(mode):
    v = make({"a": jnp.array(0), "b": jnp.array(2)}, mode)
    jax.jit(lambda v: v.__setitem__("a", v["a"] + 1))(v)
    assert int(v["a"]) == 1 and int(v["b"]) == 2


@pytest.mark.parametrize("mode", MODES)
def test_grad_of_a_closed_over_variable_read(mode):
    w = make(jnp.array([1.0, 2.0]), mode, nnx.Param)
    g = jax.grad(lambda x: jnp.sum(w[...] * x**2))(jnp.array([3.0, 4.0]))
    np.testing.assert_allclose(g, [6.0, 16.0])  # d/dx w x^2 = 2 w x


@pytest.mark.parametrize("mode", MODES)
def test_grad_with_respect_to_a_frozen_copy_in_every_mode(mode):
    w = make(jnp.array([1.0, 2.0]), mode, nnx.Param)
    g = jax.grad(lambda p: jnp.sum(p[...] ** 3))(nnx.vars_as(w, mutable=False))
    assert isinstance(g, nnx.Param)
    np.testing.assert_allclose(g[...], [3.0, 12.0])  # 3 w^2


def test_grad_with_respect_to_a_plain_variable():
    w = make(jnp.array([1.0, 2.0]), "plain", nnx.Param)
    g = jax.grad(lambda p: jnp.sum(p[...] ** 3))(w)
    np.testing.assert_allclose(g[...], [3.0, 12.0])


def test_grad_with_respect_to_a_ref_variable_is_refused_by_jax():
    # JAX cannot differentiate with respect to a Ref; the frozen copy (above) is the way.
    w = make(jnp.array([1.0, 2.0]), "ref", nnx.Param)
    with pytest.raises(ValueError, match="Expected cotangent type Ref"):
        jax.grad(lambda p: jnp.sum(p[...] ** 3))(w)


def test_grad_with_respect_to_a_hijax_variable_is_an_nnx_error():
    w = make(jnp.array([1.0, 2.0]), "hijax", nnx.Param)
    with pytest.raises(nnx.HijaxError, match="cannot be transposed") as err:
        jax.grad(lambda p: jnp.sum(p[...] ** 3))(w)
    # the message names both ways that work; the first is checked here
    assert "nnx.vars_as(tree, mutable=False)" in str(err.value) and "nnx.grad" in str(err.value)
    g = jax.grad(lambda p: jnp.sum(p[...] ** 3))(nnx.vars_as(w, mutable=False))
    np.testing.assert_allclose(g[...], [3.0, 12.0])


@pytest.mark.parametrize("mode", ["plain", "ref"])
def test_vmap_over_a_variable(mode):
    v = make(jnp.arange(6.0).reshape(3, 2), mode)

    def row(p):
        p[...] = p[...] * 2.0
        return p[...].sum()

    np.testing.assert_allclose(jax.vmap(row)(v), [2.0, 10.0, 18.0])
    # a ref is written in place, row by row; a plain Variable is JAX's copy
    factor = 2.0 if mode == "ref" else 1.0
    np.testing.assert_allclose(v[...], factor * np.arange(6.0).reshape(3, 2))


def test_hijax_defaults_make_plain_variables_inside_jax_vmap_and_grad():
    # JAX has no batching or differentiation rule for a cell: there the defaults give
    # plain Variables (as inside nnx transforms); under jax.jit they stay hijax.
    seen = {}

    def make_and_use(x, where):
        v = nnx.Variable(x * 2.0)
        seen[where] = (v.hijax, v.ref)
        v[...] += 1.0
        return v[...].sum()

    with nnx.var_defaults(hijax=True):
        np.testing.assert_allclose(
            jax.vmap(lambda x: make_and_use(x, "vmap"))(jnp.arange(3.0)), [1.0, 3.0, 5.0]
        )
        assert float(jax.grad(lambda x: make_and_use(x, "grad"))(3.0)) == 2.0
        jax.jit(lambda x: make_and_use(x, "jit"))(1.0)
        eager = nnx.Variable(jnp.zeros(()))
    assert seen == {"vmap": (False, False), "grad": (False, False), "jit": (True, False)}
    assert eager.hijax


def test_explicit_hijax_variable_of_a_vmapped_value_is_a_clear_error():
    def make(x):
        return nnx.Variable(x, hijax=True)[...]

    with pytest.raises(nnx.HijaxError, match="cannot be created here") as err:
        jax.vmap(make)(jnp.arange(3.0))
    assert "hijax=False" in str(err.value) and "nnx.vmap" in str(err.value)
    # a concrete value is fine: an ordinary cell, as outside
    const = jax.vmap(lambda x: x + nnx.Variable(jnp.ones(()), hijax=True)[...])(jnp.zeros(2))
    np.testing.assert_allclose(const, [1.0, 1.0])


def test_writing_a_vmapped_value_into_a_captured_hijax_variable_is_a_clear_error():
    v = nnx.Variable(jnp.zeros(()), hijax=True)

    def write(x):
        v[...] = x

    with pytest.raises(nnx.HijaxError, match="cannot be written here"):
        jax.vmap(write)(jnp.arange(3.0))
    np.testing.assert_array_equal(v[...], 0.0)  # nothing written

    def write_unbatched(x):  # a value that does not depend on the mapped axis is fine
        v[...] = v[...] + 1.0
        return x

    jax.vmap(write_unbatched)(jnp.arange(3.0))
    assert float(v[...]) == 1.0


def test_hijax_module_broadcast_by_plain_jax_vmap_reads_its_variables():
    class Affine(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
            self.b = nnx.Param(jnp.array([0.5, -0.5]))

        def __call__(self, x):
            return x @ self.w + self.b

    with nnx.var_defaults(hijax=True):
        m = Affine()
    xs = jnp.arange(6.0).reshape(3, 2)
    expected = np.asarray(xs) @ np.array([[1.0, 2.0], [3.0, 4.0]]) + [0.5, -0.5]
    for f in (jax.vmap, lambda g, **kw: jax.jit(jax.vmap(g, **kw))):
        ys = f(lambda m, x: m(x), in_axes=(None, 0))(m, xs)
        np.testing.assert_allclose(ys, expected, rtol=1e-6)


def test_split_streams_under_hijax_defaults_are_refs_that_jax_vmap_maps_over():
    with nnx.var_defaults(hijax=True):
        rngs = nnx.Rngs(0).fork(split=4)
        unsplit = nnx.Rngs(0).fork()
    assert rngs.default.key.ref and rngs.default.count.ref  # not hijax cells
    assert unsplit.default.key.hijax  # only split streams change storage
    keys = jax.vmap(lambda r: jax.random.key_data(r()))(rngs)
    assert keys.shape[0] == 4 and len({tuple(np.asarray(k).ravel()) for k in keys}) == 4
    np.testing.assert_array_equal(rngs.default.count[...], [1, 1, 1, 1])  # written back
    same = nnx.Rngs(0).fork(split=4)  # the same keys as under plain defaults
    np.testing.assert_array_equal(
        jax.random.key_data(rngs.default.key[...]), jax.random.key_data(same.default.key[...])
    )


@pytest.mark.parametrize("mode", ["ref", "hijax"])
def test_immutable_copies_of_every_mode_reject_every_write_form(mode):
    v = nnx.vars_as(make({"a": jnp.ones(2)}, mode), mutable=False)
    w = nnx.vars_as(make(jnp.ones(2), mode), mutable=False)
    msg = r"immutable Variable \(mutable=False\).*vars_as\(tree, mutable=True\)"
    for write in (
        lambda: v.__setitem__("a", 0.0),
        lambda: w.__setitem__(..., jnp.zeros(2)),
        lambda: w.__setitem__(0, 0.0),
        lambda: w.__iadd__(1.0),
        lambda: w.set_value(jnp.zeros(2)),
        lambda: setattr(w, "value", jnp.zeros(2)),
    ):
        with pytest.raises(nnx.ImmutableVariableError, match=msg):
            write()
    np.testing.assert_array_equal(w[...], [1.0, 1.0])
    assert not w.mutable and not w.ref and not w.hijax
