"""nnx-core declares the JAX versions it supports, and runs on one of them.

``_hijax.py`` uses JAX internals (``jax._src.core.cur_qdd``, the effect registries), so
the range is one minor series; widening it means running this suite on the new JAX.
"""

import importlib.metadata
import re

import jax


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def _jax_requirement() -> str:
    reqs = importlib.metadata.requires("nnx-core") or []
    (req,) = [r for r in reqs if re.match(r"jax\b(?!lib)", r)]
    return req


def test_the_declared_jax_range_is_one_minor_series_from_0_10():
    spec = _jax_requirement().replace(" ", "")
    assert ">=0.10" in spec and "<0.11" in spec, spec


def test_the_installed_jax_is_inside_the_declared_range():
    spec = _jax_requirement()
    installed = _version(jax.__version__)
    for op, bound in re.findall(r"(>=|<=|<|>|==)\s*([\d.]+)", spec):
        b = _version(bound)
        n = len(b)
        ok = {
            ">=": installed[:n] >= b,
            "<": installed[:n] < b,
            "<=": installed[:n] <= b,
            ">": installed[:n] > b,
            "==": installed[:n] == b,
        }[op]
        assert ok, f"jax {jax.__version__} is outside nnx-core's declared range {spec!r}"
