import jax
import pytest

import nnx

jax.config.update("jax_numpy_rank_promotion", "raise")  # no silent broadcasts (root conftest.py)


@pytest.fixture(autouse=True)
def _restore_var_defaults():
    """Tests that switch the Variable mode must not leak it into the next test."""
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)


@pytest.fixture
def key():
    return jax.random.key(0)
