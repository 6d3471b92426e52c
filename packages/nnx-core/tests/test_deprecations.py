"""nnx.deprecations.deprecated (Flax NNX's flax.nnx.deprecations) and nnx.require_tree."""

import inspect
import warnings

import jax.numpy as jnp
import pytest

import nnx

deprecated = nnx.deprecated


def new_api(x: int, *, scale: int = 2) -> int:
    """Multiply ``x`` by ``scale``."""
    return x * scale


def test_each_call_warns_and_delegates():
    old_api = deprecated(new_api)
    for _ in range(2):  # every call, not just the first
        with pytest.warns(DeprecationWarning, match=r"deprecated\. Use new_api instead"):
            assert old_api(3, scale=4) == 12


def test_warning_points_at_the_caller():
    old_api = deprecated(new_api)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old_api(1)
    assert caught[0].filename == __file__


def test_keeps_signature_and_prepends_a_notice():
    old_api = deprecated(new_api)
    assert old_api.__name__ == "new_api"
    assert inspect.signature(old_api) == inspect.signature(new_api)
    assert old_api.__doc__ is not None
    assert old_api.__doc__.startswith(".. deprecated::\n   Use :func:`new_api` instead.\n\n")
    assert old_api.__doc__.endswith("Multiply ``x`` by ``scale``.")


def test_not_callable_is_a_type_error():
    with pytest.raises(TypeError, match="needs the function that replaces the old name, got int 3"):
        deprecated(3)  # pyright: ignore[reportArgumentType]


def test_flat_name_and_module_path_are_one_function():
    import importlib

    assert importlib.import_module("nnx.deprecations").deprecated is nnx.deprecated


class Pair(nnx.Module):
    def __init__(self, a, b):
        self.a, self.b = a, b


def test_require_tree_passes_a_tree_and_names_both_paths_otherwise():
    w = nnx.Param(jnp.ones(2))
    assert nnx.require_tree(Pair(w, nnx.Param(jnp.ones(2))), "mylib.f") is None
    with pytest.raises(nnx.AliasingError, match=r"^mylib\.f: graph=False .* at 'a' and at 'b'"):
        nnx.require_tree(Pair(w, w), "mylib.f")
    inner = Pair(1, 2)
    with pytest.raises(nnx.AliasingError, match=r"at 'a' and at 'b'\. Pass graph=True"):
        nnx.require_tree(Pair(inner, inner), "mylib.f")
