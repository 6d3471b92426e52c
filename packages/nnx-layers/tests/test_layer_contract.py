"""What every layer promises: eager params from ``rngs``, dtype/param_dtype, sharding
metadata through a partitioning-aware initializer, ``precision`` reaching JAX, and
errors that name the layer and the shape it expected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import nnx


def plus_bias(y, bias):
    """``y + bias`` with the bias broadcast to ``y``'s trailing axes explicitly (rank
    promotion raises in these tests)."""
    return y + jnp.broadcast_to(bias, jnp.shape(y))

HIGHEST = lax.Precision.HIGHEST
init = nnx.initializers


def wp(initializer, names):
    return nnx.with_partitioning(initializer, names)


def _norm_builder(cls):
    return lambda **kw: cls(4, rngs=nnx.Rngs(0), **kw)


def _cell_builder(cls):
    return lambda d, p: cls(3, 4, dtype=d, param_dtype=p, rngs=nnx.Rngs(0))


# (id, build(**init kwargs), {init kwarg: (plain initializer, path to the param, names)})
SHARDING_CASES = [
    (
        "Linear",
        lambda **kw: nnx.Linear(3, 4, rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("kernel",), (None, "model")),
            "bias_init": (init.normal(1.0), ("bias",), ("model",)),
        },
    ),
    (
        "LinearGeneral",
        lambda **kw: nnx.LinearGeneral(3, (2, 4), rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("kernel",), (None, "heads", None)),
            "bias_init": (init.normal(1.0), ("bias",), ("heads", None)),
        },
    ),
    (
        "Einsum",
        lambda **kw: nnx.Einsum("ba,ac->bc", (3, 4), (4,), rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("kernel",), ("data", "model")),
            "bias_init": (init.normal(1.0), ("bias",), ("model",)),
        },
    ),
    (
        "Conv",
        lambda **kw: nnx.Conv(2, 4, (3, 3), rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("kernel",), (None, None, None, "model")),
            "bias_init": (init.normal(1.0), ("bias",), ("model",)),
        },
    ),
    (
        "ConvTranspose",
        lambda **kw: nnx.ConvTranspose(2, 4, (3,), rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("kernel",), (None, None, "model")),
            "bias_init": (init.normal(1.0), ("bias",), ("model",)),
        },
    ),
    (
        "Embed",
        lambda **kw: nnx.Embed(10, 4, rngs=nnx.Rngs(0), **kw),
        {"embedding_init": (init.normal(1.0), ("embedding",), ("vocab", None))},
    ),
    *[
        (
            cls.__name__,
            _norm_builder(cls),
            {
                "scale_init": (init.normal(1.0), ("scale",), ("model",)),
                "bias_init": (init.normal(1.0), ("bias",), ("model",)),
            },
        )
        for cls in (nnx.BatchNorm, nnx.LayerNorm, nnx.InstanceNorm)
    ],
    (
        "GroupNorm",
        lambda **kw: nnx.GroupNorm(4, num_groups=2, rngs=nnx.Rngs(0), **kw),
        {
            "scale_init": (init.normal(1.0), ("scale",), ("model",)),
            "bias_init": (init.normal(1.0), ("bias",), ("model",)),
        },
    ),
    (
        "RMSNorm",
        lambda **kw: nnx.RMSNorm(4, rngs=nnx.Rngs(0), **kw),
        {"scale_init": (init.normal(1.0), ("scale",), ("model",))},
    ),
    (
        "MultiHeadAttention",
        lambda **kw: nnx.MultiHeadAttention(2, 4, rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("value", "kernel"), (None, "heads", None)),
            "out_kernel_init": (init.lecun_normal(), ("out", "kernel"), ("heads", None, None)),
        },
    ),
    (
        "LSTMCell",
        lambda **kw: nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("ig", "kernel"), (None, "model")),
            "recurrent_kernel_init": (init.orthogonal(), ("ho", "kernel"), ("model", None)),
        },
    ),
    (
        "GRUCell",
        lambda **kw: nnx.GRUCell(3, 4, rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("dense_i", "kernel"), (None, "model")),
            "recurrent_kernel_init": (init.orthogonal(), ("dense_h", "kernel"), ("model", None)),
        },
    ),
    (
        "SimpleCell",
        lambda **kw: nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0), **kw),
        {
            "kernel_init": (init.lecun_normal(), ("dense_i", "kernel"), (None, "model")),
            "recurrent_kernel_init": (init.orthogonal(), ("dense_h", "kernel"), ("model", None)),
        },
    ),
    (
        "LoRA",
        lambda **kw: nnx.LoRA(3, 2, 4, rngs=nnx.Rngs(0), **kw),
        {
            "a_initializer": (init.he_uniform(), ("lora_a",), (None, "model")),
            "b_initializer": (init.normal(1.0), ("lora_b",), ("model", None)),
        },
    ),
]


def _get(module, path):
    for name in path:
        module = getattr(module, name)
    return module


@pytest.mark.parametrize(
    "build, inits", [c[1:] for c in SHARDING_CASES], ids=[c[0] for c in SHARDING_CASES]
)
def test_partitioned_initializer_gives_sharding_names_and_the_same_values(build, inits):
    plain = build(**{k: v[0] for k, v in inits.items()})
    sharded = build(**{k: wp(v[0], v[2]) for k, v in inits.items()})
    for _, path, names in inits.values():
        param = _get(sharded, path)
        assert isinstance(param, nnx.Param)
        assert param.sharding_names == names
        assert len(names) == param.ndim
        np.testing.assert_array_equal(param[...], _get(plain, path)[...])


def test_partitioned_params_give_a_partition_spec():
    layer = nnx.Linear(3, 4, kernel_init=wp(init.lecun_normal(), (None, "model")), rngs=nnx.Rngs(0))
    specs = nnx.get_partition_spec(nnx.state(layer, nnx.Param))
    assert specs["kernel"][...] == jax.sharding.PartitionSpec(None, "model")


# (id, build(dtype, param_dtype), input)
DTYPE_CASES = [
    ("Linear", lambda d, p: nnx.Linear(3, 4, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)), (2, 3)),
    (
        "LinearGeneral",
        lambda d, p: nnx.LinearGeneral(3, (2, 4), dtype=d, param_dtype=p, rngs=nnx.Rngs(0)),
        (2, 3),
    ),
    (
        "Einsum",
        lambda d, p: nnx.Einsum(
            "ba,ac->bc", (3, 4), (4,), dtype=d, param_dtype=p, rngs=nnx.Rngs(0)
        ),
        (2, 3),
    ),
    (
        "Conv",
        lambda d, p: nnx.Conv(3, 4, (3,), dtype=d, param_dtype=p, rngs=nnx.Rngs(0)),
        (2, 5, 3),
    ),
    (
        "ConvTranspose",
        lambda d, p: nnx.ConvTranspose(3, 4, (3,), dtype=d, param_dtype=p, rngs=nnx.Rngs(0)),
        (2, 5, 3),
    ),
    ("Embed", lambda d, p: nnx.Embed(7, 3, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)), "ids"),
    ("BatchNorm", lambda d, p: nnx.BatchNorm(3, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)), (4, 3)),
    ("LayerNorm", lambda d, p: nnx.LayerNorm(3, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)), (4, 3)),
    ("RMSNorm", lambda d, p: nnx.RMSNorm(3, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)), (4, 3)),
    (
        "GroupNorm",
        lambda d, p: nnx.GroupNorm(4, num_groups=2, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)),
        (2, 3, 4),
    ),
    (
        "InstanceNorm",
        lambda d, p: nnx.InstanceNorm(3, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)),
        (2, 5, 3),
    ),
    (
        "MultiHeadAttention",
        lambda d, p: nnx.MultiHeadAttention(2, 4, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)),
        (1, 3, 4),
    ),
    (
        "LoRA",
        lambda d, p: nnx.LoRA(3, 2, 4, dtype=d, param_dtype=p, rngs=nnx.Rngs(0)),
        (2, 3),
    ),
    *[
        (
            cls.__name__,
            _cell_builder(cls),
            (2, 3),
        )
        for cls in (nnx.LSTMCell, nnx.GRUCell, nnx.SimpleCell)
    ],
    ("PReLU", lambda d, p: nnx.PReLU(param_dtype=p), (2, 3)),
]


@pytest.mark.parametrize(
    "build, shape", [c[1:] for c in DTYPE_CASES], ids=[c[0] for c in DTYPE_CASES]
)
def test_param_dtype_sets_params_and_dtype_sets_the_computation(build, shape):
    layer = build(jnp.bfloat16, jnp.float16)
    params = jax.tree.leaves(nnx.state(layer, nnx.Param))
    assert params and all(p.dtype == jnp.float16 for p in params)
    if shape == "ids":
        x = jnp.array([1, 2, 6])
    else:
        x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
    if isinstance(layer, nnx.RNNCellBase):
        carry = layer.initialize_carry(x.shape)  # pyright: ignore[reportAttributeAccessIssue]
        assert all(c.dtype == jnp.float16 for c in jax.tree.leaves(carry))
        _, y = layer(jax.tree.map(lambda c: c.astype(jnp.bfloat16), carry), x)  # pyright: ignore[reportCallIssue]
    else:
        y = layer(x)
    expected = jnp.float32 if isinstance(layer, nnx.PReLU) else jnp.bfloat16
    assert y.dtype == expected


def test_bfloat16_linear_is_close_to_its_float32_computation():
    layer = nnx.Linear(8, 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (5, 8))
    assert layer.bias is not None
    expected = plus_bias(x @ layer.kernel[...], layer.bias[...])
    np.testing.assert_allclose(np.asarray(layer(x), np.float32), expected, rtol=3e-2, atol=3e-2)


def _contractions(jaxpr):
    """Every dot_general / conv_general_dilated equation, also inside scans and jits."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
            out.append(eqn)
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):  # pyright: ignore[reportAttributeAccessIssue]
                    out += _contractions(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):  # pyright: ignore[reportAttributeAccessIssue]
                    out += _contractions(sub)
    return out


