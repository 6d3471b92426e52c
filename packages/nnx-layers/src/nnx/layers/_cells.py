"""Recurrent cells: ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``.

A cell computes one time step, ``carry, y = cell(carry, x)``; ``nnx.RNN`` (in
``_rnn.py``) runs it over a sequence. ``RNNCellBase`` holds what the cells share: their
configuration, their input/hidden projections, the carry and its checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from nnx.core import Module, Rngs, RngStream, VariableMetadata
from nnx.layers import initializers
from nnx.layers._common import (
    Dtype,
    Initializer,
    PrecisionLike,
    PromoteDtypeFn,
    check_positive,
    promote_dtype,
    require_rngs,
)
from nnx.layers._errors import ShapeError
from nnx.layers._linear import Linear, default_kernel_init

Carry = Any
default_recurrent_kernel_init = initializers.orthogonal()


def sigmoid(x):
    """``jax.nn.sigmoid``, as a module function: cells keep their gate function as an
    attribute, and JAX's jitted ``jax.nn.sigmoid`` does not pickle (this does)."""
    return jax.nn.sigmoid(x)


def tanh(x):
    """``jax.nn.tanh`` as a module function (see :func:`sigmoid`)."""
    return jnp.tanh(x)


def _carry_key(cell, rngs) -> jax.Array:
    if isinstance(rngs, Rngs):
        return rngs["carry"]() if ("carry" in rngs or "default" in rngs) else rngs["params"]()
    if isinstance(rngs, RngStream):
        return rngs()
    if isinstance(rngs, jax.Array):
        return rngs
    if cell.rngs is not None:
        return cell.rngs()
    # The default carry_init (zeros) ignores the key; a random carry_init needs rngs.
    return jax.random.key(0)


class RNNCellBase(Module):
    """Base class of recurrent cells: ``carry, y = cell(carry, x)`` and ``initialize_carry``.

    Example (a custom cell that ``nnx.RNN`` can run)::

        class Accumulate(nnx.RNNCellBase):
            def __init__(self, features):
                self.hidden_features, self.param_dtype = features, jnp.float32
                self.carry_init, self.rngs = nnx.initializers.zeros, None

            def __call__(self, carry, x):
                return carry + x, carry + x

            def initialize_carry(self, input_shape, rngs=None):
                return self._zero_state(input_shape, rngs)

    ``num_feature_axes`` (1) is how many trailing input axes are features. A cell built
    with ``rngs`` that has a ``carry`` stream keeps a fork of it for random ``carry_init``.
    """

    num_feature_axes = 1
    # Set by each subclass's __init__; read by _zero_state and _carry_key.
    hidden_features: int
    param_dtype: Dtype
    carry_init: Initializer | None
    rngs: RngStream | None

    def _configure(
        self,
        in_features: int,
        hidden_features: int,
        *,
        rngs: Any,
        dtype: Dtype | None,
        param_dtype: Dtype,
        precision: PrecisionLike,
        carry_init: Initializer | None,
        promote_dtype: PromoteDtypeFn,
    ) -> None:
        """Check the sizes and ``rngs`` (errors name the cell), then keep the settings
        every built-in cell has."""
        name = type(self).__name__
        check_positive(name, in_features=in_features, hidden_features=hidden_features)
        require_rngs(rngs, name)
        self.in_features = in_features
        self.hidden_features = hidden_features
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.carry_init = carry_init
        self.promote_dtype = promote_dtype

    def _dense(
        self,
        in_features: int,
        out_features: int,
        *,
        kernel_init: Initializer,
        kernel_metadata: Mapping[str, Any] | None,
        rngs: Rngs,
        bias_init: Initializer | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
    ) -> Linear:
        """A projection of this cell (with a bias when ``bias_init`` is given), in the
        cell's ``dtype``, ``param_dtype``, ``precision`` and ``promote_dtype``."""
        bias = {} if bias_init is None else {"bias_init": bias_init, "bias_metadata": bias_metadata}
        return Linear(
            in_features,
            out_features,
            use_bias=bias_init is not None,
            kernel_init=kernel_init,
            kernel_metadata=kernel_metadata,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            promote_dtype=self.promote_dtype,
            rngs=rngs,
            **bias,
        )

    def _keep(self, rngs, keep_rngs: bool) -> None:
        # Only an explicit 'carry' stream is kept: a cell without random state is all
        # Params, which keeps `jax.grad` over the whole cell simple.
        if keep_rngs and isinstance(rngs, Rngs) and "carry" in rngs:
            self.rngs = rngs["carry"].fork()
        else:
            self.rngs = None

    def _zero_state(self, input_shape, rngs, carry_init=None):
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        init = carry_init or self.carry_init or initializers.zeros
        return init(_carry_key(self, rngs), shape, self.param_dtype)

    def _zero_pair(self, input_shape, rngs, carry_init=None):
        """The LSTM carry ``(c, h)``: two states drawn in that order."""
        return (
            self._zero_state(input_shape, rngs, carry_init),
            self._zero_state(input_shape, rngs, carry_init),
        )


