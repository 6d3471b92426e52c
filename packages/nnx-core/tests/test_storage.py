"""The public storage API (StorageMode, records, building from a stored value)."""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx
from nnx.core import _storage


@pytest.mark.parametrize(
    "kw, mode",
    [
        (dict(hijax=False, ref=False), nnx.StorageMode.PLAIN),
        (dict(ref=True), nnx.StorageMode.REF),
        (dict(hijax=True), nnx.StorageMode.HIJAX),
    ],
)
def test_mode_record_and_rebuild(kw, mode):
    v = nnx.Param(jnp.arange(3.0), tag="t", **kw)
    assert nnx.storage_mode(v) is mode
    rec = nnx.variable_record(v)
    assert rec.mode == mode and rec.mutable and rec.metadata["tag"] == "t"
    assert isinstance(rec, nnx.VariableRecord)
    w = nnx.variable_from_stored(nnx.Param, v.get_raw_value(), rec)
    assert type(w) is nnx.Param and nnx.storage_mode(w) is mode
    np.testing.assert_allclose(w[...], [0.0, 1.0, 2.0])
    assert nnx.is_storage_cell(v.get_raw_value()) == (mode is nnx.StorageMode.HIJAX)


def test_variable_trace_tells_inside_from_outside():
    from jax.extend.core import get_opaque_trace_state

    outer = nnx.Param(jnp.ones(2), hijax=False, ref=False)
    seen = {}

    @jax.jit
    def f(x):
        inner = nnx.Param(x, hijax=False, ref=False)
        now = get_opaque_trace_state(convention="nnx")
        seen["inner"] = nnx.variable_trace(inner) == now
        seen["outer"] = nnx.variable_trace(outer) == now
        return x

    f(jnp.ones(2))
    assert seen == {"inner": True, "outer": False}


def test_docstring_examples_run():
    failures, _ = doctest.testmod(_storage, raise_on_error=False)
    assert failures == 0
