"""nnx.layers: neural-network layers for nnx.

Every layer creates its parameters eagerly from ``rngs`` and supports ``dtype`` /
``param_dtype``; initializers may be wrapped in ``nnx.with_partitioning`` to give
parameters sharding metadata. The public interface is ``__all__``; modules starting
with an underscore are private.

Example::

    import nnx
    model = nnx.Sequential(nnx.Linear(2, 8, rngs=nnx.Rngs(0)), nnx.relu)
"""

from nnx.layers import initializers
from nnx.layers._activations import (
    PReLU,
    celu,
    elu,
    gelu,
    glu,
    hard_sigmoid,
    hard_silu,
    hard_swish,
    hard_tanh,
    identity,
    leaky_relu,
    log1mexp,
    log_sigmoid,
    log_softmax,
    logmeanexp,
    logsumexp,
    mish,
    one_hot,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    soft_sign,
    softmax,
    softplus,
    sparse_plus,
    sparse_sigmoid,
    squareplus,
    standardize,
    swish,
    tanh,
)
from nnx.layers._attention import (
    MultiHeadAttention,
    check_mask_shape,
    combine_masks,
    dot_product_attention,
    dot_product_attention_weights,
    make_attention_mask,
    make_causal_mask,
)
from nnx.layers._cells import (
    GRUCell,
    LSTMCell,
    OptimizedLSTMCell,
    RNNCellBase,
    SimpleCell,
    modified_orthogonal,
)
from nnx.layers._containers import Sequential
from nnx.layers._conv import Conv, ConvTranspose, canonicalize_padding
from nnx.layers._dtypes import canonicalize_dtype, promote_dtype
from nnx.layers._embed import Embed, default_embed_init
from nnx.layers._errors import LayerError, MissingRngsError, ShapeError
from nnx.layers._linear import (
    Einsum,
    Linear,
    LinearGeneral,
    default_bias_init,
    default_kernel_init,
)
from nnx.layers._lora import (
    LoRA,
    LoRALinear,
    LoRAParam,
    default_a_initializer,
    default_b_initializer,
)
from nnx.layers._normalization import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from nnx.layers._pooling import avg_pool, max_pool, min_pool, pool
from nnx.layers._reparam import SpectralNorm, WeightNorm
from nnx.layers._rnn import RNN, Bidirectional, flip_sequences
from nnx.layers._stochastic import Dropout
from nnx.layers._typing import (
    Array,
    Axes,
    ConvGeneralDilatedT,
    DotGeneralT,
    Dtype,
    EinsumT,
    Initializer,
    LaxPadding,
    PaddingLike,
    PrecisionLike,
    PromoteDtypeFn,
    Shape,
)
from nnx.layers._version import __version__

__all__ = [
    # dense
    "Linear",
    "LinearGeneral",
    "Einsum",
    # convolution
    "Conv",
    "ConvTranspose",
    # embedding
    "Embed",
    # normalization
    "BatchNorm",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "InstanceNorm",
    "SpectralNorm",
    "WeightNorm",
    # stochastic
    "Dropout",
    # attention
    "MultiHeadAttention",
    "dot_product_attention",
    "dot_product_attention_weights",
    "make_attention_mask",
    "make_causal_mask",
    "combine_masks",
    # recurrent
    "RNNCellBase",
    "LSTMCell",
    "OptimizedLSTMCell",
    "GRUCell",
    "SimpleCell",
    "RNN",
    "Bidirectional",
    "flip_sequences",
    "modified_orthogonal",
    # low-rank adaptation
    "LoRA",
    "LoRALinear",
    "LoRAParam",
    # containers
    "Sequential",
    # pooling
    "pool",
    "avg_pool",
    "max_pool",
    "min_pool",
    # activations
    "PReLU",
    "celu",
    "elu",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "identity",
    "leaky_relu",
    "log1mexp",
    "log_sigmoid",
    "log_softmax",
    "logmeanexp",
    "logsumexp",
    "mish",
    "one_hot",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "soft_sign",
    "softmax",
    "softplus",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "standardize",
    "swish",
    "tanh",
    # initializers, dtypes and types
    "initializers",
    "Initializer",
    "canonicalize_dtype",
    "promote_dtype",
    "canonicalize_padding",
    # errors
    "LayerError",
    "ShapeError",
    "MissingRngsError",
]

