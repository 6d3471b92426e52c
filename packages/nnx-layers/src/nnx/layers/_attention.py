"""Attention: ``dot_product_attention``, mask helpers and ``MultiHeadAttention`` (with a decode cache)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from nnx.core import Cache, Intermediate, Module, Rngs, RngStream
from nnx.layers._common import (
    Dtype,
    Initializer,
    PrecisionLike,
    first_from,
    promote_dtype,
    require_rngs,
)
from nnx.layers._errors import LayerError, MissingRngsError, ShapeError
from nnx.layers._linear import LinearGeneral, default_bias_init, default_kernel_init
from nnx.layers._normalization import LayerNorm


def dot_product_attention_weights(
    query: jax.Array,
    key: jax.Array,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Dtype | None = None,
    precision: PrecisionLike = None,
    module: Module | None = None,
    promote_dtype: Callable[..., Any] = promote_dtype,
    is_causal: bool = False,
) -> jax.Array:
    """``softmax(q k^T / sqrt(depth) + bias)`` with masked entries removed, shape ``(..., heads, q, kv)``.

    Example::

        q, k = jnp.ones((2, 5, 4, 8)), jnp.ones((2, 7, 4, 8))  # (batch, len, heads, depth)
        w = nnx.dot_product_attention_weights(q, k)
        print(w.shape)  # (2, 4, 5, 7)

    ``mask`` is boolean (True = attend), broadcastable to ``(..., heads, q, kv)``.
    With ``module`` the weights are sown as ``module.attention_weights``
    (an ``nnx.Intermediate``). ``is_causal=True`` also masks every key position after
    the query position. When key has fewer heads than query (grouped-query attention),
    query head ``j`` attends with key head ``j // (q_heads // kv_heads)``.
    ``promote_dtype(arrays, dtype=...)`` casts ``(query, key)`` before the product.
    """
    query, key = promote_dtype((query, key), dtype=dtype)
    dtype = query.dtype
    if (
        query.ndim != key.ndim
        or query.shape[-1] != key.shape[-1]
        or query.shape[:-3] != key.shape[:-3]
    ):
        raise ShapeError(
            "dot_product_attention: query (..., q, heads, depth) and key (..., kv, heads, depth) "
            f"must agree on batch and depth; got {query.shape} and {key.shape}."
        )
    key = _repeat_kv_heads(key, query.shape[-2], "key")
    query = query / jnp.sqrt(jnp.asarray(query.shape[-1], dtype))
    weights = jnp.einsum("...qhd,...khd->...hqk", query, key, precision=precision)
    if bias is not None:
        weights = weights + bias
    if mask is not None:
        check_mask_shape(mask, weights.shape, "dot_product_attention")
    if is_causal:
        q_len, kv_len = weights.shape[-2:]
        causal = jnp.tril(jnp.ones((q_len, kv_len), jnp.bool_))
        mask = causal if mask is None else jnp.logical_and(mask, causal)
    if mask is not None:
        weights = jnp.where(mask, weights, jnp.finfo(dtype).min)
    weights = jax.nn.softmax(weights).astype(dtype)
    if module is not None:
        module.sow(Intermediate, "attention_weights", weights)
    if not deterministic and dropout_rate > 0.0:
        if dropout_rng is None:
            raise MissingRngsError(
                "dot_product_attention: dropout_rate > 0 and deterministic=False need a "
                "dropout_rng (a key)."
            )
        keep = 1.0 - dropout_rate
        if broadcast_dropout:  # one mask for the whole batch and all heads
            shape = (1,) * (weights.ndim - 2) + weights.shape[-2:]
        else:
            shape = weights.shape
        kept = jax.random.bernoulli(dropout_rng, keep, shape)
        weights = weights * (kept.astype(dtype) / jnp.asarray(keep, dtype))
    return weights


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    bias: jax.Array | None = None,
    mask: jax.Array | None = None,
    broadcast_dropout: bool = True,
    dropout_rng: jax.Array | None = None,
    dropout_rate: float = 0.0,
    deterministic: bool = False,
    dtype: Dtype | None = None,
    precision: PrecisionLike = None,
    module: Module | None = None,
    promote_dtype: Callable[..., Any] = promote_dtype,
    is_causal: bool = False,
) -> jax.Array:
    """Scaled dot-product attention: ``softmax(q k^T / sqrt(d)) v`` per head.

    Example::

        q = k = v = jnp.ones((2, 5, 4, 8))            # (batch, length, heads, depth)
        out = nnx.dot_product_attention(q, k, v)      # (2, 5, 4, 8)
        causal = nnx.make_causal_mask(jnp.ones((2, 5)))
        out = nnx.dot_product_attention(q, k, v, mask=causal)

    Shapes: query ``(..., q, heads, depth)``, key ``(..., kv, heads, depth)``, value
    ``(..., kv, heads, v_depth)``; the output is ``(..., q, heads, v_depth)``. Key and
    value may have fewer heads than query (grouped-query attention; ``q_heads`` must be
    a multiple); ``mask`` is boolean, broadcastable to ``(..., heads, q, kv)``;
    ``is_causal=True`` adds a causal mask.
    """
    query, key, value = promote_dtype((query, key, value), dtype=dtype)
    if key.shape[:-1] != value.shape[:-1]:
        raise ShapeError(
            f"dot_product_attention: key {key.shape} and value {value.shape} must agree on all "
            "axes but the last."
        )
    weights = dot_product_attention_weights(
        query,
        key,
        bias,
        mask,
        broadcast_dropout,
        dropout_rng,
        dropout_rate,
        deterministic,
        query.dtype,
        precision,
        module,
        promote_dtype,
        is_causal,
    )
    value = _repeat_kv_heads(value, query.shape[-2], "value")
    return jnp.einsum("...hqk,...khd->...qhd", weights, value, precision=precision)


def _repeat_kv_heads(x: jax.Array, q_heads: int, name: str) -> jax.Array:
    """Grouped-query attention: repeat each of the kv heads for its group of query heads."""
    kv_heads = x.shape[-2]
    if kv_heads == q_heads:
        return x
    if q_heads % kv_heads:
        raise ShapeError(
            f"dot_product_attention: query has {q_heads} heads and {name} has {kv_heads}; for "
            f"grouped-query attention the query heads must be a multiple of the {name} heads."
        )
    return jnp.repeat(x, q_heads // kv_heads, axis=-2)


def check_mask_shape(mask: Any, weights_shape: tuple[int, ...], who: str) -> None:
    """Raise, naming ``who``, unless ``mask`` broadcasts to the attention weights' shape."""
    mshape = tuple(jnp.shape(mask))
    fits = len(mshape) <= len(weights_shape) and all(
        m in (1, w) for m, w in zip(mshape[::-1], weights_shape[::-1])
    )
    if not fits:
        raise ShapeError(
            f"{who}: the attention mask has shape {mshape}, which does not broadcast to the "
            f"attention weights' shape {weights_shape} (batch..., num_heads, q_length, "
            "kv_length). Build it with nnx.make_attention_mask / nnx.make_causal_mask, "
            "which give (batch..., 1, q_length, kv_length)."
        )


