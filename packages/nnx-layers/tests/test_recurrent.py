from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


def plus_bias(y, bias):
    """``y + bias`` with the bias broadcast to ``y``'s trailing axes explicitly (rank
    promotion raises in these tests)."""
    return y + jnp.broadcast_to(bias, jnp.shape(y))


TOL: dict[str, Any] = dict(rtol=1e-5, atol=1e-5)


def _lin(layer, x):
    out = x @ layer.kernel[...]
    return plus_bias(out, layer.bias[...]) if layer.bias is not None else out


def test_lstm_cell_matches_equations():
    cell = nnx.LSTMCell(3, 4, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 3))
    c = jax.random.normal(jax.random.key(2), (2, 4))
    h = jax.random.normal(jax.random.key(3), (2, 4))
    sig, tanh = jax.nn.sigmoid, jnp.tanh
    i = sig(_lin(cell.ii, x) + _lin(cell.hi, h))
    f = sig(_lin(cell.if_, x) + _lin(cell.hf, h))
    g = tanh(_lin(cell.ig, x) + _lin(cell.hg, h))
    o = sig(_lin(cell.io, x) + _lin(cell.ho, h))
    new_c = f * c + i * g
    new_h = o * tanh(new_c)
    (c2, h2), y = cell((c, h), x)
    np.testing.assert_allclose(c2, new_c, **TOL)
    np.testing.assert_allclose(h2, new_h, **TOL)
    np.testing.assert_allclose(y, new_h, **TOL)


def test_gru_cell_matches_equations():
    cell = nnx.GRUCell(3, 4, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 3))
    h = jax.random.normal(jax.random.key(2), (2, 4))
    assert cell.dense_i.bias is not None
    wi, bi, wh = cell.dense_i.kernel[...], cell.dense_i.bias[...], cell.dense_h.kernel[...]
    W = lambda j: wi[:, 4 * j : 4 * j + 4]  # noqa: E731
    U = lambda j: wh[:, 4 * j : 4 * j + 4]  # noqa: E731
    b = lambda j: bi[None, 4 * j : 4 * j + 4]  # noqa: E731  (explicit batch axis)
    r = jax.nn.sigmoid(x @ W(0) + b(0) + h @ U(0))
    z = jax.nn.sigmoid(x @ W(1) + b(1) + h @ U(1))
    n = jnp.tanh(x @ W(2) + b(2) + r * (h @ U(2)))
    expected = (1 - z) * n + z * h
    h2, y = cell(h, x)
    np.testing.assert_allclose(h2, expected, **TOL)
    np.testing.assert_allclose(y, expected, **TOL)


def _param_keys(n: int):
    rngs = nnx.Rngs(0)
    return [rngs.params() for _ in range(n)]


def test_gru_recurrent_kernel_is_one_orthogonal_matrix_as_in_flax():
    # Flax NNX: dense_h's (hidden, 3 * hidden) kernel is one orthogonal matrix, drawn
    # with the third key (dense_i's kernel and bias take the first two)
    cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
    k = cell.dense_h.kernel[...]
    np.testing.assert_allclose(k @ k.T, np.eye(4), atol=1e-5)
    keys = _param_keys(3)
    np.testing.assert_array_equal(k, nnx.initializers.orthogonal()(keys[2], (4, 12)))
    np.testing.assert_array_equal(
        cell.dense_i.kernel[...], nnx.initializers.lecun_normal()(keys[0], (3, 12))
    )


def test_simple_cell_layout_and_keys_as_in_flax():
    # Flax NNX: the recurrent projection first (no bias), then the input one with the bias
    cell = nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))
    assert cell.dense_h.bias is None and cell.dense_i.bias is not None
    keys = _param_keys(2)
    np.testing.assert_array_equal(
        cell.dense_h.kernel[...], nnx.initializers.orthogonal()(keys[0], (4, 4))
    )
    np.testing.assert_array_equal(
        cell.dense_i.kernel[...], nnx.initializers.lecun_normal()(keys[1], (3, 4))
    )


def test_simple_cell_matches_equation_and_residual():
    cell = nnx.SimpleCell(3, 4, residual=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 3))
    h = jax.random.normal(jax.random.key(2), (2, 4))
    expected = jnp.tanh(_lin(cell.dense_i, x) + _lin(cell.dense_h, h)) + h
    np.testing.assert_allclose(cell(h, x)[0], expected, **TOL)


def test_initialize_carry_shapes():
    assert [a.shape for a in nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)).initialize_carry((2, 5, 3))] == [
        (2, 5, 4)
    ] * 2
    assert nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)).initialize_carry((3,)).shape == (4,)


@pytest.mark.parametrize("make", [nnx.LSTMCell, nnx.GRUCell, nnx.SimpleCell])
def test_rnn_matches_python_loop_of_the_cell(make):
    cell = make(3, 4, rngs=nnx.Rngs(0))
    rnn = nnx.RNN(cell)
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    carry = cell.initialize_carry((2, 3))
    ys = []
    for t in range(5):
        carry, y = cell(carry, x[:, t])
        ys.append(y)
    final, out = rnn(x, return_carry=True)
    np.testing.assert_allclose(out, jnp.stack(ys, 1), **TOL)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), final, carry)


