import os
import sys

import pytest

import nnx

sys.path.insert(0, os.path.dirname(__file__))  # for seed_notebook (importlib import mode)


@pytest.fixture(autouse=True, scope="module")
def _restore_var_defaults():
    """Seeds change the process-global Variable mode (seed 002 sets hijax=True)."""
    before = nnx.var_defaults()
    yield
    nnx.var_defaults(hijax=before.hijax, ref=before.ref)