def make_attention_mask(
    query_input: jax.Array,
    key_input: jax.Array,
    pairwise_fn: Callable[..., Any] = jnp.multiply,
    extra_batch_dims: int = 0,
    dtype: Dtype = jnp.float32,
) -> jax.Array:
    """A ``(..., 1, q, kv)`` mask from per-position query and key values.

    Example::

        tokens = jnp.array([[5, 3, 0]])            # 0 = padding
        mask = nnx.make_attention_mask(tokens > 0, tokens > 0)   # (1, 1, 3, 3)
    """
    mask = pairwise_fn(jnp.expand_dims(query_input, -1), jnp.expand_dims(key_input, -2))
    mask = jnp.expand_dims(mask, -3)
    mask = jnp.expand_dims(mask, tuple(range(extra_batch_dims)))
    return mask.astype(dtype)


def make_causal_mask(
    x: jax.Array, extra_batch_dims: int = 0, dtype: Dtype = jnp.float32
) -> jax.Array:
    """A ``(..., 1, len, len)`` mask where position i attends to positions j <= i.

    Example::

        mask = nnx.make_causal_mask(jnp.ones((2, 4)))   # (2, 1, 4, 4), lower triangular
    """
    idx = jnp.broadcast_to(jnp.arange(x.shape[-1], dtype=jnp.int32), x.shape)
    return make_attention_mask(idx, idx, jnp.greater_equal, extra_batch_dims, dtype)


