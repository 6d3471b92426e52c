"""Errors that name the thing: a wrong attention mask, a wrong recurrent carry."""

import jax.numpy as jnp
import pytest

import nnx
from nnx.layers import ShapeError


def test_attention_mask_of_wrong_shape_names_the_mask_and_the_expected_shape():
    attn = nnx.MultiHeadAttention(num_heads=2, in_features=4, rngs=nnx.Rngs(0))
    x = jnp.ones((3, 5, 4))
    bad = jnp.ones((3, 1, 5, 6), bool)  # kv length 6, inputs have 5
    with pytest.raises(
        ShapeError, match=r"mask has shape \(3, 1, 5, 6\).*weights' shape \(3, 2, 5, 5\)"
    ):
        attn(x, mask=bad)
    with pytest.raises(ShapeError, match=r"MultiHeadAttention: the attention mask"):
        attn(x, mask=jnp.ones((2, 1, 5, 5), bool))  # batch 2 against 3
    # a mask that broadcasts is fine
    assert attn(x, mask=nnx.make_causal_mask(x[..., 0])).shape == (3, 5, 4)


def test_dot_product_attention_mask_of_wrong_shape_is_named():
    q = jnp.ones((2, 3, 1, 4))
    with pytest.raises(ShapeError, match=r"dot_product_attention: the attention mask has shape"):
        nnx.dot_product_attention(q, q, q, mask=jnp.ones((2, 1, 3, 7), bool))


@pytest.mark.parametrize("cls", [nnx.LSTMCell, nnx.OptimizedLSTMCell])
def test_lstm_carry_of_wrong_shape_names_carry_and_hidden_features(cls):
    cell = cls(3, 4, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3))
    bad = (jnp.zeros((2, 5)), jnp.zeros((2, 5)))
    with pytest.raises(
        ShapeError,
        match=r"hidden_features=4\): the carry c has shape \(2, 5\).*hidden_features=4 "
        r"\(expected \(2, 4\).*initialize_carry\(\(2, 3\)\)",
    ):
        cell(bad, x)
    with pytest.raises(ShapeError, match=r"the carry must be a pair \(c, h\)"):
        cell(jnp.zeros((2, 4)), x)


@pytest.mark.parametrize("cls", [nnx.GRUCell, nnx.SimpleCell])
def test_single_state_cells_name_the_carry(cls):
    cell = cls(3, 4, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 3))
    with pytest.raises(ShapeError, match=r"the carry has shape \(2, 7\).*hidden_features=4"):
        cell(jnp.zeros((2, 7)), x)
    with pytest.raises(ShapeError, match=r"batch axes \(5,\) do not match the inputs' \(2,\)"):
        cell(jnp.zeros((5, 4)), x)
    with pytest.raises(ShapeError, match=r"the carry is one array h"):
        cell((jnp.zeros((2, 4)), jnp.zeros((2, 4))), x)
