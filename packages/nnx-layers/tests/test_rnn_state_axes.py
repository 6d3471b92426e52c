"""RNN(state_axes=..., broadcast_rngs=...): the cell's own state over time, as in Flax."""

from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class DropCell(nnx.RNNCellBase):
    """carry + dropout(x): the dropout mask of each step shows in the output."""

    def __init__(self, features, *, rngs):
        self.hidden_features, self.param_dtype = features, jnp.float32
        self.carry_init = None
        self.rngs = None
        self.drop = nnx.Dropout(0.5, rng_collection="noise", rngs=rngs)

    def __call__(self, carry, x):
        y = self.drop(x)
        return carry, y

    def initialize_carry(self, input_shape, rngs=None):
        return self._zero_state(input_shape, rngs)


def test_a_broadcast_stream_gives_every_step_the_same_mask_and_advances_once():
    x = jnp.ones((1, 6, 32))  # (batch, time, features)
    rnn = nnx.RNN(DropCell(32, rngs=nnx.Rngs(0, noise=1)), broadcast_rngs="noise")
    ys = rnn(x)
    masks = np.asarray(ys[0] != 0)
    assert masks.any() and not masks.all()
    assert all((masks[t] == masks[0]).all() for t in range(6))
    assert int(rnn.cell.drop.rngs.count[...]) == 1  # pyright: ignore[reportAttributeAccessIssue]
    # every step sees a stream holding the layer stream's first key, at count 0
    first = nnx.Rngs(0, noise=1).noise.fork()()  # the fork Dropout keeps, drawn once
    step_key = nnx.RngStream(first, tag="noise")()
    keep = jax.random.bernoulli(step_key, 0.5, (1, 32))
    np.testing.assert_array_equal(masks[0], np.asarray(keep[0]))


def test_other_streams_advance_at_every_step():
    x = jnp.ones((1, 6, 32))
    rnn = nnx.RNN(DropCell(32, rngs=nnx.Rngs(0, noise=1)))
    masks = np.asarray(rnn(x)[0] != 0)
    assert any((masks[t] != masks[0]).any() for t in range(1, 6))
    assert int(rnn.cell.drop.rngs.count[...]) == 6  # pyright: ignore[reportAttributeAccessIssue]


class StackedCell(nnx.RNNCellBase):
    """h' = h + x * w_t, with one weight row per step when w is scanned."""

    def __init__(self, steps, features):
        self.hidden_features, self.param_dtype = features, jnp.float32
        self.carry_init, self.rngs = None, None
        self.w = nnx.Param(jnp.arange(steps * features, dtype=jnp.float32).reshape(steps, features))
        self.seen = nnx.BatchStat(jnp.zeros(()))

    def __call__(self, carry, x):
        self.seen[...] += 1.0
        h = carry + x * self.w[...][None, :]  # explicit batch axis
        return h, h

    def initialize_carry(self, input_shape, rngs=None):
        return self._zero_state(input_shape, rngs)


def test_state_axes_scan_a_param_over_time_and_carry_the_rest():
    steps, f = 4, 3
    cell = StackedCell(steps, f)
    rnn = nnx.RNN(cell, state_axes={nnx.Param: 0, ...: nnx.Carry})
    x = jnp.arange(2 * steps * f, dtype=jnp.float32).reshape(2, steps, f)
    ys = rnn(x)
    w = np.arange(steps * f, dtype=np.float32).reshape(steps, f)
    expected = np.cumsum(np.asarray(x) * w[None], axis=1)  # by hand: h_t = sum x_s w_s
    np.testing.assert_allclose(ys, expected, rtol=1e-6)
    assert float(cell.seen[...]) == steps  # carried: one count per step
    np.testing.assert_array_equal(cell.w[...], w)  # the scanned Param comes back whole


def test_state_axes_none_is_the_same_at_every_step_and_a_write_is_an_error():
    cell = StackedCell(1, 3)
    cell.w = nnx.Param(jnp.ones(3))
    rnn = nnx.RNN(cell, state_axes={nnx.Param: None, ...: None})
    with pytest.raises(nnx.LayerError, match=r"BatchStat at seen .*state_axes maps to None"):
        rnn(jnp.ones((2, 4, 3)))


def test_state_axes_must_cover_every_variable():
    rnn = nnx.RNN(StackedCell(1, 3), state_axes={nnx.Param: None})
    with pytest.raises(nnx.LayerError, match=r"no filter matches the BatchStat at seen"):
        rnn(jnp.ones((2, 4, 3)))


def test_flax_recurrent_dropout_recipe():
    # Flax's recurrent-dropout example: a cell with its own Dropout stream, broadcast.
    class LSTMWithRecurrentDropout(nnx.OptimizedLSTMCell):
        def __init__(self, *, rngs, in_features, hidden_features, dropout_rate):
            super().__init__(
                in_features=in_features, hidden_features=hidden_features, rngs=rngs,
                keep_rngs=True,
            )
            self.recurrent_dropout = nnx.Dropout(
                rate=dropout_rate, rng_collection="recurrent_dropout", rngs=rngs
            )

        def __call__(self, carry, x):
            h, c = carry
            new_h, new_c = super().__call__((h, c), x)
            new_h = jax.tree.map(self.recurrent_dropout, new_h)
            return new_h, new_c

    rngs = nnx.Rngs(0, recurrent_dropout=1)
    cell = LSTMWithRecurrentDropout(
        in_features=32, hidden_features=64, dropout_rate=0.1, rngs=rngs
    )
    lstm = nnx.RNN(cell, broadcast_rngs="recurrent_dropout")
    assert lstm.cell.recurrent_dropout.rngs.count[...] == 0  # pyright: ignore[reportAttributeAccessIssue]
    y = cast(jax.Array, lstm(jnp.ones((8, 10, 32))))
    assert y.shape == (8, 10, 64)
    assert lstm.cell.recurrent_dropout.rngs.count[...] == 1  # pyright: ignore[reportAttributeAccessIssue]


def test_state_axes_knows_nnx_carry_by_identity_not_by_name():
    class Carry:  # a look-alike: only nnx.Carry (defined in nnx-core) marks the carry
        pass

    rnn = nnx.RNN(StackedCell(1, 3), state_axes={nnx.Param: None, ...: Carry})
    with pytest.raises(nnx.LayerError, match=r"Carry'> for seen is not an axis; use nnx.Carry"):
        rnn(jnp.ones((2, 1, 3)))
