"""The nnx-core tests run with implicit rank promotion as an error (conftest.py)."""

import jax.numpy as jnp
import pytest


def test_implicit_rank_promotion_raises():
    with pytest.raises(ValueError, match="jax_numpy_rank_promotion='raise'"):
        jnp.ones((2, 3)) + jnp.ones(3)
    assert (jnp.ones((2, 3)) + jnp.ones((1, 3))).shape == (2, 3)  # explicit: fine
