"""nnx.vmap with out_axes built by nnx.prefix: each Variable of a returned object is placed
on the axis the prefix gives at its path (Flax NNX's split_rngs / vmap docs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class Linear(nnx.Module):
    """nnx.Linear's parameters (nnx-layers is not installed in this package's tests)."""

    def __init__(self, din, dout, *, rngs):
        self.kernel = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (din, dout)))
        self.bias = nnx.Param(jnp.zeros((dout,)))


class Dropout(nnx.Module):
    """nnx.Dropout's state: its own fork of the dropout stream."""

    def __init__(self, rate, *, rngs):
        self.rate = rate
        self.rngs = rngs["dropout"].fork()


class Model(nnx.Module):
    def __init__(self, rngs):
        self.linear = Linear(2, 3, rngs=rngs)
        self.dropout = Dropout(0.5, rngs=rngs)


def expected_kernels(batch):
    """Each member's kernel, from its own key: lecun_normal at fold_in(key, count 0)."""
    init = jax.nn.initializers.lecun_normal()
    keys = batch.params.key[...]
    return np.stack([init(jax.random.fold_in(keys[i], 0), (2, 3)) for i in range(5)])


@pytest.mark.parametrize("graph", [False, True])
def test_flax_split_rngs_example_stacks_params_and_shares_the_rest(graph, mode):
    rngs = nnx.Rngs(params=0, dropout=1)
    in_axes = nnx.prefix(rngs, {"params": 0, ...: None}, graph=graph)
    out_axes = nnx.prefix(Model(rngs), {nnx.Param: 0, ...: None}, graph=graph)

    @nnx.vmap(in_axes=(in_axes,), out_axes=out_axes, graph=graph)
    def create_model(rngs):
        return Model(rngs)

    batch = nnx.split_rngs(rngs, splits=5, only="params", graph_updates=False)
    forked = jax.random.key_data(nnx.clone(batch).dropout.fork().key[...]).tolist()
    model = create_model(batch)
    assert model.dropout.rngs.key.shape == ()  # pyright: ignore[reportOptionalMemberAccess]
    assert model.linear.kernel.shape == (5, 2, 3)
    assert model.linear.bias.shape == (5, 3)  # pyright: ignore[reportOptionalMemberAccess,reportOptionalSubscript]
    np.testing.assert_allclose(model.linear.kernel[...], expected_kernels(batch), rtol=1e-6)
    np.testing.assert_array_equal(model.linear.bias[...], np.zeros((5, 3)))  # pyright: ignore[reportOptionalMemberAccess,reportOptionalSubscript]
    # the dropout stream is shared: one key, the fork of the stream it was given
    assert jax.random.key_data(model.dropout.rngs.key[...]).tolist() == forked  # pyright: ignore[reportOptionalMemberAccess]
    assert nnx.storage_mode(model.linear.kernel).name.lower() == mode


def test_split_rngs_decorator_then_vmap_with_prefix_out_axes():
    rngs = nnx.Rngs(params=0, dropout=1)
    in_axes = nnx.prefix(rngs, {"params": 0, ...: None}, graph=False)
    out_axes = nnx.prefix(Model(rngs), {nnx.Param: 0, ...: None}, graph=False)

    @nnx.split_rngs(splits=5, only="params")
    @nnx.vmap(in_axes=(in_axes,), out_axes=out_axes, graph=False)
    def create(rngs):
        return Model(rngs)

    model = create(nnx.Rngs(params=0, dropout=1))
    assert model.linear.kernel.shape == (5, 2, 3)
    assert model.dropout.rngs.key.shape == ()  # pyright: ignore[reportOptionalMemberAccess]


def test_an_int_axis_in_the_prefix_places_the_stacked_axis():
    rngs = nnx.Rngs(params=0, dropout=1)
    in_axes = (nnx.prefix(rngs, {"params": 0, ...: None}),)
    on_0 = nnx.vmap(
        Model, in_axes=in_axes, out_axes=nnx.prefix(Model(rngs), {nnx.Param: 0, ...: None})
    )
    on_last = nnx.vmap(
        Model, in_axes=in_axes, out_axes=nnx.prefix(Model(rngs), {nnx.Param: -1, ...: None})
    )
    # each call advances the streams it is given: one copy of the batch per call
    batch = nnx.split_rngs(rngs, splits=5, only="params", graph_updates=False)
    a, b = on_0(nnx.clone(batch)), on_last(nnx.clone(batch))
    assert b.linear.kernel.shape == (2, 3, 5) and b.linear.bias.shape == (3, 5)  # pyright: ignore[reportOptionalMemberAccess,reportOptionalSubscript]
    np.testing.assert_array_equal(
        b.linear.kernel[...], np.moveaxis(np.asarray(a.linear.kernel[...]), 0, -1)
    )


def test_prefix_entry_beside_plain_outputs():
    rngs = nnx.Rngs(params=0, dropout=1)
    batch = nnx.split_rngs(rngs, splits=5, only="params", graph_updates=False)
    px = nnx.prefix(Model(rngs), {nnx.Param: 1, ...: None})

    def f(r, x):
        m = Model(r)
        return x * 2.0, m, {"y": x}

    x = jnp.arange(5.0)
    y, m, d = nnx.vmap(
        f, in_axes=(nnx.prefix(rngs, {"params": 0, ...: None}), 0), out_axes=(0, px, 0)
    )(batch, x)
    np.testing.assert_array_equal(y, x * 2.0)
    np.testing.assert_array_equal(d["y"], x)
    assert m.linear.kernel.shape == (2, 5, 3)
    np.testing.assert_allclose(
        np.moveaxis(np.asarray(m.linear.kernel[...]), 1, 0), expected_kernels(batch), rtol=1e-6
    )


