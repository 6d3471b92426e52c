"""Running a recurrent cell over time: ``RNN``, ``Bidirectional``, ``scan_cell``, ``flip_sequences``.

``RNN`` runs its cell with ``jax.lax.scan`` using only nnx-core: the cell is flattened
once, its parameters are closed over (gradients flow through them as usual), its other
Variables (e.g. random streams) travel in the scan carry and are written back after.
The cells themselves are in ``_cells.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import jax
import jax.numpy as jnp
from jax import lax

from nnx.core import Carry as CarryMarker  # the axis marker; `Carry` below is the value type
from nnx.core import (
    Module,
    Param,
    Rngs,
    RngStream,
    flatten,
    is_variable,
    to_predicate,
    unflatten,
    vars_as,
)
from nnx.layers._common import first_from
from nnx.layers._errors import LayerError, ShapeError

Carry = Any


def flip_sequences(
    inputs: jax.Array,
    seq_lengths: jax.Array | None,
    num_batch_dims: int | None = None,
    time_major: bool | None = None,
    *,
    time_axis: int | None = None,
) -> jax.Array:
    """Reverse each sequence within its length; the padding stays after it. Its own inverse.

    >>> import jax.numpy as jnp
    >>> import nnx
    >>> x = jnp.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    >>> nnx.flip_sequences(x, jnp.array([1, 2, 3]), 1, False)    # Flax's arguments
    Array([[1, 0, 0],
           [3, 2, 0],
           [6, 5, 4]], dtype=int32)

    The time axis is ``0`` when ``time_major`` else ``num_batch_dims`` (Flax's
    spelling); or give ``time_axis`` directly (default 0 when neither is given).
    """
    if time_axis is None:
        if time_major is None or time_major:
            time_axis = 0
        elif num_batch_dims is None:
            raise LayerError(
                "flip_sequences: time_major=False needs num_batch_dims (the time axis "
                "follows the batch axes), or pass time_axis=."
            )
        else:
            time_axis = num_batch_dims
    xs = inputs
    if seq_lengths is None:
        return jnp.flip(xs, axis=time_axis)
    x = jnp.moveaxis(xs, time_axis, 0)
    steps = x.shape[0]
    lengths = jnp.asarray(seq_lengths)
    t = jnp.arange(steps).reshape((steps,) + (1,) * lengths.ndim)
    # (time, batch...): where each output step reads from (ranks aligned explicitly)
    src = (jnp.expand_dims(lengths, 0) - 1 - t) % steps
    src = src.reshape(src.shape + (1,) * (x.ndim - src.ndim))
    out = jnp.take_along_axis(
        x,
        jnp.broadcast_to(src, src.shape[: 1 + lengths.ndim] + x.shape[1 + lengths.ndim :]),
        axis=0,
    )
    return jnp.moveaxis(out, 0, time_axis)


def _is_carry(axis) -> bool:
    return axis is CarryMarker  # nnx.Carry (one object, defined in nnx-core)


_NO_RULE = object()


def _leaf_roles(flat, state_axes) -> list:
    """Per leaf of the flattened cell: "const" (the same value at every step; a write is
    an error), "carry" (threaded from step to step) or an int (scanned over that axis).

    Without ``state_axes``: Params are const, every other Variable is carried."""
    if state_axes is None:
        return [
            None if not is_variable(x) else ("const" if isinstance(x, Param) else "carry")
            for x in flat.leaves
        ]
    rules = [(to_predicate(f), axis) for f, axis in state_axes.items()]
    roles = []
    for path, x in zip(flat.paths, flat.leaves):
        if not is_variable(x):
            roles.append(None)
            continue
        axis = next((a for pred, a in rules if pred(path, x)), _NO_RULE)
        if axis is _NO_RULE:
            raise LayerError(
                f"RNN(state_axes=...): no filter matches the {type(x).__name__} at "
                f"{'/'.join(map(str, path))} of the cell. Add a last entry `...: nnx.Carry` "
                "(carried from step to step), `...: None` (the same at every step) or "
                "`...: 0` (scanned over its axis 0)."
            )
        if _is_carry(axis):
            roles.append("carry")
        elif axis is None:
            roles.append("const")
        elif isinstance(axis, int):
            roles.append(axis)
        else:
            raise LayerError(
                f"RNN(state_axes=...): {axis!r} for {'/'.join(map(str, path))} is not an "
                "axis; use nnx.Carry, None or an int."
            )
    return roles


def scan_cell(
    cell: Module,
    carry: Carry,
    xs: jax.Array,
    *,
    seq_lengths=None,
    unroll: int = 1,
    state_axes: Mapping | None = None,
    broadcast_rngs: Any = None,
):
    """Run ``carry, y = cell(carry, x_t)`` over axis 0 of ``xs`` with ``lax.scan``.

    Works in every Variable mode: the cell is rebuilt inside the scan body from plain
    values (``nnx.unflatten``); carried Variables are written back after.
    Steps at or past ``seq_lengths`` (per batch entry) leave the carry unchanged.
    ``state_axes`` and ``broadcast_rngs`` are :class:`RNN`'s.
    """
    plain = vars_as(cell, hijax=False, ref=False)
    flat = flatten(plain, with_paths=True)
    original = flatten(cell)
    originals = original.leaves
    if len(originals) != len(flat.leaves):  # pragma: no cover - guards a core invariant
        raise LayerError("RNN: the cell's flattened structure changed while converting it.")
    values = [leaf.get_value() if is_variable(leaf) else leaf for leaf in flat.leaves]
    roles = _leaf_roles(flat, state_axes)
    if broadcast_rngs is not None:
        # A broadcast stream hands every step the same key: one draw from the stream
        # before the loop (its count moves by one), then at each step a stream holding
        # that key with count 0 whose changes are dropped.
        pred = to_predicate(broadcast_rngs)
        index = {id(x): i for i, x in enumerate(flat.leaves)}
        for node, orig in zip(flat.nodes, original.nodes):
            if isinstance(node, RngStream) and pred(flat.paths[index[id(node.key)]], node.key):
                ki, ci = index[id(node.key)], index[id(node.count)]
                values[ki] = orig()
                values[ci] = jnp.zeros_like(values[ci])
                roles[ki] = roles[ci] = "rng"
    carried = [i for i, r in enumerate(roles) if r == "carry"]
    scanned = [i for i, r in enumerate(roles) if type(r) is int]
    graphdef = flat.graphdef
    steps = xs.shape[0]
    if seq_lengths is not None:
        seq_lengths = jnp.asarray(seq_lengths)

    def body(state, inputs):
        carried_vals, h = state
        t, x_t, scanned_vals = inputs
        leaves = list(values)
        for i, v in zip(carried, carried_vals):
            leaves[i] = v
        for i, v in zip(scanned, scanned_vals):
            leaves[i] = v
        step_cell = unflatten(graphdef, leaves)
        new_h, y = step_cell(h, x_t)
        new_leaves = flatten(step_cell).leaves
        if len(new_leaves) != len(leaves):
            raise LayerError(
                "RNN: the cell added or removed Variables during a step (e.g. with `sow`); "
                "a cell's structure must stay fixed over time."
            )
        for i, leaf in enumerate(new_leaves):
            if roles[i] != "const" or leaf.get_value() is values[i]:
                continue
            if isinstance(leaf, Param) and state_axes is None:
                raise LayerError(
                    "RNN: the cell wrote to a Param inside the time loop; Params are constant "
                    "over time. Keep changing state in another Variable kind (e.g. nnx.BatchStat)."
                )
            raise LayerError(
                f"RNN: the cell wrote to its {type(leaf).__name__} at "
                f"{'/'.join(map(str, flat.paths[i]))} inside the time loop, which "
                "state_axes maps to None (the same at every step). Map it to nnx.Carry "
                "to thread it from step to step."
            )
        new_carried = [new_leaves[i].get_value() for i in carried]
        new_scanned = [new_leaves[i].get_value() for i in scanned]
        if seq_lengths is not None:
            valid = t < seq_lengths  # (batch...)

            def keep(n, o):
                m = jnp.reshape(valid, valid.shape + (1,) * (jnp.ndim(n) - valid.ndim))
                return jnp.where(m, n, o)

            new_h = jax.tree.map(keep, new_h, h)
        return (new_carried, new_h), (y, new_scanned)

    init = ([values[i] for i in carried], carry)
    per_step = [jnp.moveaxis(values[i], roles[i], 0) for i in scanned]
    (final_vals, final_carry), (ys, stacked) = lax.scan(
        body, init, (jnp.arange(steps), xs, per_step), unroll=unroll
    )
    for i, v in zip(carried, final_vals):
        if originals[i].mutable:
            originals[i].set_value(v)
    for i, v in zip(scanned, stacked):
        if originals[i].mutable:
            originals[i].set_value(jnp.moveaxis(v, 0, roles[i]))
    return final_carry, ys


class _InitializesCarry(Protocol):
    """What ``RNN`` needs of a cell beyond ``__call__`` (checked in ``RNN.__init__``)."""

    def initialize_carry(self, input_shape: tuple[int, ...], rngs: Any = None) -> Carry: ...


class RNN(Module):
    """Runs a cell over the time axis of a sequence.

    Example::

        rnn = nnx.RNN(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)))
        x = jnp.ones((2, 7, 3))                             # (batch, time, features)
        ys = rnn(x)
        print(ys.shape)  # (2, 7, 4)
        carry, ys = rnn(x, return_carry=True)
        ys = rnn(x, seq_lengths=jnp.array([7, 4]))          # carry frozen after each length

    Inputs are ``(*batch, time, features)`` (``time_major=True``: ``(time, *batch,
    features)``). ``reverse=True`` runs from the end (each sequence reversed within its
    length); ``keep_order=True`` then puts outputs back in input order. Built on
    ``jax.lax.scan`` with nnx-core only, so it works under plain ``jax.jit`` in hijax mode.

    The cell's own state, as Flax's ``state_axes`` and ``broadcast_rngs`` say:

    - ``state_axes``: ``{filter: axis}``, the first matching filter for each of the
      cell's Variables: ``nnx.Carry`` (threaded from step to step), ``None`` (the
      same at every step) or an int (the Variable is scanned over that axis, one
      slice per step, as stacked per-step weights). Without it, Params are the same
      at every step and every other Variable is carried (``{nnx.Param: None, ...:
      nnx.Carry}``).
    - ``broadcast_rngs``: a filter of the cell's random streams (a stream name such as
      ``'recurrent_dropout'``) that give every step the same key: drawn once before
      the loop, so each of these streams advances by one per call (variational
      dropout). The other streams advance at every step.
    """

    def __init__(
        self,
        cell: Module,
        *,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        rngs: Rngs | None = None,
        state_axes: Mapping[Any, Any] | None = None,
        broadcast_rngs: Any = None,
    ):
        if not callable(cell) or not hasattr(cell, "initialize_carry"):
            raise LayerError(
                f"RNN needs a cell with __call__(carry, x) and initialize_carry(shape), got {type(cell).__name__}."
            )
        self.cell = cell
        self.time_major = time_major
        self.return_carry = return_carry
        self.reverse = reverse
        self.keep_order = keep_order
        self.unroll = unroll
        self.rngs = rngs
        self.state_axes = None if state_axes is None else dict(state_axes)
        self.broadcast_rngs = broadcast_rngs

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry: Carry | None = None,
        seq_lengths: jax.Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        rngs: Rngs | None = None,
    ):
        time_major = first_from(time_major, self.time_major)
        return_carry = first_from(return_carry, self.return_carry)
        reverse = first_from(reverse, self.reverse)
        keep_order = first_from(keep_order, self.keep_order)
        nfeat = getattr(self.cell, "num_feature_axes", 1)
        time_axis = 0 if time_major else inputs.ndim - (nfeat + 1)
        if time_axis < 0:
            raise ShapeError(
                f"RNN expects inputs (*batch, time, features), got shape {inputs.shape}."
            )
        if initial_carry is None:
            step_shape = inputs.shape[:time_axis] + inputs.shape[time_axis + 1 :]
            cell = cast(_InitializesCarry, self.cell)
            initial_carry = cell.initialize_carry(step_shape, rngs or self.rngs)
        xs = jnp.moveaxis(inputs, time_axis, 0)
        if reverse:
            xs = flip_sequences(xs, seq_lengths)
        carry, ys = scan_cell(
            self.cell,
            initial_carry,
            xs,
            seq_lengths=seq_lengths,
            unroll=self.unroll,
            state_axes=self.state_axes,
            broadcast_rngs=self.broadcast_rngs,
        )
        if reverse and keep_order:
            ys = jax.tree.map(lambda y: flip_sequences(y, seq_lengths), ys)
        ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, time_axis), ys)
        return (carry, ys) if return_carry else ys


def _concatenate(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.concatenate([a, b], axis=-1)


class Bidirectional(Module):
    """Runs one RNN forward and one backward over a sequence and merges their outputs.

    Example::

        bi = nnx.Bidirectional(nnx.RNN(nnx.GRUCell(3, 4, rngs=rngs)),
                               nnx.RNN(nnx.GRUCell(3, 4, rngs=rngs)))
        ys = bi(jnp.ones((2, 7, 3)))    # (2, 7, 8): forward and backward concatenated

    The backward RNN sees each sequence reversed (within ``seq_lengths``) and its
    outputs are put back in input order before ``merge_fn``.
    """

    def __init__(
        self,
        forward_rnn: RNN,
        backward_rnn: RNN,
        *,
        merge_fn: Callable[[Any, Any], Any] = _concatenate,
        time_major: bool = False,
        return_carry: bool = False,
    ):
        self.forward_rnn = forward_rnn
        self.backward_rnn = backward_rnn
        self.merge_fn = merge_fn
        self.time_major = time_major
        self.return_carry = return_carry

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry: tuple[Carry, Carry] | None = None,
        rngs: Rngs | None = None,
        seq_lengths: jax.Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,  # noqa: ARG002
        keep_order: bool | None = None,  # noqa: ARG002
    ):
        time_major = first_from(time_major, self.time_major)
        return_carry = first_from(return_carry, self.return_carry)
        fwd_carry, bwd_carry = initial_carry if initial_carry is not None else (None, None)
        carry_f, out_f = self.forward_rnn(
            inputs,
            initial_carry=fwd_carry,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=False,
            rngs=rngs,
        )
        carry_b, out_b = self.backward_rnn(
            inputs,
            initial_carry=bwd_carry,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=True,
            keep_order=True,
            rngs=rngs,
        )
        outputs = jax.tree.map(self.merge_fn, out_f, out_b)
        return ((carry_f, carry_b), outputs) if return_carry else outputs
