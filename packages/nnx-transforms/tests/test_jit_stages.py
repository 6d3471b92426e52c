"""Ahead-of-time stages of ``nnx.jit`` as Flax NNX has them: ``trace``, ``lower``,
``compile``, and the compiled program called with the nnx objects themselves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from transforms_testlib import Linear

import nnx


class Step(nnx.Module):
    def __init__(self):
        self.linear = Linear(2, 3, rngs=nnx.Rngs(0))
        self.calls = nnx.BatchStat(jnp.array(0))

    def __call__(self, x):
        self.calls[...] += 1
        return self.linear(x)


def _expected(m, x):
    return x @ m.linear.w[...] + m.linear.b[...][None, :]


@pytest.mark.parametrize("mode", ["plain", "ref", "hijax"])
def test_compiled_takes_the_objects_and_writes_their_updates(mode):
    kw = {} if mode == "plain" else {mode: True}
    with nnx.var_defaults(**kw):
        m = Step()
    x = jnp.ones((4, 2))
    f = nnx.jit(lambda m, x: m(x))
    compiled = f.lower(m, x).compile()
    np.testing.assert_allclose(compiled(m, x), _expected(m, x), rtol=1e-6)
    compiled(m, x)
    assert int(m.calls[...]) == 2
    # the same structure (and Variable mode) in another object: the same program
    with nnx.var_defaults(**kw):
        other = Step()
    compiled(other, x)
    assert int(other.calls[...]) == 1


def test_trace_gives_the_jaxpr_and_lowers():
    m = Step()
    x = jnp.ones((1, 2))
    traced = nnx.jit(lambda m, x: m(x)).trace(m, x)
    assert "dot_general" in str(traced.jaxpr)
    compiled = traced.lower().compile()
    np.testing.assert_allclose(compiled(m, x), _expected(m, x), rtol=1e-6)
    assert int(m.calls[...]) == 1  # tracing wrote nothing; the call did


def test_jax_stage_attributes_read_through():
    m = Step()
    lowered = nnx.jit(lambda m, x: m(x)).lower(m, jnp.ones((1, 2)))
    assert "dot_general" in lowered.as_text()
    compiled = lowered.compile()
    assert len(jax.tree.leaves(compiled.input_shardings)) >= 4
    assert "Compiled" in repr(compiled)


def test_compiled_refuses_another_structure():
    m = Step()
    compiled = nnx.jit(lambda m, x: m(x)).lower(m, jnp.ones((1, 2))).compile()
    with pytest.raises(TypeError, match="lowered for arguments of another structure"):
        compiled(Linear(2, 3, rngs=nnx.Rngs(0)), jnp.ones((1, 2)))
    assert int(m.calls[...]) == 0


def test_donated_and_static_arguments():
    m = Step()
    x = jnp.ones((1, 2))
    f = nnx.jit(lambda m, x, n: m(x) * n, static_argnums=2, donate_argnums=0)
    compiled = f.lower(m, x, 3).compile()
    np.testing.assert_allclose(compiled(m, x, 3), 3 * _expected(m, x), rtol=1e-6)
    assert int(m.calls[...]) == 1
    with pytest.raises(TypeError, match="another structure"):
        compiled(m, x, 4)  # another static value: another program