def combine_masks(*masks: jax.Array | None, dtype: Dtype = jnp.float32) -> jax.Array | None:
    """The logical AND of the masks that are not None (None if all are)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    if any(m.ndim != present[0].ndim for m in present):
        raise ShapeError(
            f"combine_masks: masks must have the same rank, got {[m.shape for m in present]}."
        )
    mask = present[0]
    for m in present[1:]:
        mask = jnp.logical_and(mask, m)
    return mask.astype(dtype)


class MultiHeadAttention(Module):
    """Multi-head attention: self attention, cross attention, and decoding with a cache.

    Example::

        attn = nnx.MultiHeadAttention(
            num_heads=2, in_features=8, decode=False, rngs=nnx.Rngs(0)
        )
        x, context = jnp.ones((3, 5, 8)), jnp.ones((3, 6, 8))  # (batch, len, 8)
        y = attn(x)                               # self attention
        y = attn(x, context)                      # cross attention (keys/values from context)
        y = attn(x, mask=nnx.make_causal_mask(x[..., 0]))
        print(y.shape)  # (3, 5, 8)

        # autoregressive decoding: one token per call
        attn.init_cache((3, 10, 8))               # (batch, max_len, features)
        y_t = attn(x[:, :1], decode=True)         # one step: (batch, 1, 8)

    Submodules ``query``, ``key``, ``value`` (``LinearGeneral`` to ``(heads, head_dim)``)
    and ``out`` (back to ``out_features``). Attention dropout (``dropout_rate``) uses the
    layer's own stream (``rngs['dropout'].fork()``) or ``rngs`` given per call, and is
    off when ``deterministic`` (``eval()``).

    ``num_kv_heads`` (default ``num_heads``) gives key and value fewer heads
    (grouped-query attention). ``kernel_metadata`` / ``bias_metadata`` go to the query,
    key and value projections, ``out_kernel_metadata`` / ``out_bias_metadata`` (default:
    the shared ones) to ``out``, ``query_ln_scale_metadata`` / ``key_ln_scale_metadata``
    to the QK-norm scales. A mask must broadcast to ``(batch..., num_heads, q_length,
    kv_length)``; ``is_causal=True`` adds a causal mask.
    """

    def __init__(
        self,
        num_heads: int,
        in_features: int,
        qkv_features: int | None = None,
        out_features: int | None = None,
        num_kv_heads: int | None = None,
        in_kv_features: int | None = None,
        *,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        broadcast_dropout: bool = True,
        dropout_rate: float = 0.0,
        deterministic: bool | None = None,
        precision: PrecisionLike = None,
        kernel_init: Initializer = default_kernel_init,
        out_kernel_init: Initializer | None = None,
        bias_init: Initializer = default_bias_init,
        out_bias_init: Initializer | None = None,
        use_bias: bool = True,
        attention_fn: Callable[..., jax.Array] = dot_product_attention,
        decode: bool | None = None,
        normalize_qk: bool = False,
        qkv_promote_dtype: Callable[..., Any] = promote_dtype,
        out_promote_dtype: Callable[..., Any] = promote_dtype,
        ln_promote_dtype: Callable[..., Any] = promote_dtype,
        qkv_dot_general: Callable[..., jax.Array] | None = None,
        out_dot_general: Callable[..., jax.Array] | None = None,
        qkv_dot_general_cls: Any = None,
        out_dot_general_cls: Any = None,
        rngs: Rngs,
        keep_rngs: bool = True,
        kernel_metadata: Mapping[str, Any] | None = None,
        out_kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
        out_bias_metadata: Mapping[str, Any] | None = None,
        query_ln_scale_metadata: Mapping[str, Any] | None = None,
        key_ln_scale_metadata: Mapping[str, Any] | None = None,
    ):
        require_rngs(rngs, "MultiHeadAttention")
        qkv_features = qkv_features or in_features
        out_features = out_features or in_features
        in_kv_features = in_kv_features or in_features
        num_kv_heads = num_kv_heads or num_heads
        if qkv_features % num_heads:
            raise ShapeError(
                f"MultiHeadAttention: qkv_features ({qkv_features}) must be divisible by "
                f"num_heads ({num_heads})."
            )
        if num_heads % num_kv_heads:
            raise ShapeError(
                f"MultiHeadAttention: num_heads ({num_heads}) must be divisible by "
                f"num_kv_heads ({num_kv_heads}) (grouped-query attention)."
            )
        head_dim = qkv_features // num_heads
        proj = functools.partial(
            LinearGeneral,
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=kernel_init,
            bias_init=bias_init,
            use_bias=use_bias,
            precision=precision,
            promote_dtype=qkv_promote_dtype,
            dot_general=qkv_dot_general,
            dot_general_cls=qkv_dot_general_cls,
            kernel_metadata=kernel_metadata,
            bias_metadata=bias_metadata,
            rngs=rngs,
        )
        self.query = proj(in_features, (num_heads, head_dim))
        self.key = proj(in_kv_features, (num_kv_heads, head_dim))
        self.value = proj(in_kv_features, (num_kv_heads, head_dim))
        if normalize_qk:
            self.query_ln = LayerNorm(
                head_dim,
                use_bias=False,
                dtype=dtype,
                param_dtype=param_dtype,
                promote_dtype=ln_promote_dtype,
                scale_metadata=query_ln_scale_metadata,
                rngs=rngs,
            )
            self.key_ln = LayerNorm(
                head_dim,
                use_bias=False,
                dtype=dtype,
                param_dtype=param_dtype,
                promote_dtype=ln_promote_dtype,
                scale_metadata=key_ln_scale_metadata,
                rngs=rngs,
            )
        else:
            self.query_ln = None
            self.key_ln = None
        self.out = LinearGeneral(
            (num_heads, head_dim),
            out_features,
            axis=(-2, -1),
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=out_kernel_init or kernel_init,
            bias_init=out_bias_init or bias_init,
            use_bias=use_bias,
            precision=precision,
            promote_dtype=out_promote_dtype,
            dot_general=out_dot_general,
            dot_general_cls=out_dot_general_cls,
            kernel_metadata=out_kernel_metadata or kernel_metadata,
            bias_metadata=out_bias_metadata or bias_metadata,
            rngs=rngs,
        )
        self.num_kv_heads = num_kv_heads
        self.qkv_promote_dtype = qkv_promote_dtype
        self.out_promote_dtype = out_promote_dtype
        self.ln_promote_dtype = ln_promote_dtype
        self.use_bias = use_bias
        self.rngs = None
        if keep_rngs and dropout_rate > 0:
            if isinstance(rngs, Rngs):
                self.rngs = rngs["dropout"].fork()
            elif isinstance(rngs, RngStream):
                self.rngs = rngs.fork()
        self.num_heads = num_heads
        self.in_features = in_features
        self.qkv_features = qkv_features
        self.out_features = out_features
        self.in_kv_features = in_kv_features
        self.head_dim = head_dim
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.broadcast_dropout = broadcast_dropout
        self.dropout_rate = dropout_rate
        self.deterministic = deterministic
        self.precision = precision
        self.attention_fn = attention_fn
        self.decode = decode
        self.normalize_qk = normalize_qk
        self.cached_key: Cache[jax.Array] | None = None
        self.cached_value: Cache[jax.Array] | None = None
        self.cache_index: Cache[jax.Array] | None = None

    def init_cache(self, input_shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> None:
        """Create zeroed ``Cache`` Variables for decoding inputs of ``input_shape`` (batch, max_len, features)."""
        shape = tuple(input_shape[:-1]) + (self.num_kv_heads, self.head_dim)
        self.cached_key = Cache(jnp.zeros(shape, dtype))
        self.cached_value = Cache(jnp.zeros(shape, dtype))
        self.cache_index = Cache(jnp.array(0, dtype=jnp.int32))

    def set_view(
        self,
        deterministic: bool | None = None,
        decode: bool | None = None,
        batch_size: int | tuple[int, ...] | None = None,
        max_length: int | None = None,
    ) -> None:
        """Set this layer's modes for :func:`nnx.view` (``nnx.view(model, decode=True, ...)``).

        Args:
          deterministic: if True, no attention dropout; if False, dropout at
            ``dropout_rate``. None leaves the mode unchanged.
          decode: if True, each call is one autoregressive step that reads and extends
            the key/value cache; if False, ordinary attention. None leaves it unchanged.
          batch_size: with ``max_length``, (re)create a zeroed cache for inputs of
            batch shape ``batch_size`` (an int or a tuple), as ``init_cache`` does.
          max_length: with ``batch_size``, the length of the cache to create.
        """
        if deterministic is not None:
            self.deterministic = deterministic
        if decode is not None:
            self.decode = decode
        if (batch_size is None) != (max_length is None):
            raise LayerError(
                "MultiHeadAttention.set_view: batch_size and max_length create the decode "
                f"cache together; got batch_size={batch_size!r}, max_length={max_length!r}. "
                "Pass both, or neither."
            )
        if batch_size is not None and max_length is not None:
            batch = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
            dtype = self.dtype if self.dtype is not None else jnp.float32
            self.init_cache((*batch, max_length, self.in_features), dtype)

    def __call__(
        self,
        inputs_q: jax.Array,
        inputs_k: jax.Array | None = None,
        inputs_v: jax.Array | None = None,
        *,
        mask: jax.Array | None = None,
        deterministic: bool | None = None,
        rngs: Rngs | RngStream | jax.Array | None = None,
        sow_weights: bool = False,
        decode: bool | None = None,
        is_causal: bool = False,
        out_sharding: Any = None,
        qkv_sharding: Any = None,
    ) -> jax.Array:
        if inputs_k is None:
            if inputs_v is not None:
                raise LayerError(
                    "MultiHeadAttention: got inputs_v without inputs_k; pass both (cross "
                    "attention) or neither (self attention)."
                )
            inputs_k = inputs_q
        if inputs_v is None:
            inputs_v = inputs_k
        for name, x, n in (
            ("inputs_q", inputs_q, self.in_features),
            ("inputs_k", inputs_k, self.in_kv_features),
            ("inputs_v", inputs_v, self.in_kv_features),
        ):
            if x.shape[-1] != n:
                raise ShapeError(
                    f"MultiHeadAttention: {name} must have {n} features on its last axis, got shape {x.shape}."
                )
        query = self.query(inputs_q, out_sharding=qkv_sharding)
        key = self.key(inputs_k, out_sharding=qkv_sharding)
        value = self.value(inputs_v, out_sharding=qkv_sharding)
        decoding = first_from(decode, self.decode, default=False)
        if mask is not None and not decoding:
            # (batch..., heads, q_length, kv_length), the shape of the attention weights
            expected = query.shape[:-3] + (self.num_heads, query.shape[-3], key.shape[-3])
            check_mask_shape(mask, expected, "MultiHeadAttention")
        if self.normalize_qk:
            assert self.query_ln is not None and self.key_ln is not None  # built with them
            query = self.query_ln(query)
            key = self.key_ln(key)

        if decoding:
            key, value, mask = self._decode_step(query, key, value, mask)

        deterministic = first_from(deterministic, self.deterministic, default=False)
        dropout_rng = None
        if self.dropout_rate > 0.0 and not deterministic:
            dropout_rng = self._dropout_key(rngs)
        x = self.attention_fn(
            query,
            key,
            value,
            mask=mask,
            dropout_rng=dropout_rng,
            dropout_rate=self.dropout_rate,
            broadcast_dropout=self.broadcast_dropout,
            deterministic=deterministic,
            dtype=self.dtype,
            precision=self.precision,
            module=self if sow_weights else None,
            **({"is_causal": True} if is_causal else {}),
        )
        return self.out(x, out_sharding=out_sharding)

    def _decode_step(self, query, key, value, mask):
        if self.cached_key is None or self.cached_value is None or self.cache_index is None:
            raise LayerError(
                "MultiHeadAttention: decode=True needs a cache; call "
                "`attn.init_cache((batch, max_length, in_features))` first."
            )
        cached_key = self.cached_key[...]
        *batch, max_length, _kv_heads, depth = cached_key.shape
        expected = (*batch, 1, self.num_heads, depth)
        if query.shape != expected:
            raise ShapeError(
                f"MultiHeadAttention: decoding takes one step at a time; the projected query "
                f"must have shape {expected}, got {query.shape} (inputs of length 1)."
            )
        i = self.cache_index[...]
        zero = jnp.zeros((), i.dtype)
        where = (zero,) * len(batch) + (i, zero, zero)
        key = lax.dynamic_update_slice(cached_key, key.astype(cached_key.dtype), where)
        value = lax.dynamic_update_slice(
            self.cached_value[...], value.astype(cached_key.dtype), where
        )
        self.cached_key[...] = key
        self.cached_value[...] = value
        self.cache_index[...] = i + 1
        # attend only to the filled part of the cache
        filled = jnp.broadcast_to(jnp.arange(max_length) <= i, (*batch, 1, 1, max_length))
        return key, value, combine_masks(mask, filled)

    def _dropout_key(self, rngs) -> jax.Array:
        if isinstance(rngs, jax.Array):
            return rngs
        if isinstance(rngs, Rngs):
            return rngs["dropout"]()
        if isinstance(rngs, RngStream):
            return rngs()
        if self.rngs is None:
            raise MissingRngsError(
                f"MultiHeadAttention(dropout_rate={self.dropout_rate}) needs randomness while "
                "training: pass `rngs=` per call, build it with keep_rngs=True, or use "
                "`deterministic=True` / `model.eval()`."
            )
        return self.rngs()
