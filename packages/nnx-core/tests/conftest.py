import os
import sys

import jax
import pytest

import nnx

jax.config.update("jax_numpy_rank_promotion", "raise")  # no silent broadcasts (root conftest.py)

sys.path.insert(0, os.path.dirname(__file__))  # for core_helpers (tests use importlib mode)


@pytest.fixture(autouse=True)
def _restore_var_defaults():
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)


@pytest.fixture
def linear():
    from core_helpers import Linear

    return Linear(2, 3, rngs=nnx.Rngs(0))