# Flax's module paths (``from flax.nnx.nn.linear import default_kernel_init``), as one
# table: a dotted module path under ``nnx`` -> the names it holds, each an attribute of
# nnx.layers (``alias=target`` exposes attribute ``target`` as ``alias``). nnx/__init__.py
# turns it into importable modules; nothing here is a second implementation.
# targets for nn.initializers (e.g. _init_lecun_normal)
globals().update({"_init_" + n: getattr(initializers, n) for n in initializers.__all__})

_ACTIVATIONS = (
    "celu elu gelu glu hard_sigmoid hard_silu hard_swish hard_tanh leaky_relu log_sigmoid "
    "log_softmax logsumexp one_hot relu identity relu6 selu sigmoid silu soft_sign softmax "
    "softplus standardize swish tanh PReLU"
)
__nnx_paths__ = {
    "helpers": "Sequential",
    "nn.activations": _ACTIVATIONS + " Array Dtype PromoteDtypeFn",
    "nn.attention": (
        "dot_product_attention_weights dot_product_attention MultiHeadAttention "
        "make_attention_mask make_causal_mask combine_masks LinearGeneral LayerNorm "
        "default_kernel_init initializers "
        "Array Dtype PromoteDtypeFn Shape Initializer PrecisionLike DotGeneralT"
    ),
    "nn.dtypes": "canonicalize_dtype promote_dtype Dtype",
    # a literal (tools/known_names.py reads it without importing); a test checks it
    # against initializers.__all__
    "nn.initializers": (
        "constant=_init_constant delta_orthogonal=_init_delta_orthogonal "
        "glorot_normal=_init_glorot_normal glorot_uniform=_init_glorot_uniform "
        "he_normal=_init_he_normal he_uniform=_init_he_uniform "
        "kaiming_normal=_init_kaiming_normal "
        "kaiming_uniform=_init_kaiming_uniform lecun_normal=_init_lecun_normal "
        "lecun_uniform=_init_lecun_uniform normal=_init_normal ones=_init_ones "
        "ones_init=_init_ones_init orthogonal=_init_orthogonal "
        "truncated_normal=_init_truncated_normal uniform=_init_uniform "
        "variance_scaling=_init_variance_scaling "
        "xavier_normal=_init_xavier_normal xavier_uniform=_init_xavier_uniform "
        "zeros=_init_zeros zeros_init=_init_zeros_init Initializer"
    ),
    "nn.linear": (
        "LinearGeneral Linear Einsum Conv ConvTranspose Embed canonicalize_padding "
        "default_kernel_init default_bias_init default_embed_init initializers "
        "Array Dtype Shape Initializer PrecisionLike DotGeneralT ConvGeneralDilatedT "
        "PaddingLike LaxPadding PromoteDtypeFn EinsumT"
    ),
    "nn.lora": (
        "LoRAParam LoRA LoRALinear Linear default_a_initializer default_b_initializer "
        "initializers Array Dtype Initializer PromoteDtypeFn"
    ),
    "nn.normalization": (
        "BatchNorm LayerNorm RMSNorm GroupNorm WeightNorm InstanceNorm SpectralNorm "
        "initializers Array Dtype Initializer Axes PromoteDtypeFn"
    ),
    "nn.recurrent": (
        "RNNCellBase LSTMCell OptimizedLSTMCell SimpleCell GRUCell RNN Bidirectional "
        "flip_sequences modified_orthogonal default_kernel_init Linear sigmoid tanh "
        "initializers Dtype Initializer PromoteDtypeFn Shape Array"
    ),
    "nn.stochastic": "Dropout",
}
