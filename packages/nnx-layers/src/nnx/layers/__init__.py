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
    combine_masks,
    dot_product_attention,
    dot_product_attention_weights,
    make_attention_mask,
    make_causal_mask,
)
from nnx.layers._containers import Sequential
from nnx.layers._conv import Conv, ConvTranspose
from nnx.layers._embed import Embed
from nnx.layers._errors import LayerError, MissingRngsError, ShapeError
from nnx.layers._linear import Einsum, Linear, LinearGeneral
from nnx.layers._lora import LoRA, LoRALinear, LoRAParam
from nnx.layers._normalization import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, RMSNorm
from nnx.layers._pooling import avg_pool, max_pool, min_pool, pool
from nnx.layers._recurrent import (
    RNN,
    Bidirectional,
    GRUCell,
    LSTMCell,
    RNNCellBase,
    SimpleCell,
    flip_sequences,
)
from nnx.layers._stochastic import Dropout
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
    "GRUCell",
    "SimpleCell",
    "RNN",
    "Bidirectional",
    "flip_sequences",
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
    # initializers
    "initializers",
    # errors
    "LayerError",
    "ShapeError",
    "MissingRngsError",
]