def _rnn(cell_cls):
    return lambda p: nnx.RNN(cell_cls(3, 4, precision=p, rngs=nnx.Rngs(0)))


PRECISION_CASES = [
    ("Linear", lambda p: nnx.Linear(3, 4, precision=p, rngs=nnx.Rngs(0)), (2, 3)),
    (
        "LinearGeneral",
        lambda p: nnx.LinearGeneral(3, (2, 2), precision=p, rngs=nnx.Rngs(0)),
        (2, 3),
    ),
    ("Einsum", lambda p: nnx.Einsum("ba,ac->bc", (3, 4), precision=p, rngs=nnx.Rngs(0)), (2, 3)),
    ("Conv", lambda p: nnx.Conv(3, 4, (3,), precision=p, rngs=nnx.Rngs(0)), (2, 5, 3)),
    (
        "ConvTranspose",
        lambda p: nnx.ConvTranspose(3, 4, (3,), precision=p, rngs=nnx.Rngs(0)),
        (2, 5, 3),
    ),
    ("Embed.attend", lambda p: nnx.Embed(7, 3, precision=p, rngs=nnx.Rngs(0)).attend, (2, 3)),
    (
        "MultiHeadAttention",
        lambda p: nnx.MultiHeadAttention(2, 4, precision=p, rngs=nnx.Rngs(0)),
        (1, 3, 4),
    ),
    ("LoRA", lambda p: nnx.LoRA(3, 2, 4, precision=p, rngs=nnx.Rngs(0)), (2, 3)),
    (
        "LoRALinear",
        lambda p: nnx.LoRALinear(3, 4, lora_rank=2, precision=p, rngs=nnx.Rngs(0)),
        (2, 3),
    ),
    ("RNN(LSTMCell)", _rnn(nnx.LSTMCell), (2, 5, 3)),
    ("RNN(GRUCell)", _rnn(nnx.GRUCell), (2, 5, 3)),
    ("RNN(SimpleCell)", _rnn(nnx.SimpleCell), (2, 5, 3)),
]


