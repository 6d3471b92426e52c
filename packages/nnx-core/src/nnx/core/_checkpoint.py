"""Checkpoints with orbax-checkpoint, by parameter path, in every Variable mode.

orbax-checkpoint is optional (``pip install nnx-core[checkpoint]``) and imported
only when one of these functions runs. They add to orbax what a model needs:

- :func:`save_checkpoint` saves the State of a model (or of several objects, a
  ``(model, optimizer)`` pair) whatever its Variables' storage mode;
- :func:`restore_checkpoint` compares the checkpoint with the target by path
  before reading anything (a missing, extra or reshaped parameter is a
  ``StructureError`` that names it), restores onto the target's shardings, and
  gives the values in the target's Variable modes: into a live model in place,
  or as a new model from an abstract one (``nnx.eval_shape``).

Plain orbax works too, in every mode: ``checkpointer.save(path, nnx.state(model))``,
``checkpointer.restore(path, abstract_state)`` then ``nnx.update(model, restored)``
(a ref Variable's ``jax.Ref`` reads as a NumPy array: :func:`nnx.new_ref`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import get_opaque_trace_state

from nnx.core._errors import StructureError
from nnx.core._paths import path_str
from nnx.core._state import State
from nnx.core._variables import PLAIN, Variable


def _trace():
    return get_opaque_trace_state(convention="nnx")


def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError:  # pragma: no cover - the extra is installed in the test envs
        raise ImportError(
            "nnx checkpoints need orbax-checkpoint: `pip install nnx-core[checkpoint]` "
            "(or `pip install orbax-checkpoint`)."
        ) from None
    return ocp


def _state_of(tree) -> State:
    if isinstance(tree, State):
        return tree
    from nnx.core._graph import state

    return state(tree)  # type: ignore[return-value]


def _value_of(v):
    return v.get_value() if isinstance(v, Variable) else v


def _is_key(x) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _key_data(x):
    return jax.random.key_data(x) if _is_key(x) and isinstance(x, jax.Array) else x


def _plain_state(state: State) -> State:
    """Every Variable as a plain Variable of the same kind and metadata, its PRNG keys
    (the Rngs streams) as their ``uint32`` data, which orbax stores."""
    out = []
    for path, v in state.flat_state():
        if isinstance(v, Variable):
            aux = v._aux
            value = jax.tree.map(_key_data, v.get_value())
            v = type(v)._from_raw(value, aux.replace(mode=PLAIN), _trace())
        else:
            v = jax.tree.map(_key_data, v)
        out.append((path, v))
    return State.from_flat(out)


def save_checkpoint(path: str | os.PathLike, tree: Any, *, force: bool = False) -> None:
    """Save the State of ``tree`` (a model, a State, or a tuple of objects) with orbax.

    Example::

        import pathlib, tempfile

        ckpt_dir = pathlib.Path(tempfile.mkdtemp())          # orbax wants an absolute path
        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        nnx.save_checkpoint(ckpt_dir / "step_100", (model, optimizer))
        print([p.name for p in ckpt_dir.iterdir()])          # ['step_100']
        nnx.save_checkpoint(ckpt_dir / "step_100", model, force=True)   # overwrite it

    Works in every Variable mode (plain, ref, hijax): the values are read out of
    refs and cells and saved by parameter path (``linear/kernel/value``), each
    array once even when objects share it. Sharded arrays are saved sharded.
    ``force=True`` overwrites an existing checkpoint at ``path``.
    """
    ocp = _orbax()
    plain = _plain_state(_state_of(tree))
    checkpointer = ocp.StandardCheckpointer()
    try:
        checkpointer.save(os.path.abspath(os.fspath(path)), plain, force=force)
        checkpointer.wait_until_finished()
    finally:
        checkpointer.close()


def _abstract_leaf(x):
    if _is_key(x):  # stored as its key data
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
        return jax.ShapeDtypeStruct(data.shape, data.dtype)
    if isinstance(x, jax.ShapeDtypeStruct):
        return x
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        sharding = x.sharding if isinstance(x, jax.Array) else None
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return x


def _abstract_state(state: State) -> State:
    out = []
    for path, v in state.flat_state():
        if isinstance(v, Variable):
            value = jax.tree.map(_abstract_leaf, v.get_value())
            v = type(v)._from_raw(value, v._aux.replace(mode=PLAIN), _trace())
        else:
            v = jax.tree.map(_abstract_leaf, v)
        out.append((path, v))
    return State.from_flat(out)


def _names(keypath) -> tuple:
    out = []
    for k in keypath:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(str(k))
    return tuple(out)


def _path_str(names: tuple) -> str:
    if names and names[-1] == "value":
        names = names[:-1]
    return path_str(tuple(str(n) for n in names))


def _norm(names: tuple) -> tuple:
    return tuple(str(n) for n in names)


def _checkpoint_leaves(checkpointer, path) -> dict:
    meta = checkpointer.metadata(path)
    tree = getattr(meta, "item_metadata", meta)
    tree = getattr(tree, "tree", tree)
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
    )[0]
    return {_norm(_names(kp)): leaf for kp, leaf in leaves}


def _compare(abstract: State, stored: dict, partial: bool) -> set:
    """The target paths to read; raises StructureError on a mismatch, naming the path."""
    target = {
        _norm(_names(kp)): leaf for kp, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]
    }
    missing = [p for p in target if p not in stored]
    if missing and not partial:
        shown = ", ".join(repr(_path_str(p)) for p in missing[:5])
        raise StructureError(
            f"restore_checkpoint: the checkpoint has no value for {shown}"
            f"{' and more' if len(missing) > 5 else ''}, which the target holds. Restore "
            "into a model of the configuration that was saved, or pass partial=True to "
            "restore what the checkpoint has and keep the target's other values."
        )
    extra = [p for p in stored if p not in target]
    if extra and not partial:
        shown = ", ".join(repr(_path_str(p)) for p in extra[:5])
        raise StructureError(
            f"restore_checkpoint: the checkpoint holds {shown}"
            f"{' and more' if len(extra) > 5 else ''}, which the target has no place for. "
            "Restore into a model of the configuration that was saved, or pass "
            "partial=True to restore only the paths both have."
        )
    for p, leaf in target.items():
        if p not in stored:
            continue
        got = stored[p]
        shape, want = tuple(getattr(got, "shape", ())), tuple(getattr(leaf, "shape", ()))
        if shape != want:
            raise StructureError(
                f"restore_checkpoint: {_path_str(p)!r} is stored with shape {shape} "
                f"{getattr(got, 'dtype', '')}, but the target holds shape {want}. Build the "
                "target with the configuration that was saved, or convert the checkpoint: "
                "restore it into a model of the saved shape and copy what fits."
            )
    return {p for p in target if p in stored}


def restore_checkpoint(path: str | os.PathLike, target: Any, *, partial: bool = False) -> Any:
    """Restore a checkpoint into ``target``, checked by parameter path first.

    Example::

        import pathlib, tempfile

        ckpt = pathlib.Path(tempfile.mkdtemp()) / "step_100"
        model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
        nnx.save_checkpoint(ckpt, model)
        saved = model.kernel[...]

        model.kernel[...] = jnp.zeros((2, 3))
        nnx.restore_checkpoint(ckpt, model)                  # in place
        print(bool((model.kernel[...] == saved).all()))      # True

        abstract = nnx.eval_shape(lambda: nnx.Linear(2, 3, rngs=nnx.Rngs(1)))
        fresh = nnx.restore_checkpoint(ckpt, abstract)       # a new model
        print(bool((fresh.kernel[...] == saved).all()))      # True

        try:                                                 # checked by path and shape first
            nnx.restore_checkpoint(ckpt, nnx.Linear(2, 4, rngs=nnx.Rngs(0)))
        except nnx.StructureError as e:
            print(type(e).__name__)                          # StructureError

    ``target`` is a live model (or a tuple of objects): its Variables are
    written in place, in their own modes (plain, ref, hijax), and ``target``
    is returned. An abstract model (its values ``jax.ShapeDtypeStruct``\\ s,
    from ``nnx.eval_shape`` or :func:`get_abstract_model`) gives a new model
    with the same Variable modes. A State gives a new State. Arrays are placed
    on the target's shardings (``nnx.abstract_with_sharding`` gives an abstract
    model shardings), so a checkpoint saved on one mesh restores onto another.

    Before reading, the checkpoint's paths and shapes are compared with the
    target's: a path only one side has, or a shape that differs, is a
    ``StructureError`` that names it. ``partial=True`` restores the paths both
    have and leaves the target's other values as they are.
    """
    from nnx.core._graph import merge, split, update

    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    state = _state_of(target)
    abstract = _abstract_state(state)
    checkpointer = ocp.StandardCheckpointer()
    try:
        stored = _checkpoint_leaves(checkpointer, path)
        present = _compare(abstract, stored, partial)
        if partial:
            flat = [
                (p, v)
                for p, v in abstract.flat_state()
                if _norm((*p, "value")) in present or _norm(p) in present
            ]
            item = State.from_flat(flat)
            restored = _restore_partial(ocp, path, item)
        else:
            restored = checkpointer.restore(path, abstract)
    finally:
        checkpointer.close()
    restored = State(restored) if not isinstance(restored, State) else restored
    restored = _keys_back(state, restored)

    if isinstance(target, State):
        return State.from_flat(
            (p, _in_mode(v, _restored_leaf(restored, p))) for p, v in state.flat_state()
        )
    if _is_abstract(state):
        graphdef, _ = split(target)
        values = State.from_flat(
            (p, _in_mode(v, _restored_leaf(restored, p))) for p, v in state.flat_state()
        )
        return merge(graphdef, values)
    update(target, _only_restored(restored))
    return target


_MISSING = object()


def _keys_back(target: State, restored: State) -> State:
    """Key data read for a PRNG key of the target becomes a key of its implementation."""
    out = []
    for p, new in restored.flat_state():
        old = _restored_leaf(target, p)
        old_value = _value_of(old) if old is not _MISSING else None
        if old_value is not None and _is_key(old_value):
            impl = getattr(old_value.dtype, "_impl", None)
            data = _value_of(new)
            if not isinstance(data, jax.ShapeDtypeStruct):
                key = jax.random.wrap_key_data(data, impl=impl)
                new = new.replace(key) if isinstance(new, Variable) else key
        out.append((p, new))
    return State.from_flat(out)


def _restored_leaf(restored: State, path: tuple):
    node: Any = restored
    for k in path:
        if not isinstance(node, dict) or k not in node:
            return _MISSING
        node = dict.__getitem__(node, k)
    return node


def _in_mode(target_var, new):
    """``new`` (a restored plain Variable or value) in the kind and mode of ``target_var``."""
    if new is _MISSING:
        return target_var
    value = _value_of(new)
    if isinstance(target_var, Variable):
        from nnx.core._var_aux import _store

        aux = target_var._aux
        trace = _trace() if aux.mode == PLAIN else None
        return type(target_var)._from_raw(_store(aux.mode, value), aux, trace)
    return value


def _only_restored(restored: State) -> State:
    return State.from_flat(
        (p, v)
        for p, v in restored.flat_state()
        if not isinstance(_value_of(v), jax.ShapeDtypeStruct)
    )


def _is_abstract(state: State) -> bool:
    leaves = [x for _, v in state.flat_state() for x in jax.tree_util.tree_leaves(_value_of(v))]
    return bool(leaves) and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)


def _restore_partial(ocp, path: str, item: State):
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        restore_args = ocp.checkpoint_utils.construct_restore_args(item)
        return checkpointer.restore(
            path,
            args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True),
        )
    finally:
        checkpointer.close()
