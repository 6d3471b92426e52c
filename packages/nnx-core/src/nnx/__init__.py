"""nnx: neural networks for JAX with Python reference semantics.

This flat namespace is owned by the ``nnx-core`` distribution. It re-exports
every public name of :mod:`nnx.core`, and resolves the names of the sibling
distributions lazily::

    import nnx
    nnx.Variable      # nnx-core, always there
    nnx.Linear        # nnx-layers
    nnx.jit           # nnx-transforms
    nnx.Optimizer     # nnx-optim

When a sibling is not installed, its names raise :class:`MissingPackageError`
(an ``AttributeError``) that says which distribution to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from typing import TYPE_CHECKING

# Siblings ship ``nnx/<pkg>/`` only. In an editable install of the monorepo
# they live in other source folders, so the ``nnx`` package path is extended
# with every ``nnx/`` folder found on ``sys.path``.
__path__ = pkgutil.extend_path(__path__, __name__)

from nnx import core as core  # noqa: E402
from nnx.core import *  # noqa: E402,F403
from nnx.core import __all__ as _core_all  # noqa: E402

if TYPE_CHECKING:  # let type checkers see the sibling namespaces
    from nnx.layers import *  # noqa: F403
    from nnx.optim import *  # noqa: F403
    from nnx.transforms import *  # noqa: F403

# subpackage -> distribution that ships it
_SIBLINGS: dict[str, str] = {
    "transforms": "nnx-transforms",
    "layers": "nnx-layers",
    "optim": "nnx-optim",
}

# Names a newcomer is likely to reach for, mapped to the distribution that
# provides them, so that the error is precise even when the sibling is absent.
_KNOWN_NAMES: dict[str, str] = {
    **dict.fromkeys(
        (
            "jit vmap scan grad value_and_grad remat cond switch fori_loop while_loop "
            "eval_shape custom_vjp shard_map jvp vjp checkify Carry StateAxes DiffState "
            "split_rngs"
        ).split(),
        "transforms",
    ),
    **dict.fromkeys(
        (
            "Linear LinearGeneral Einsum Conv ConvTranspose Embed BatchNorm LayerNorm "
            "RMSNorm GroupNorm InstanceNorm Dropout MultiHeadAttention "
            "dot_product_attention make_attention_mask make_causal_mask LSTMCell GRUCell "
            "SimpleCell RNN Bidirectional Sequential LoRA LoRALinear LoRAParam avg_pool "
            "max_pool min_pool one_hot gelu relu silu softmax log_softmax tanh sigmoid "
            "initializers"
        ).split(),
        "layers",
    ),
    **dict.fromkeys("Optimizer ModelAndOptimizer OptState metrics EMA".split(), "optim"),
}


class MissingPackageError(AttributeError):
    """Raised for a name whose nnx distribution is not installed."""


def _sibling(sub: str):
    """The sibling subpackage ``nnx.<sub>``, or None when it is not installed."""
    name = f"nnx.{sub}"
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    if name in _SIBLINGS:  # nnx.layers, nnx.optim, ...
        mod = _sibling(name)
        if mod is None:
            raise MissingPackageError(
                f"nnx.{name} is not installed: `pip install {_SIBLINGS[name]}`"
            )
        return mod
    for sub in _SIBLINGS:
        mod = _sibling(sub)
        if mod is not None and name in getattr(mod, "__all__", ()):
            value = getattr(mod, name)
            globals()[name] = value  # later lookups skip __getattr__
            return value
    if name in _KNOWN_NAMES:
        dist = _SIBLINGS[_KNOWN_NAMES[name]]
        raise MissingPackageError(
            f"nnx.{name} is provided by the {dist!r} distribution, which is not "
            f"installed. Install it with `pip install {dist}`."
        )
    raise AttributeError(f"module 'nnx' has no attribute {name!r}")


def __dir__() -> list[str]:
    names = set(globals()) | set(_core_all)
    for sub in _SIBLINGS:
        mod = _sibling(sub)
        if mod is not None:
            names.update(getattr(mod, "__all__", ()))
            names.add(sub)
    return sorted(names)