class LSTMCell(RNNCellBase):
    """A long short-term memory cell; the carry is ``(c, h)``.

    Example::

        cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
        carry = cell.initialize_carry((2, 3))          # (c, h), each (2, 4)
        carry, y = cell(carry, jnp.ones((2, 3)))        # y is the new h

    Equations (``W`` = ``ii/if_/ig/io`` on the input, no bias; ``U`` = ``hi/hf/hg/ho``
    on ``h``, with bias)::

        i = gate(W_i x + U_i h + b_i);  f = gate(W_f x + U_f h + b_f)
        g = act(W_g x + U_g h + b_g);   o = gate(W_o x + U_o h + b_o)
        c' = f * c + i * g;             h' = o * act(c')
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = sigmoid,
        activation_fn: Callable[..., Any] = tanh,
        kernel_init: Initializer = default_kernel_init,
        recurrent_kernel_init: Initializer = default_recurrent_kernel_init,
        bias_init: Initializer = initializers.zeros,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        carry_init: Initializer | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        precision: PrecisionLike = None,
        keep_rngs: bool = False,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] | None = None,
        recurrent_kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
    ):
        self._configure(
            in_features,
            hidden_features,
            rngs=rngs,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            carry_init=carry_init,
            promote_dtype=promote_dtype,
        )
        self.gate_fn = gate_fn
        self.activation_fn = activation_fn

        def dense_i():
            return self._dense(
                in_features,
                hidden_features,
                kernel_init=kernel_init,
                kernel_metadata=kernel_metadata,
                rngs=rngs,
            )

        def dense_h():
            return self._dense(
                hidden_features,
                hidden_features,
                kernel_init=_in_float32(recurrent_kernel_init),
                kernel_metadata=recurrent_kernel_metadata,
                bias_init=bias_init,
                bias_metadata=bias_metadata,
                rngs=rngs,
            )

        self.ii, self.if_, self.ig, self.io = dense_i(), dense_i(), dense_i(), dense_i()
        self.hi, self.hf, self.hg, self.ho = dense_h(), dense_h(), dense_h(), dense_h()
        self._keep(rngs, keep_rngs)

    def __call__(self, carry: Carry, inputs: jax.Array) -> tuple[Carry, jax.Array]:
        _check_step_input(self, inputs)
        _check_carry(self, carry, inputs, pair=True)
        c, h = carry
        i = self.gate_fn(self.ii(inputs) + self.hi(h))
        f = self.gate_fn(self.if_(inputs) + self.hf(h))
        g = self.activation_fn(self.ig(inputs) + self.hg(h))
        o = self.gate_fn(self.io(inputs) + self.ho(h))
        new_c = f * c + i * g
        new_h = o * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: Rngs | RngStream | None = None,
        carry_init: Initializer | None = None,
    ) -> Carry:
        """``(c, h)`` for inputs of ``input_shape`` (batch..., in_features), from ``carry_init``
        (given here, else the cell's, else zeros)."""
        return self._zero_pair(input_shape, rngs, carry_init)


def modified_orthogonal(key: jax.Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32):
    """An orthogonal matrix computed in float32, then cast to ``dtype`` (works for 16-bit types).

    >>> import jax, jax.numpy as jnp
    >>> from nnx.layers import modified_orthogonal
    >>> w = modified_orthogonal(jax.random.key(0), (4, 4), jnp.bfloat16)
    >>> w.dtype, bool(jnp.allclose(w.astype(jnp.float32) @ w.T.astype(jnp.float32), jnp.eye(4), atol=0.05))
    (dtype(bfloat16), True)

    The recurrent kernels' initializer of ``LSTMCell``: LAPACK's QR (the CPU backend)
    exists only in 32/64 bits.
    """
    return jnp.asarray(initializers.orthogonal()(key, shape, jnp.float32), dtype)


class OptimizedLSTMCell(RNNCellBase):
    """An LSTM cell that computes its four gates with two matmuls; same equations as ``LSTMCell``.

    Example::

        cell = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
        carry = cell.initialize_carry((2, 3))       # (c, h), each (2, 4)
        carry, y = cell(carry, jnp.ones((2, 3)))

    ``dense_i`` (input -> 4 * hidden, no bias) and ``dense_h`` (hidden -> 4 * hidden,
    with bias) hold the input, forget, candidate and output gates side by side in that
    order, so ``dense_i.kernel`` is ``LSTMCell``'s ``ii, if_, ig, io`` kernels
    concatenated along the last axis (and ``dense_h`` its ``hi, hf, hg, ho``). Usually
    faster than ``LSTMCell`` for hidden sizes up to about 2048.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = sigmoid,
        activation_fn: Callable[..., Any] = tanh,
        kernel_init: Initializer = default_kernel_init,
        recurrent_kernel_init: Initializer = default_recurrent_kernel_init,
        bias_init: Initializer = initializers.zeros,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        carry_init: Initializer | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        precision: PrecisionLike = None,
        keep_rngs: bool = False,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] | None = None,
        recurrent_kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
    ):
        self._configure(
            in_features,
            hidden_features,
            rngs=rngs,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            carry_init=carry_init,
            promote_dtype=promote_dtype,
        )
        self.gate_fn = gate_fn
        self.activation_fn = activation_fn
        self.dense_i = self._dense(
            in_features,
            4 * hidden_features,
            kernel_init=kernel_init,
            kernel_metadata=kernel_metadata,
            rngs=rngs,
        )
        self.dense_h = self._dense(
            hidden_features,
            4 * hidden_features,
            kernel_init=_in_float32(recurrent_kernel_init),
            kernel_metadata=recurrent_kernel_metadata,
            bias_init=bias_init,
            bias_metadata=bias_metadata,
            rngs=rngs,
        )
        self._keep(rngs, keep_rngs)

    def __call__(self, carry: Carry, inputs: jax.Array) -> tuple[Carry, jax.Array]:
        _check_step_input(self, inputs)
        _check_carry(self, carry, inputs, pair=True)
        c, h = carry
        i, f, g, o = jnp.split(self.dense_i(inputs) + self.dense_h(h), 4, axis=-1)
        new_c = self.gate_fn(f) * c + self.gate_fn(i) * self.activation_fn(g)
        new_h = self.gate_fn(o) * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: Rngs | RngStream | None = None,
        carry_init: Initializer | None = None,
    ) -> Carry:
        """``(c, h)`` for inputs of ``input_shape`` (batch..., in_features), from ``carry_init``
        (given here, else the cell's, else zeros)."""
        return self._zero_pair(input_shape, rngs, carry_init)


class GRUCell(RNNCellBase):
    """A gated recurrent unit; the carry is ``h``.

    Example::

        cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
        h = cell.initialize_carry((2, 3))
        h, y = cell(h, jnp.ones((2, 3)))

    ``dense_i`` (input -> 3 * hidden, with bias) and ``dense_h`` (hidden -> 3 * hidden,
    no bias) hold the reset, update and candidate projections, in that order::

        r = gate(x_r + h_r);  z = gate(x_z + h_z)
        n = act(x_n + r * h_n);  h' = (1 - z) * n + z * h
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = sigmoid,
        activation_fn: Callable[..., Any] = tanh,
        kernel_init: Initializer = default_kernel_init,
        recurrent_kernel_init: Initializer = default_recurrent_kernel_init,
        bias_init: Initializer = initializers.zeros,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        carry_init: Initializer | None = None,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        precision: PrecisionLike = None,
        keep_rngs: bool = False,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] | None = None,
        recurrent_kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
    ):
        self._configure(
            in_features,
            hidden_features,
            rngs=rngs,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            carry_init=carry_init,
            promote_dtype=promote_dtype,
        )
        self.gate_fn = gate_fn
        self.activation_fn = activation_fn
        self.dense_i = self._dense(
            in_features,
            3 * hidden_features,
            kernel_init=kernel_init,
            kernel_metadata=kernel_metadata,
            bias_init=bias_init,
            bias_metadata=bias_metadata,
            rngs=rngs,
        )
        self.dense_h = self._dense(
            hidden_features,
            3 * hidden_features,
            kernel_init=_in_float32(recurrent_kernel_init),  # one (hidden, 3 * hidden) matrix
            kernel_metadata=recurrent_kernel_metadata,
            rngs=rngs,
        )
        self._keep(rngs, keep_rngs)

    def __call__(self, carry: Carry, inputs: jax.Array) -> tuple[Carry, jax.Array]:
        _check_step_input(self, inputs)
        _check_carry(self, carry, inputs, pair=False)
        h = carry
        x_r, x_z, x_n = jnp.split(self.dense_i(inputs), 3, axis=-1)
        h_r, h_z, h_n = jnp.split(self.dense_h(h), 3, axis=-1)
        r = self.gate_fn(x_r + h_r)
        z = self.gate_fn(x_z + h_z)
        n = self.activation_fn(x_n + r * h_n)
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: Rngs | RngStream | None = None,
        carry_init: Initializer | None = None,
    ) -> Carry:
        """``h`` for inputs of ``input_shape`` (batch..., in_features), from ``carry_init``
        (given here, else the cell's, else zeros)."""
        return self._zero_state(input_shape, rngs, carry_init)


class SimpleCell(RNNCellBase):
    """An Elman cell: ``h' = act(W x + U h + b)`` (``+ h`` with ``residual=True``); carry ``h``.

    Example::

        cell = nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))
        h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        carry_init: Initializer | None = None,
        residual: bool = False,
        activation_fn: Callable[..., Any] = tanh,
        kernel_init: Initializer = default_kernel_init,
        recurrent_kernel_init: Initializer = default_recurrent_kernel_init,
        bias_init: Initializer = initializers.zeros,
        promote_dtype: PromoteDtypeFn = promote_dtype,
        precision: PrecisionLike = None,
        keep_rngs: bool = False,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] | None = None,
        recurrent_kernel_metadata: Mapping[str, Any] | None = None,
        bias_metadata: Mapping[str, Any] | None = None,
    ):
        self._configure(
            in_features,
            hidden_features,
            rngs=rngs,
            dtype=dtype,
            param_dtype=param_dtype,
            precision=precision,
            carry_init=carry_init,
            promote_dtype=promote_dtype,
        )
        self.activation_fn = activation_fn
        self.residual = residual
        # Flax NNX's layout and key order: the recurrent projection first (no bias),
        # then the input projection with the bias
        self.dense_h = self._dense(
            hidden_features,
            hidden_features,
            kernel_init=_in_float32(recurrent_kernel_init),
            kernel_metadata=recurrent_kernel_metadata,
            rngs=rngs,
        )
        self.dense_i = self._dense(
            in_features,
            hidden_features,
            kernel_init=kernel_init,
            kernel_metadata=kernel_metadata,
            bias_init=bias_init,
            bias_metadata=bias_metadata,
            rngs=rngs,
        )
        self._keep(rngs, keep_rngs)

    def __call__(self, carry: Carry, inputs: jax.Array) -> tuple[Carry, jax.Array]:
        _check_step_input(self, inputs)
        _check_carry(self, carry, inputs, pair=False)
        new_h = self.activation_fn(self.dense_i(inputs) + self.dense_h(carry))
        if self.residual:
            new_h = new_h + carry
        return new_h, new_h

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: Rngs | RngStream | None = None,
        carry_init: Initializer | None = None,
    ) -> Carry:
        """``h`` for inputs of ``input_shape`` (batch..., in_features), from ``carry_init``
        (given here, else the cell's, else zeros)."""
        return self._zero_state(input_shape, rngs, carry_init)


def _check_step_input(cell: Any, inputs: jax.Array) -> None:
    n = cell.in_features
    if jnp.shape(inputs)[-1:] != (n,):
        raise ShapeError(
            f"{type(cell).__name__}(in_features={n}) takes one time step of shape "
            f"(*batch, {n}), got {jnp.shape(inputs)}; run a sequence with nnx.RNN(cell)."
        )


def _check_carry(cell: Any, carry: Any, inputs: jax.Array, *, pair: bool) -> None:
    """Raise, naming the carry and ``hidden_features``, unless the carry fits this step."""
    n = cell.hidden_features
    batch = tuple(jnp.shape(inputs)[:-1])
    want = f"{batch + (n,)}"
    name = type(cell).__name__
    head = f"{name}(in_features={cell.in_features}, hidden_features={n})"
    fix = f"Make it with `cell.initialize_carry({tuple(jnp.shape(inputs))})`."
    if pair:
        if not isinstance(carry, (tuple, list)) or len(carry) != 2:
            raise ShapeError(
                f"{head}: the carry must be a pair (c, h) of arrays of shape {want}, got "
                f"{_describe(carry)}. {fix}"
            )
        parts = (("c", carry[0]), ("h", carry[1]))
    else:
        if isinstance(carry, (tuple, list)):
            raise ShapeError(
                f"{head}: the carry is one array h of shape {want}, got {_describe(carry)}. {fix}"
            )
        parts = (("h", carry),)
    for part, value in parts:
        shape = tuple(jnp.shape(value))
        label = f"carry {part}" if pair else "carry"
        if shape[-1:] != (n,):
            raise ShapeError(
                f"{head}: the {label} has shape {shape}, but its last axis must be "
                f"hidden_features={n} (expected {want} for inputs of shape "
                f"{tuple(jnp.shape(inputs))}). {fix}"
            )
        try:
            jnp.broadcast_shapes(shape[:-1], batch)
            fits = True
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(
                f"{head}: the {label} has shape {shape}, whose batch axes {shape[:-1]} do not "
                f"match the inputs' {batch} (expected {want}). {fix}"
            )


def _describe(x: Any) -> str:
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)} (shapes {[tuple(jnp.shape(v)) for v in x]})"
    return f"an array of shape {tuple(jnp.shape(x))}"


def _in_float32(init: Initializer) -> Initializer:
    """Run ``init`` in float32 for 16-bit float params, then cast.

    The default recurrent initializer is orthogonal, a QR decomposition that LAPACK
    (the CPU backend) offers only in 32/64 bits; ``param_dtype=jnp.bfloat16`` would fail.
    A partial of a module function, not a closure, so that cells pickle.
    """
    return functools.partial(_init_in_float32, init)


def _init_in_float32(init: Initializer, key, shape, dtype=jnp.float32):
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)):
        return init(key, shape, dtype)
    out = init(key, shape, jnp.float32)
    if isinstance(out, VariableMetadata):
        return VariableMetadata(jnp.asarray(out.value, dtype), out.metadata)
    return jnp.asarray(out, dtype)
