"""Errors of a transform's JAX call, explained in nnx terms (looked at on the error path only)."""

from __future__ import annotations

from functools import partial

import jax
import jax.core  # Tracer; jax does not list `core` among its attributes for type checkers
import numpy as np

from nnx.core import Variable
from nnx.transforms._boundary import Prepared, _path_str
from nnx.transforms._calls import _short
from nnx.transforms._errors import DonatedArray, DonatedBufferError, deleted_array

_JAX_LEAF_TYPES = (jax.Array, np.ndarray, np.generic, int, float, bool, complex, jax.Ref)


def explain_call_error(prep: Prepared | None, names, where: str, e: Exception) -> Exception | None:
    """After the JAX call raised ``e``: an error naming the leaf at fault, or None.

    Looked at only on the error path (no cost per call). Two causes are
    recognised: a Variable whose array was deleted before the call (donated to
    a call that failed, :class:`DonatedBufferError`; JAX says "deleted") and a
    Variable or raw leaf holding a value JAX cannot take (a string, an
    arbitrary object: ``TypeError``).
    """
    if prep is None:
        return None
    input_deleted = "deleted" in str(e)

    paths = prep.paths
    for i, x in enumerate(prep.leaves):
        raw = x.get_raw_value() if isinstance(x, Variable) else x
        what = type(x).__name__ if isinstance(x, Variable) else "array"
        for a in jax.tree.leaves(raw, is_leaf=lambda r: isinstance(r, jax.Ref)):
            if isinstance(a, DonatedArray):
                return DonatedBufferError(f"{where}: {a.message}")
            if (
                input_deleted
                and isinstance(a, jax.Array)
                and not isinstance(a, jax.core.Tracer)
                and a.is_deleted()
            ):
                return DonatedBufferError(
                    f"{where}: the {what} at {_path_str(paths[i], names)} has no array any "
                    "more: its buffer was donated (donate_argnums/donate_argnames) to an "
                    "nnx.jit call that failed, and JAX deleted it. Restore the model from "
                    "a checkpoint or rebuild it (e.g. `nnx.update(model, saved_state)` "
                    "from a copy taken before the step); to keep the buffers when a step "
                    "may fail, call it without donation."
                )
            stored = isinstance(x, Variable) and (x.hijax or x.ref)  # cells and refs
            if not (stored or isinstance(a, _JAX_LEAF_TYPES)):
                return TypeError(
                    f"{where}: the {what} at {_path_str(paths[i], names)} holds a value of "
                    f"type {type(a).__name__} ({_short(a)}), which JAX cannot take as an "
                    "argument. Variables passed to a transform hold arrays; keep other "
                    "values in a plain (static) attribute, e.g. `self.name = 'abc'`, "
                    "or convert it with jnp.asarray."
                )
    return None


def donated_note(prep: Prepared | None, mask, names, where: str = "nnx.jit") -> str | None:
    """A note for an error of a donating call: which Variables lost their arrays.

    Each deleted array is replaced by a :class:`DonatedArray`, so that the next use of
    the model, eager or in a transform, raises :class:`DonatedBufferError` naming the
    Variable instead of JAX's bare "Array has been deleted".
    """
    if prep is None or not mask:
        return None
    lost = []
    for i, (x, m) in enumerate(zip(prep.leaves, mask)):
        if not (m and isinstance(x, Variable)):
            continue
        raw = x.get_raw_value()
        if not any(deleted_array(a) for a in jax.tree.leaves(raw)):
            continue
        path = _path_str(prep.paths[i], names)
        lost.append(path)
        message = (
            f"the {type(x).__name__} at {path} has no array any more: its buffer was "
            f"donated (donate_argnums/donate_argnames) to {where}, which failed, and JAX "
            "deleted it. Restore the model from a copy or checkpoint taken before the "
            "step (e.g. `nnx.update(model, saved_state)`); to keep the buffers when a "
            "step may fail, call it without donation."
        )
        x.set_raw_value(jax.tree.map(partial(_stand_in, message=message, where=where), raw))
    if not lost:
        return None
    more = f" (and {len(lost) - 5} more)" if len(lost) > 5 else ""
    return (
        f"{where}: this call donated the buffers of {', '.join(lost[:5])}{more}; JAX "
        "deleted them, so these Variables cannot be used again. Restore them from a "
        "checkpoint, or call without donate_argnums while debugging."
    )


def _stand_in(a, message: str, where: str):
    return DonatedArray(a, message, where) if deleted_array(a) else a