@pytest.mark.parametrize(
    "build, shape", [c[1:] for c in PRECISION_CASES], ids=[c[0] for c in PRECISION_CASES]
)
def test_precision_reaches_every_contraction(build, shape):
    x = jnp.ones(shape)
    default = _contractions(jax.make_jaxpr(build(None))(x).jaxpr)
    highest = _contractions(jax.make_jaxpr(build(HIGHEST))(x).jaxpr)
    assert highest and len(highest) == len(default)
    assert all(e.params["precision"] == (HIGHEST, HIGHEST) for e in highest)
    assert all(e.params["precision"] is None for e in default)


def test_dot_product_attention_passes_precision():
    q = jnp.ones((1, 3, 2, 4))
    eqns = _contractions(
        jax.make_jaxpr(lambda q: nnx.dot_product_attention(q, q, q, precision=HIGHEST))(q).jaxpr
    )
    assert len(eqns) == 2 and all(e.params["precision"] == (HIGHEST, HIGHEST) for e in eqns)


MISSING_RNGS = [
    ("Linear", lambda: nnx.Linear(3, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("LinearGeneral", lambda: nnx.LinearGeneral(3, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("Einsum", lambda: nnx.Einsum("ab,bc->ac", (3, 4), rngs=None)),  # pyright: ignore[reportArgumentType]
    ("Conv", lambda: nnx.Conv(3, 4, 3, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("ConvTranspose", lambda: nnx.ConvTranspose(3, 4, 3, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("Embed", lambda: nnx.Embed(3, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("BatchNorm", lambda: nnx.BatchNorm(3, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("LayerNorm", lambda: nnx.LayerNorm(3, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("RMSNorm", lambda: nnx.RMSNorm(3, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("GroupNorm", lambda: nnx.GroupNorm(4, num_groups=2, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("InstanceNorm", lambda: nnx.InstanceNorm(3, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("MultiHeadAttention", lambda: nnx.MultiHeadAttention(2, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("LSTMCell", lambda: nnx.LSTMCell(3, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("GRUCell", lambda: nnx.GRUCell(3, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("SimpleCell", lambda: nnx.SimpleCell(3, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("LoRA", lambda: nnx.LoRA(3, 2, 4, rngs=None)),  # pyright: ignore[reportArgumentType]
    ("LoRALinear", lambda: nnx.LoRALinear(3, 4, lora_rank=2, rngs=None)),  # pyright: ignore[reportArgumentType]
]


@pytest.mark.parametrize("name, build", MISSING_RNGS, ids=[c[0] for c in MISSING_RNGS])
def test_building_without_rngs_names_the_layer_and_the_fix(name, build):
    with pytest.raises(
        nnx.layers.LayerError, match=rf"^{name} creates its parameters eagerly.*rngs=nnx\.Rngs\(0\)"
    ):
        build()


def test_params_are_created_eagerly_from_the_params_stream():
    rngs = nnx.Rngs(params=3)
    layer = nnx.Linear(3, 4, rngs=rngs)
    assert int(rngs.params.count[...]) == 2  # kernel, then bias
    key = nnx.Rngs(params=3).params()
    np.testing.assert_array_equal(layer.kernel[...], init.lecun_normal()(key, (3, 4)))


def _bad_init(key, shape, dtype=jnp.float32):
    return jnp.zeros((1,), dtype)


CONSTRUCTION_ERRORS = [
    (
        lambda: nnx.Linear(0, 4, rngs=nnx.Rngs(0)),
        nnx.layers.LayerError,
        r"Linear: `in_features` must be a positive int, got 0",
    ),
    (
        lambda: nnx.LinearGeneral((2, 3), 4, axis=-1, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"LinearGeneral: `axis` \(-1,\) has 1 entries but `in_features` \(2, 3\) has 2",
    ),
    (
        lambda: nnx.Einsum("ab,bc->ac", (2, 3, 4), rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Einsum: the kernel subscripts 'bc' .* name 2 axes but kernel_shape \(2, 3, 4\) has 3",
    ),
    (
        lambda: nnx.Einsum("nta,hab->nthb", (8, 2, 4), (8, 5), rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Einsum: bias_shape \(8, 5\) .* axis 'b' has size 4 in the kernel.*expected 4 or 1",
    ),
    (
        lambda: nnx.Einsum("ab,bc->ac", (3, 4), (2, 3, 4), rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Einsum: bias_shape \(2, 3, 4\) has 3 axes but the output 'ac'",
    ),
    (
        lambda: nnx.Conv(3, 4, (3, 3), feature_group_count=2, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Conv: in_features \(3\) and out_features \(4\) must both be divisible by feature_group_count \(2\)",
    ),
    (
        lambda: nnx.Conv(1, 1, (3, 3), strides=(1, 2, 3), rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Conv: `strides` has 3 entries, expected 2",
    ),
    (
        lambda: nnx.Conv(1, 1, (3, 3), kernel_dilation=(1, 2, 3), rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Conv: `kernel_dilation` has 3 entries, expected 2",
    ),
    (
        lambda: nnx.Conv(1, 1, (3, 3), padding=[(1, 1)] * 3, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Conv: padding .* has 3 entries, expected 2",
    ),
    (
        lambda: nnx.Conv(1, 1, (3, 3), mask=jnp.ones((3, 1, 1)), rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Conv: `mask` has shape \(3, 1, 1\), expected the kernel shape \(3, 3, 1, 1\)",
    ),
    (
        lambda: nnx.Conv(2, 4, (3, 3), kernel_init=_bad_init, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Conv: the initializer of `kernel` returned shape \(1,\), expected \(3, 3, 2, 4\)",
    ),
    (
        lambda: nnx.Conv(1, 1, (0, 3), rngs=nnx.Rngs(0)),
        nnx.layers.LayerError,
        r"Conv: `kernel_size` must be positive ints",
    ),
    (
        lambda: nnx.ConvTranspose(1, 1, 3, padding="CAUSAL", rngs=nnx.Rngs(0)),
        nnx.layers.LayerError,
        r"ConvTranspose: padding='CAUSAL' is not supported",
    ),
    (
        lambda: nnx.ConvTranspose(2, 3, (3,), mask=jnp.ones((3, 3, 2)), rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"ConvTranspose: `mask` has shape \(3, 3, 2\), expected the kernel shape \(3, 2, 3\)",
    ),
    (
        lambda: nnx.ConvTranspose(2, 3, (3, 3), strides=(2,) * 3, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"ConvTranspose: `strides` has 3 entries, expected 2",
    ),
    (
        lambda: nnx.Embed(0, 4, rngs=nnx.Rngs(0)),
        nnx.layers.LayerError,
        r"Embed: `num_embeddings` must be a positive int",
    ),
    (
        lambda: nnx.Embed(5, 4, embedding_init=_bad_init, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"Embed: the initializer of `embedding` returned shape \(1,\), expected \(5, 4\)",
    ),
    (
        lambda: nnx.BatchNorm(3, momentum=1.5, rngs=nnx.Rngs(0)),
        nnx.layers.LayerError,
        r"BatchNorm: momentum must be in \[0, 1\], got 1.5",
    ),
    (
        lambda: nnx.LayerNorm(3, scale_init=_bad_init, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"LayerNorm: the initializer of `scale` returned shape \(1,\), expected \(3,\)",
    ),
    (
        lambda: nnx.GroupNorm(6, num_groups=4, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"GroupNorm: num_features \(6\) must be a positive multiple of num_groups \(4\)",
    ),
    (
        lambda: nnx.GroupNorm(6, num_groups=None, group_size=4, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"GroupNorm: num_features \(6\) is not divisible by group_size \(4\)",
    ),
    (
        lambda: nnx.MultiHeadAttention(3, 4, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"MultiHeadAttention: qkv_features \(4\) must be divisible by num_heads \(3\)",
    ),
    (
        lambda: nnx.LSTMCell(3, 0, rngs=nnx.Rngs(0)),
        nnx.layers.LayerError,
        r"LSTMCell: `hidden_features` must be a positive int",
    ),
    (
        lambda: nnx.LoRA(3, 0, 4, rngs=nnx.Rngs(0)),
        nnx.layers.LayerError,
        r"LoRA: `lora_rank` must be a positive int",
    ),
    (
        lambda: nnx.LoRA(3, 2, 4, a_initializer=_bad_init, rngs=nnx.Rngs(0)),
        nnx.layers.ShapeError,
        r"LoRA: the initializer of `lora_a` returned shape \(1,\), expected \(3, 2\)",
    ),
    (
        lambda: nnx.Dropout(-0.1),
        nnx.layers.LayerError,
        r"Dropout: rate must be in \[0, 1\], got -0.1",
    ),
]


@pytest.mark.parametrize("build, error, message", CONSTRUCTION_ERRORS)
def test_construction_errors_name_the_layer_and_the_expected_shape(build, error, message):
    with pytest.raises(error, match=message):
        build()


CALL_ERRORS = [
    (
        lambda: nnx.Linear(3, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 5))),
        r"Linear\(in_features=3\) .* size 3, got shape \(2, 5\)",
    ),
    (
        lambda: nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))(jnp.ones((5, 5, 3))[..., :2]),
        r"Conv\(in_features=3, kernel_size=\(3, 3\)\) expects inputs of shape \(\*batch, 2 spatial axes, 3\), got \(5, 5, 2\)",
    ),
    (
        lambda: nnx.ConvTranspose(3, 4, (3,), rngs=nnx.Rngs(0))(jnp.ones((3,))),
        r"ConvTranspose\(in_features=3, kernel_size=\(3,\)\) expects inputs of shape \(\*batch, 1 spatial axes, 3\), got \(3,\)",
    ),
    (
        lambda: nnx.Embed(5, 4, rngs=nnx.Rngs(0)).attend(jnp.ones((2, 3))),
        r"Embed\(features=4\)\.attend expects queries whose last axis has size 4, got shape \(2, 3\)",
    ),
    (
        lambda: nnx.BatchNorm(3, rngs=nnx.Rngs(0))(jnp.ones((2, 4))),
        r"BatchNorm\(num_features=3\) got an input of shape \(2, 4\) whose feature axes \(1,\) hold 4",
    ),
    (
        lambda: nnx.LayerNorm(3, rngs=nnx.Rngs(0))(jnp.ones((2, 4))),
        r"LayerNorm\(num_features=3\) got an input of shape \(2, 4\)",
    ),
    (
        lambda: nnx.RMSNorm(3, rngs=nnx.Rngs(0))(jnp.ones((2, 4))),
        r"RMSNorm\(num_features=3\) got an input of shape \(2, 4\)",
    ),
    (
        lambda: nnx.GroupNorm(4, num_groups=2, rngs=nnx.Rngs(0))(jnp.ones((2, 3))),
        r"GroupNorm\(num_features=4\) expects the last axis to hold the features, got shape \(2, 3\)",
    ),
    (
        lambda: nnx.InstanceNorm(3, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 4))),
        r"InstanceNorm\(num_features=3\) got an input of shape \(2, 5, 4\)",
    ),
    (
        lambda: nnx.MultiHeadAttention(2, 4, in_kv_features=3, rngs=nnx.Rngs(0))(
            jnp.ones((1, 2, 4)), jnp.ones((1, 2, 4))
        ),
        r"MultiHeadAttention: inputs_k must have 3 features on its last axis, got shape \(1, 2, 4\)",
    ),
    (
        lambda: nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))(jnp.zeros((2, 4)), jnp.ones((2, 5))),
        r"GRUCell\(in_features=3\) takes one time step of shape \(\*batch, 3\), got \(2, 5\)",
    ),
    (
        lambda: nnx.RNN(nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0)))(jnp.ones((2, 6, 5))),
        r"SimpleCell\(in_features=3\) takes one time step of shape \(\*batch, 3\), got \(2, 5\)",
    ),
    (
        lambda: nnx.LoRA(3, 2, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 5))),
        r"LoRA\(in_features=3\) expects inputs whose last axis has size 3, got shape \(2, 5\)",
    ),
    (
        lambda: nnx.dot_product_attention(
            jnp.ones((1, 2, 2, 4)), jnp.ones((1, 3, 2, 3)), jnp.ones((1, 3, 2, 3))
        ),
        r"dot_product_attention: query .* must agree on batch and depth; got \(1, 2, 2, 4\) and \(1, 3, 2, 3\)",
    ),
]


@pytest.mark.parametrize("call, message", CALL_ERRORS)
def test_call_errors_name_the_layer_and_the_expected_shape(call, message):
    with pytest.raises(nnx.layers.ShapeError, match=message):
        call()