def test_rnn_time_major_reverse_keep_order():
    cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 2, 3))
    h = cell.initialize_carry((2, 3))
    ys: list[Any] = [None] * 5
    for t in reversed(range(5)):
        h, ys[t] = cell(h, x[t])
    out = nnx.RNN(cell, time_major=True, reverse=True, keep_order=True)(x)
    np.testing.assert_allclose(out, jnp.stack(ys), **TOL)
    flipped = nnx.RNN(cell, time_major=True, reverse=True)(x)
    np.testing.assert_allclose(flipped, jnp.stack(ys[::-1]), **TOL)


def test_rnn_seq_lengths_freeze_the_carry():
    cell = nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    lengths = jnp.array([6, 3])
    carry, _ = nnx.RNN(cell)(x, seq_lengths=lengths, return_carry=True)
    h = cell.initialize_carry((3,))
    for t in range(3):
        h, _ = cell(h, x[1, t])
    np.testing.assert_allclose(carry[1], h, **TOL)


def test_rnn_reverse_with_seq_lengths_starts_at_each_end():
    cell = nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    lengths = jnp.array([6, 4])
    carry, out = nnx.RNN(cell, reverse=True, keep_order=True, return_carry=True)(
        x, seq_lengths=lengths
    )
    h = cell.initialize_carry((3,))
    ys = {}
    for t in reversed(range(4)):
        h, ys[t] = cell(h, x[1, t])
    np.testing.assert_allclose(carry[1], h, **TOL)
    for t in range(4):
        np.testing.assert_allclose(out[1, t], ys[t], **TOL)


def test_flip_sequences_is_its_own_inverse():
    x = jnp.arange(10).reshape(5, 2)
    lengths = jnp.array([5, 3])
    f = nnx.flip_sequences(x, lengths)
    np.testing.assert_array_equal(f[:, 1], [5, 3, 1, 9, 7])  # valid part reversed, padding after
    np.testing.assert_array_equal(nnx.flip_sequences(f, lengths), x)


def test_bidirectional_concatenates_forward_and_backward():
    rngs = nnx.Rngs(0)
    fwd, bwd = nnx.RNN(nnx.GRUCell(3, 4, rngs=rngs)), nnx.RNN(nnx.GRUCell(3, 4, rngs=rngs))
    bi = nnx.Bidirectional(fwd, bwd)
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    # __call__ returns the outputs, or (carry, outputs) with return_carry=True
    out = cast(jax.Array, bi(x))
    assert out.shape == (2, 5, 8)
    np.testing.assert_allclose(out[..., :4], fwd(x), **TOL)
    np.testing.assert_allclose(out[..., 4:], bwd(x, reverse=True, keep_order=True), **TOL)


def test_rnn_grad_matches_python_loop_grad():
    cell = nnx.SimpleCell(2, 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (1, 4, 2))
    graphdef, params = nnx.split(cell)

    def loss_rnn(params):
        return jnp.sum(cast(jax.Array, nnx.RNN(nnx.merge(graphdef, params))(x)) ** 2)

    def loss_loop(params):
        c = nnx.merge(graphdef, params)
        h, total = c.initialize_carry((1, 2)), 0.0
        for t in range(4):
            h, y = c(h, x[:, t])
            total = total + jnp.sum(y**2)
        return total

    frozen = nnx.vars_as(params, mutable=False)
    g1, g2 = jax.grad(loss_rnn)(frozen), jax.grad(loss_loop)(frozen)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g1, g2)


class _NoisyCell(nnx.Module):
    """A cell with its own random stream: state that must advance through the scan."""

    def __init__(self, rngs):
        self.cell = nnx.SimpleCell(2, 2, rngs=rngs)
        self.noise = rngs["noise"].fork()
        self.num_feature_axes = 1

    def __call__(self, h, x):
        return self.cell(h, x + jax.random.normal(self.noise(), x.shape))

    def initialize_carry(self, shape, rngs=None):
        return self.cell.initialize_carry(shape, rngs)


@pytest.mark.parametrize("mode", [dict(), dict(hijax=True), dict(ref=True)])
def test_rnn_carries_cell_state_and_writes_it_back(mode):
    with nnx.var_defaults(**mode):
        cell = _NoisyCell(nnx.Rngs(0, noise=1))
    rnn = nnx.RNN(cell)
    x = jnp.zeros((1, 4, 2))
    out = cast(jax.Array, jax.jit(lambda m, x: m(x))(rnn, x) if mode else rnn(x))
    assert int(cell.noise.count[...]) == 4
    assert not np.allclose(out[:, 0], out[:, 1])


