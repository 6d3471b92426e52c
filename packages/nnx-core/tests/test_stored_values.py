"""nnx.read_stored / nnx.write_stored / nnx.stand_in: a Variable's storage read and
written without JAX operations (what nnx.jit hands ref and hijax Variables to JAX with)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx

MODES = {"plain": dict(hijax=False, ref=False), "ref": dict(ref=True), "hijax": dict(hijax=True)}


@pytest.mark.parametrize("mode", list(MODES))
def test_read_stored_is_the_value(mode):
    v = nnx.Param(jnp.arange(3.0), **MODES[mode])
    np.testing.assert_array_equal(nnx.read_stored(v), [0.0, 1.0, 2.0])
    t = nnx.Param({"a": jnp.ones(2), "b": jnp.zeros(())}, **MODES[mode])
    got = nnx.read_stored(t)
    assert set(got) == {"a", "b"} and all(isinstance(x, jax.Array) for x in got.values())


def test_read_stored_of_a_ref_is_its_buffer_and_v_getitem_is_a_copy():
    v = nnx.Param(jnp.arange(3.0), ref=True)
    buf = nnx.read_stored(v)
    assert buf.unsafe_buffer_pointer() == v.get_raw_value().unsafe_buffer_pointer()
    assert v[...].unsafe_buffer_pointer() != buf.unsafe_buffer_pointer()


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("checked", [True, False])
def test_write_stored_keeps_the_storage_object(mode, checked):
    v = nnx.Param(jnp.zeros(3), **MODES[mode])
    raw = v.get_raw_value()
    new = jax.jit(lambda x: x + 2.0)(jnp.zeros(3))
    nnx.write_stored(v, new, checked=checked)
    np.testing.assert_array_equal(v[...], [2.0, 2.0, 2.0])
    if mode != "plain":  # the same ref / cell, with the new content
        assert v.get_raw_value() is raw
    assert v.ref == (mode == "ref") and v.hijax == (mode == "hijax")


def test_write_stored_gives_a_ref_of_another_shape_a_new_ref():
    v = nnx.Param(jnp.zeros(3), ref=True)
    raw = v.get_raw_value()
    nnx.write_stored(v, jnp.ones((2, 2)))
    assert v.get_raw_value() is not raw and v.ref
    np.testing.assert_array_equal(v[...], np.ones((2, 2)))
    assert raw[...].shape == (3,)  # the old ref is left as it was


def test_write_stored_into_a_ref_tree():
    v = nnx.Param({"a": jnp.zeros(2), "b": jnp.zeros(())}, ref=True)
    nnx.write_stored(v, {"a": jnp.ones(2), "b": jnp.array(3.0)})
    np.testing.assert_array_equal(v["a"], [1.0, 1.0])
    assert float(v["b"]) == 3.0


def test_inside_a_trace_they_are_get_and_set_value():
    v = nnx.Param(jnp.zeros(2), ref=True)

    @jax.jit
    def f():
        nnx.write_stored(v, nnx.read_stored(v) + 1.0)

    f()
    f()
    np.testing.assert_array_equal(v[...], [2.0, 2.0])


@pytest.mark.parametrize("mode", ["ref", "hijax"])
def test_stand_in_routes_reads_and_writes_and_restores(mode):
    a = nnx.Param(jnp.zeros(()), **MODES[mode])
    b = nnx.Param(jnp.ones(()), hijax=False, ref=True)
    raw = a.get_raw_value()
    with nnx.stand_in([a], [b]):
        assert a.ref and float(a[...]) == 1.0
        a[...] = 5.0
    assert float(b[...]) == 5.0 and float(a[...]) == 0.0
    assert a.get_raw_value() is raw and a.hijax == (mode == "hijax")


def test_stand_in_restores_after_an_exception():
    a, b = nnx.Param(jnp.zeros(())), nnx.Param(jnp.ones(()))
    with pytest.raises(RuntimeError, match="boom"), nnx.stand_in([a], [b]):
        raise RuntimeError("boom")
    assert float(a[...]) == 0.0


def _mixed():
    return [
        nnx.Param(jnp.arange(3.0)),
        nnx.Param(jnp.arange(3.0) + 10.0, ref=True),
        nnx.Param(jnp.arange(3.0) + 20.0, hijax=True),
        nnx.Param({"a": jnp.ones(2)}, ref=True),  # a ref tree: the general path
    ]


def test_read_stored_many_is_read_stored_of_each():
    vs = _mixed()
    many = nnx.read_stored_many(vs)
    one = [nnx.read_stored(v) for v in vs]
    assert len(many) == 4
    for a, b in zip(many, one):
        jax.tree.map(np.testing.assert_array_equal, a, b)
    assert many[1].unsafe_buffer_pointer() == vs[1].get_raw_value().unsafe_buffer_pointer()


@pytest.mark.parametrize("checked", [True, False])
def test_write_stored_many_keeps_refs_and_cells(checked):
    vs = _mixed()
    raws = [v.get_raw_value() for v in vs]
    new = [jnp.full(3, 1.0), jnp.full(3, 2.0), jnp.full(3, 3.0), {"a": jnp.full(2, 4.0)}]
    nnx.write_stored_many(vs, new, checked=checked)
    for v, x in zip(vs, new):
        jax.tree.map(np.testing.assert_array_equal, v[...], x)
    assert vs[1].get_raw_value() is raws[1] and vs[2].get_raw_value() is raws[2]


def test_write_stored_many_gives_a_ref_of_another_shape_a_new_ref():
    v = nnx.Param(jnp.zeros(3), ref=True)
    old = v.get_raw_value()
    nnx.write_stored_many([v], [jnp.ones((2, 2))])
    assert v.get_raw_value() is not old and v[...].shape == (2, 2)


def test_the_many_forms_inside_a_trace_are_get_and_set_value():
    v = nnx.Param(jnp.zeros(2), ref=True)

    @jax.jit
    def f():
        (x,) = nnx.read_stored_many([v])
        nnx.write_stored_many([v], [x + 5.0])

    f()
    np.testing.assert_array_equal(v[...], [5.0, 5.0])


# -- nnx.StoredBatch: the same reads and writes for a fixed list of Variables ------------
BATCHES = {
    "hijax": [dict(hijax=True)] * 3,
    "ref": [dict(ref=True)] * 3,
    "mixed": [dict(hijax=True), dict(ref=True), dict(hijax=False, ref=False)],
}


@pytest.mark.parametrize("kinds", list(BATCHES))
@pytest.mark.parametrize("checked", [True, False])
def test_stored_batch_reads_and_writes_as_the_one_by_one_forms(kinds, checked):
    vs = [nnx.Param(jnp.full(2, float(i)), **kw) for i, kw in enumerate(BATCHES[kinds])]
    batch = nnx.StoredBatch(vs)
    assert len(batch) == 3 and batch.variables == tuple(vs)
    for got, v in zip(batch.read(), vs):
        assert got is nnx.read_stored(v)
    raws = [v.get_raw_value() for v in vs]
    batch.write([jnp.full(2, 10.0 + i) for i in range(3)], checked=checked)
    assert [float(v[...][0]) for v in vs] == [10.0, 11.0, 12.0]
    for v, raw in zip(vs, raws):  # refs and cells keep their storage object
        if not (v.ref is False and v.hijax is False):
            assert v.get_raw_value() is raw


def test_stored_batch_follows_a_variable_whose_storage_was_replaced():
    # the batch holds the Variables: a cell or ref put in later is the one read and written
    h = nnx.Param(jnp.zeros(2), hijax=True)
    r = nnx.Param(jnp.zeros(2), ref=True)
    hb, rb = nnx.StoredBatch([h]), nnx.StoredBatch([r])
    h.set_raw_value(nnx.Param(jnp.full(2, 7.0), hijax=True).get_raw_value())
    nnx.write_stored(r, jnp.ones((3, 3)))  # another shape: a new ref
    assert float(hb.read()[0][0]) == 7.0 and rb.read()[0].shape == (3, 3)
    hb.write([jnp.full(2, 8.0)])
    rb.write([jnp.full((3, 3), 9.0)], checked=False)
    assert float(h[...][0]) == 8.0 and float(r[...][0, 0]) == 9.0
    # a ref Variable whose value became a tree of refs: the general form
    r.set_raw_value({"a": nnx.new_ref(jnp.zeros(1))})
    assert rb.read()[0]["a"].tolist() == [0.0]
    rb.write([{"a": jnp.ones(1)}], checked=False)
    assert r["a"].tolist() == [1.0]


def test_stored_batch_inside_a_trace_reads_and_writes_values():
    vs = [nnx.Param(jnp.zeros(2), hijax=True), nnx.Param(jnp.zeros(2), ref=True)]
    batch = nnx.StoredBatch(vs)

    @jax.jit
    def f():
        batch.write([x + 1.0 for x in batch.read()])

    f()
    f()
    assert [v[...].tolist() for v in vs] == [[2.0, 2.0], [2.0, 2.0]]



def test_an_empty_stored_batch_reads_and_writes_nothing():
    batch = nnx.StoredBatch([])
    assert len(batch) == 0 and batch.read() == []
    batch.write([])
