"""``EMA``: an exponential moving average of a model's parameters."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from nnx.core import Param, Pytree, State, Variable, data, merge, split, to_predicate
from nnx.optim._errors import GradientStructureError, OptimError
from nnx.optim._optimizer import (
    OptState,
    Selection,
    _filter_name,
    _keystr,
    _path_key,
    select,
    storage_mode,
)


def _fresh_copy(v: Variable) -> Variable:
    """A new Variable of ``v``'s kind, metadata and mode, holding a copy of its value."""
    return v.replace(jax.tree.map(lambda x: jnp.array(x, copy=True), v.get_value()))


def _check_decay(decay: Any, where: str) -> None:
    if isinstance(decay, (int, float)) and not 0.0 <= decay <= 1.0:
        raise ValueError(f"{where}: decay must be in [0, 1], got {decay}.")


class EMA(Pytree):
    """An exponential moving average of the Variables of a model that ``wrt`` selects.

    Example::

        ema = nnx.EMA(model, decay=0.999)        # copies of model's Params
        for _ in range(3):                       # after each training step
            ema.update(model)                    # ema = d * ema + (1 - d) * model
        eval_model = ema.apply_to(model)         # model's structure, EMA parameters
        eval_model(x)

        ema.decay[...] = 0.9999                  # change it between (jitted) steps
        ema.update(model, decay=0.99)            # or per call (may be traced)

    ``update`` writes through ``v[...] = ...``, so it works inside ``nnx.jit``
    and, with ref or hijax Variables, inside a plain ``jax.jit``.

    Attributes:
      params: a State of the averaged Variables (same kinds, metadata and
        storage mode as the model's; copies, not the model's own).
      decay: an ``OptState`` float32 scalar, stored like the model's Variables,
        so writing it (eagerly or inside a jit) does not retrace.
      wrt: the filter (static).

    Args:
      model: the model (or any object graph) whose Variables are averaged.
      decay: weight of the old average at each update, in [0, 1].
      wrt: filter selecting the averaged Variables (default ``nnx.Param``).
    """

    def __init__(self, model: Any, decay: float = 0.999, *, wrt: Any = Param):
        _check_decay(decay, "EMA")
        sel = select(model, to_predicate(wrt), arrays=False)
        if not sel.variables:
            raise OptimError(
                f"EMA: {type(model).__name__} has no Variable matching wrt={_filter_name(wrt)}."
            )
        self.decay = OptState(jnp.asarray(decay, dtype=jnp.float32), **storage_mode(sel.variables))
        self.wrt = wrt
        self.params = data(
            State.from_flat((p, _fresh_copy(v)) for p, v in zip(sel.paths, sel.variables))
        )

    def _pairs(self, source: Any) -> list[tuple[Variable, Any]]:
        """(EMA Variable, new value) pairs; ``source`` is a model or a State of it."""
        if isinstance(source, State):
            items = [
                (p, x)
                for p, x in source.flat_state()
                if not isinstance(x, Variable) or to_predicate(self.wrt)(p, x)
            ]
            new = dict(items)
        else:
            sel: Selection = select(source, to_predicate(self.wrt), arrays=False)
            new = dict(zip(sel.paths, sel.variables))
        mine = self.params.flat_state()
        have = {p for p, _ in mine}
        for p in sorted(have ^ set(new), key=_path_key):
            where = "the EMA has no" if p not in have else "the source has no"
            raise GradientStructureError(
                f"EMA.update: {where} Variable at {_keystr(p)!r}; the source must have the "
                f"structure of the model the EMA was made from (wrt={_filter_name(self.wrt)})."
            )
        return [(v, new[p]) for p, v in mine]

    def update(self, source: Any, *, decay: Any = None) -> None:
        """``ema = decay * ema + (1 - decay) * source`` for every averaged Variable.

        Args:
          source: the model (or a State of its selected Variables or arrays).
          decay: the decay for this call only (a number or a traced scalar);
            default ``self.decay``.
        """
        if decay is None:
            d = self.decay[...]
        else:
            _check_decay(decay, "EMA.update")
            d = decay
        for ema_v, x in self._pairs(source):
            if isinstance(x, Variable):
                x = x.get_value()
            old = ema_v[...]
            ema_v[...] = (d * old + (1.0 - d) * x).astype(old.dtype)

    def apply_to(self, model: Any) -> Any:
        """A new graph with ``model``'s structure whose selected Variables are the EMA's.

        The other Variables (batch statistics, ...) are the model's own, shared.
        """
        graphdef, _, rest = split(model, self.wrt, ...)
        return merge(graphdef, self.params, rest)