def test_rnn_rejects_non_cells():
    with pytest.raises(nnx.layers.LayerError, match="initialize_carry"):
        nnx.RNN(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


def _loop(cell, xs, length, *, backward=False):
    """Outputs at each valid step and the final carry, by a Python loop of the cell."""
    h = cell.initialize_carry(xs.shape[1:])
    ys = {}
    steps = range(length - 1, -1, -1) if backward else range(length)
    for t in steps:
        h, ys[t] = cell(h, xs[t])
    return ys, h


def test_bidirectional_matches_forward_and_backward_python_loops_with_lengths():
    rngs = nnx.Rngs(0)
    fwd_cell, bwd_cell = nnx.LSTMCell(3, 4, rngs=rngs), nnx.GRUCell(3, 2, rngs=rngs)
    bi = nnx.Bidirectional(nnx.RNN(fwd_cell), nnx.RNN(bwd_cell))
    x = jax.random.normal(jax.random.key(1), (2, 6, 3))
    lengths = jnp.array([6, 4])
    (carry_f, carry_b), out = bi(x, seq_lengths=lengths, return_carry=True)
    assert out.shape == (2, 6, 6)
    for b, n in enumerate([6, 4]):
        ys_f, h_f = _loop(fwd_cell, x[b], n)
        ys_b, h_b = _loop(bwd_cell, x[b], n, backward=True)
        for t in range(n):
            np.testing.assert_allclose(out[b, t], jnp.concatenate([ys_f[t], ys_b[t]]), **TOL)
        for got, want in zip(carry_f, h_f):
            np.testing.assert_allclose(got[b], want, **TOL)
        np.testing.assert_allclose(carry_b[b], h_b, **TOL)


def test_bidirectional_time_major_and_merge_fn():
    rngs = nnx.Rngs(0)
    fwd_cell, bwd_cell = nnx.SimpleCell(3, 4, rngs=rngs), nnx.SimpleCell(3, 4, rngs=rngs)
    bi = nnx.Bidirectional(nnx.RNN(fwd_cell), nnx.RNN(bwd_cell), merge_fn=jnp.add, time_major=True)
    x = jax.random.normal(jax.random.key(1), (5, 2, 3))  # (time, batch, features)
    ys_f, _ = _loop(fwd_cell, x, 5)
    ys_b, _ = _loop(bwd_cell, x, 5, backward=True)
    expected = jnp.stack([ys_f[t] + ys_b[t] for t in range(5)])
    np.testing.assert_allclose(bi(x), expected, **TOL)


def test_rnn_with_initial_carry_and_unroll_matches_loop():
    cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 3))
    c0 = (
        jax.random.normal(jax.random.key(2), (2, 4)),
        jax.random.normal(jax.random.key(3), (2, 4)),
    )
    carry, ys = c0, []
    for t in range(5):
        carry, y = cell(carry, x[:, t])
        ys.append(y)
    out = nnx.RNN(cell, unroll=2)(x, initial_carry=c0)
    np.testing.assert_allclose(out, jnp.stack(ys, 1), **TOL)


def test_lstm_custom_gate_and_activation_functions_are_used():
    cell = nnx.LSTMCell(
        2, 3, gate_fn=jax.nn.hard_sigmoid, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (4, 2))
    c, h = (
        jax.random.normal(jax.random.key(2), (4, 3)),
        jax.random.normal(jax.random.key(3), (4, 3)),
    )
    hs, relu = jax.nn.hard_sigmoid, jax.nn.relu
    i = hs(_lin(cell.ii, x) + _lin(cell.hi, h))
    f = hs(_lin(cell.if_, x) + _lin(cell.hf, h))
    g = relu(_lin(cell.ig, x) + _lin(cell.hg, h))
    o = hs(_lin(cell.io, x) + _lin(cell.ho, h))
    new_c = f * c + i * g
    (c2, h2), _ = cell((c, h), x)
    np.testing.assert_allclose(c2, new_c, **TOL)
    np.testing.assert_allclose(h2, o * relu(new_c), **TOL)


def test_gru_cell_partitioned_recurrent_kernel_stays_orthogonal():
    init = nnx.with_partitioning(nnx.initializers.orthogonal(), ("model", None))
    cell = nnx.GRUCell(3, 4, recurrent_kernel_init=init, rngs=nnx.Rngs(0))
    k = cell.dense_h.kernel
    assert k.shape == (4, 12) and k.sharding_names == ("model", None)
    np.testing.assert_allclose(k[...] @ k[...].T, np.eye(4), atol=1e-5)


def test_cells_with_bfloat16_params_run_and_keep_orthogonal_recurrent_kernels():
    cell = nnx.SimpleCell(3, 4, param_dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    k = np.asarray(cell.dense_h.kernel[...], np.float32)
    assert cell.dense_h.kernel.dtype == jnp.bfloat16
    np.testing.assert_allclose(k.T @ k, np.eye(4), atol=3e-2)


def test_a_subclassed_cell_names_itself_in_construction_errors():
    class PeepholeLSTM(nnx.LSTMCell):
        pass

    with pytest.raises(nnx.layers.LayerError, match=r"^PeepholeLSTM creates its parameters"):
        PeepholeLSTM(3, 4, rngs=None)  # type: ignore[arg-type]
    with pytest.raises(
        nnx.layers.LayerError, match=r"^PeepholeLSTM: `hidden_features` must be a positive int"
    ):
        PeepholeLSTM(3, 0, rngs=nnx.Rngs(0))
