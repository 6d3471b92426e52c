"""Fixtures of the nnx-transforms tests; the small layers are in transforms_testlib.py."""

from __future__ import annotations

import os
import sys

import jax
import pytest

import nnx

jax.config.update("jax_numpy_rank_promotion", "raise")  # no silent broadcasts (root conftest.py)

sys.path.insert(0, os.path.dirname(__file__))  # for transforms_testlib (importlib mode)

MODES = {
    "plain": dict(hijax=False, ref=False),
    "ref": dict(ref=True),
    "hijax": dict(hijax=True),
}


@pytest.fixture(autouse=True)
def _restore_var_defaults():
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)


@pytest.fixture(params=list(MODES))
def mode(request):
    """Run the test once per Variable storage mode; Variables made inside use it."""
    with nnx.var_defaults(**MODES[request.param]):
        yield request.param