def test_axis_none_for_a_value_that_differs_names_its_path():
    rngs = nnx.Rngs(params=0, dropout=1)
    batch = nnx.split_rngs(rngs, splits=5, only="params", graph_updates=False)
    px = nnx.prefix(Model(rngs), {"kernel": None, nnx.Param: 0, ...: None})
    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"out_axes gives 'linear/kernel' of the Model returned the axis None .* "
        r"differs per member",
    ):
        nnx.vmap(Model, in_axes=(nnx.prefix(rngs, {"params": 0, ...: None}),), out_axes=px)(batch)


def test_a_prefix_that_does_not_fit_the_output_is_an_axis_error():
    rngs = nnx.Rngs(params=0, dropout=1)
    batch = nnx.split_rngs(rngs, splits=5, only="params", graph_updates=False)
    in_axes = (nnx.prefix(rngs, {"params": 0, ...: None}),)
    px = nnx.prefix(Model(rngs), {nnx.Param: 0, ...: None})
    with pytest.raises(
        nnx.transforms.AxisError, match=r"out_axes is not a prefix of what the function returned"
    ):
        nnx.vmap(Model, in_axes=in_axes, out_axes=(px, 0))(batch)
    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"entry shaped like a Model \(nnx.prefix\) where the function returned int",
    ):
        nnx.vmap(lambda r: (Model(r), 1), in_axes=in_axes, out_axes=(0, px))(batch)
    lin = nnx.prefix(Linear(2, 3, rngs=nnx.Rngs(0)), {...: 0})  # no 'dropout' entry
    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"out_axes prefix does not fit the output: for the RngCount at "
        r"'<output>/dropout/rngs/count' it has a Linear with no entry 'dropout'",
    ):
        nnx.vmap(Model, in_axes=in_axes, out_axes=lin)(batch)


class Three(nnx.Module):
    def __init__(self):
        self.a = nnx.Param(jnp.zeros(3))
        self.b = nnx.Param(jnp.zeros(3))
        self.c = nnx.BatchStat(jnp.zeros(()))


def test_shared_input_written_per_member_names_the_written_leaf_not_an_earlier_one():
    def f(m, x):
        m.c[...] = x.sum()  # a and b are not written: they leave no value
        return x

    m = Three()
    with pytest.raises(nnx.transforms.AxisError, match=r"Variable at 'm/c' has in_axes None"):
        nnx.vmap(f, in_axes=(nnx.StateAxes({nnx.Param: 0, ...: None}), 0))(m, jnp.ones((3, 2)))
    assert float(m.c[...]) == 0.0


def test_new_variable_returned_unmapped_keeps_the_default_mode(mode):
    # a jax.Ref made inside a vmap is batched whatever its value: new Variables are
    # plain inside and get the default mode back outside
    def f(x):
        return nnx.Param(jnp.arange(3.0)), x * 2.0

    p, y = nnx.vmap(f, out_axes=(None, 0))(jnp.ones(4))
    np.testing.assert_array_equal(p[...], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(y, np.full(4, 2.0))
    assert nnx.storage_mode(p).name.lower() == mode


def test_state_axes_in_out_axes_places_a_returned_object_by_kind(mode):
    class Block(nnx.Module):
        def __init__(self, x):
            self.w = nnx.Param(x * 2.0)
            self.stats = nnx.BatchStat(jnp.zeros(2))

    axes = nnx.StateAxes({nnx.Param: 1, ...: None})
    b = nnx.vmap(Block, in_axes=0, out_axes=axes)(jnp.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(b.w[...], np.arange(6.0).reshape(3, 2).T * 2.0)  # axis 1
    assert b.stats.shape == (2,)
    with pytest.raises(nnx.transforms.AxisError, match=r"'w' of the object returned the axis None"):
        nnx.vmap(Block, out_axes=nnx.StateAxes({nnx.Param: None, ...: 0}))(jnp.ones((3, 2)))


class One(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(3))


def test_a_new_variable_on_a_shared_argument_comes_out_unstacked(mode):
    m = One()

    def f(m, x):
        m.extra = nnx.BatchStat(jnp.arange(2.0))  # the same for every member
        return x * m.w[...]

    y = nnx.vmap(f, in_axes=(None, 0))(m, jnp.ones((4, 3)))
    assert y.shape == (4, 3)
    np.testing.assert_array_equal(m.extra[...], [0.0, 1.0])  # pyright: ignore[reportAttributeAccessIssue]
    assert type(m.extra) is nnx.BatchStat  # pyright: ignore[reportAttributeAccessIssue]


def test_a_new_per_member_value_on_a_shared_argument_is_an_error_and_writes_nothing():
    m = One()

    def g(m, x):
        m.w[...] = m.w[...] + 1.0
        m.extra = nnx.BatchStat(x[:2])  # differs per member
        return x

    with pytest.raises(
        nnx.transforms.AxisError,
        match=r"the new value at 'm/extra' of an argument has in_axes None .* Nothing was written",
    ):
        nnx.vmap(g, in_axes=(None, 0))(m, jnp.arange(12.0).reshape(4, 3))
    assert not hasattr(m, "extra")
    np.testing.assert_array_equal(m.w[...], np.ones(3))
