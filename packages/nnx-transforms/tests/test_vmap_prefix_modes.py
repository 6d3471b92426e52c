"""nnx.vmap with in_axes from nnx.prefix gives the same numbers over ref and hijax
models as over plain ones (the prefix's Variables are plain in every mode)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import add_bias

import nnx

MODES = {"plain": dict(ref=False, hijax=False), "ref": dict(ref=True), "hijax": dict(hijax=True)}
W = jnp.arange(3 * 2 * 4, dtype=jnp.float32).reshape(3, 2, 4) / 10
X = jnp.arange(3 * 5 * 2, dtype=jnp.float32).reshape(3, 5, 2)


class Affine(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(W)
        self.b = nnx.Param(jnp.array([1.0, -1.0, 0.5, 2.0]))
        self.calls = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, x):
        self.calls[...] = self.calls[...] + 1.0
        return add_bias(x @ self.w[...], self.b)


def run(mode: str, prefix_mode: str):
    with nnx.var_defaults(**MODES[mode]):
        model = Affine()
    with nnx.var_defaults(**MODES[prefix_mode]):
        shape_donor = Affine()
    axes = nnx.prefix(shape_donor, {nnx.PathContains("w"): 0, ...: None})
    y = nnx.vmap(lambda m, x: m(x), in_axes=(axes, 0), out_axes=0)(model, X)
    return np.asarray(y), float(model.calls.get_value())


@pytest.mark.parametrize("mode", ["ref", "hijax"])
@pytest.mark.parametrize("prefix_mode", sorted(MODES))
def test_vmap_with_prefix_axes_matches_the_plain_model(mode, prefix_mode):
    expected = np.stack(
        [np.asarray(X[i]) @ np.asarray(W[i]) + [1.0, -1.0, 0.5, 2.0] for i in range(3)]
    )
    y_plain, calls_plain = run("plain", "plain")
    np.testing.assert_allclose(y_plain, expected, rtol=1e-6)
    y, calls = run(mode, prefix_mode)
    np.testing.assert_allclose(y, y_plain, rtol=1e-6)
    assert calls == calls_plain == 1.0  # the broadcast BatchStat was written once
