"""Initializer wrappers that attach metadata to the Variable they initialize:
:func:`with_partitioning`, :func:`with_metadata` and the :class:`VariableMetadata`
they return (every Variable constructor unpacks it)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from nnx.core._var_aux import _METADATA_ALIASES, _canonical_metadata, _freeze

A = TypeVar("A")


class VariableMetadata(Generic[A]):
    """A value with the metadata its Variable should carry.

    Initializers wrapped by :func:`with_partitioning` return one; every
    Variable constructor unpacks it::

        init = nnx.with_partitioning(jax.nn.initializers.ones, (None, "model"))
        p = nnx.Param(init(key, (2, 4)))
        p.sharding_names  # (None, 'model')
    """

    __slots__ = ("value", "metadata")

    def __init__(self, value: A, metadata: dict):
        self.value = value
        self.metadata = dict(metadata)


def with_partitioning(initializer, sharding_names, mesh=None, **metadata):
    """Wrap an initializer so that its Variable records ``sharding_names``.

    Example::

        kernel_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "model"))
        # nnx.Linear(2, 8, kernel_init=kernel_init, rngs=rngs).kernel.sharding_names
        # == (None, "model")

    Under ``jax.set_mesh(mesh)``, or with ``mesh`` given here, the Variable's
    array is sharded when it is created (see ``nnx.use_eager_sharding``).
    """
    if mesh is not None:
        metadata = {"mesh": mesh, **metadata}
    return _Partitioned(initializer, tuple(sharding_names), metadata)


class _Partitioned:
    """What :func:`with_partitioning` returns: an object, not a closure, so that it (and
    a model holding it) pickles, and two made alike compare equal."""

    __slots__ = ("__wrapped__", "sharding_names", "metadata")

    def __init__(self, initializer, sharding_names: tuple, metadata: dict):
        self.__wrapped__ = initializer  # like functools.wraps
        self.sharding_names = sharding_names
        self.metadata = metadata

    def __call__(self, *args, **kwargs) -> VariableMetadata:
        value = self.__wrapped__(*args, **kwargs)
        return VariableMetadata(value, {"out_sharding": self.sharding_names, **self.metadata})

    def __eq__(self, other):
        return type(other) is _Partitioned and (
            self.__wrapped__ == other.__wrapped__
            and self.sharding_names == other.sharding_names
            and self.metadata == other.metadata
        )

    def __hash__(self):
        return hash((self.__wrapped__, self.sharding_names))

    def __repr__(self) -> str:
        return f"nnx.with_partitioning({self.__wrapped__!r}, {self.sharding_names!r})"


def with_metadata(initializer, **metadata):
    """Wrap an initializer so that the Variable it initializes carries ``metadata``.

    The wrapped initializer returns a :class:`VariableMetadata`, which every Variable
    constructor unpacks (layers pass their initializers' results to ``nnx.Param``):

    >>> import jax, nnx
    >>> init = nnx.with_metadata(jax.nn.initializers.ones, lr_scale=0.1)
    >>> p = nnx.Param(init(jax.random.key(0), (2,)))
    >>> p.lr_scale, p[...].tolist()
    (0.1, [1.0, 1.0])
    """
    return _WithMetadata(initializer, _canonical_metadata(metadata))


class _WithMetadata:
    """What :func:`with_metadata` returns: an object (picklable, equal when made alike)."""

    __slots__ = ("__wrapped__", "metadata")

    def __init__(self, initializer, metadata: dict):
        self.__wrapped__ = initializer
        self.metadata = metadata

    def __call__(self, *args, **kwargs) -> VariableMetadata:
        value = self.__wrapped__(*args, **kwargs)
        if isinstance(value, VariableMetadata):  # nested wrappers: inner metadata first
            return VariableMetadata(value.value, {**value.metadata, **self.metadata})
        return VariableMetadata(value, self.metadata)

    def __eq__(self, other):
        return (
            type(other) is _WithMetadata
            and self.__wrapped__ == other.__wrapped__
            and _freeze(self.metadata) == _freeze(other.metadata)
        )

    def __hash__(self):
        return hash((self.__wrapped__, _freeze(self.metadata)))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.metadata.items())
        return f"nnx.with_metadata({self.__wrapped__!r}, {args})"


def axis_names_changed(v: Any, axis_index: int, axis_name: Any, *, add: bool) -> None:
    """``Variable.add_axis`` (``add=True``) / ``remove_axis``: the Variable's
    ``on_add_axis`` / ``on_remove_axis`` hook, or its sharding names edited at
    ``axis_index`` (a removed entry must be ``axis_name``)."""
    meta = v._aux.metadata
    hook = meta.get("on_add_axis" if add else "on_remove_axis")
    if hook is not None:
        hook(v, axis_index, axis_name)
        return
    names = meta.get("out_sharding")
    if names is None:
        return
    names = list(names)
    if add:
        index = axis_index if axis_index >= 0 else len(names) + axis_index + 1
        names.insert(index, axis_name)
    else:
        if not -len(names) <= axis_index < len(names) or names[axis_index] != axis_name:
            raise ValueError(
                f"{type(v).__name__}.remove_axis({axis_index}, {axis_name!r}): its "
                f"sharding_names {tuple(names)} have no {axis_name!r} at {axis_index}"
            )
        del names[axis_index]
    v.set_metadata(sharding_names=tuple(names))


# -- the entries every Variable reports (Flax NNX's required metadata) ------------------
REQUIRED_METADATA = frozenset(("hijax", "ref", "eager_sharding"))
NO_DEFAULT: Any = object()  # get_metadata: no default given


def required_metadata(v: Any) -> dict:
    """``hijax``, ``ref`` and ``eager_sharding`` of ``v`` (from its storage mode; the
    last from its metadata when set there, else :func:`nnx.using_eager_sharding`)."""
    from nnx.core._sharding_rules import using_eager_sharding
    from nnx.core._var_aux import HIJAX, REF

    aux = v._aux
    eager = aux.metadata.get("eager_sharding")
    return {
        "hijax": aux.mode == HIJAX,
        "ref": aux.mode == REF,
        "eager_sharding": using_eager_sharding() if eager is None else eager,
    }


def get_metadata(v: Any, key: Any, default: Any, exclude_required: bool | None) -> Any:
    """``Variable.get_metadata``: an entry, or the whole dict with the required entries."""
    if key is not None and exclude_required is not None:
        raise TypeError(
            f"{type(v).__name__}.get_metadata: pass a name or exclude_required, not both"
        )
    meta = v._aux.metadata
    if key is None:
        if default is not NO_DEFAULT:
            raise TypeError(
                f"{type(v).__name__}.get_metadata: a default needs a name (got "
                f"default={default!r}); with no name the whole metadata dict is returned"
            )
        out = dict(meta)
        if not exclude_required:
            out.update(required_metadata(v))
        return out
    name = _METADATA_ALIASES.get(key, key)
    if name in meta:
        return meta[name]
    if name in REQUIRED_METADATA:
        return required_metadata(v)[name]
    if default is NO_DEFAULT:
        raise KeyError(
            f"{type(v).__name__} has no metadata {key!r} (it has {sorted(meta)}); "
            f"pass a default for an optional entry: v.get_metadata({key!r}, None)"
        )
    return default


def without_required(v: Any, metadata: dict) -> dict:
    """``metadata`` less the required entries, each checked against ``v``'s (a storage
    mode is not metadata: ``nnx.vars_as`` changes it)."""
    if not REQUIRED_METADATA.intersection(metadata):
        return metadata
    now = required_metadata(v)
    out = {}
    for k, x in metadata.items():
        if k not in REQUIRED_METADATA:
            out[k] = x
        elif x != now[k]:
            fix = (
                "change the storage with nnx.vars_as(tree, hijax=..., ref=...)"
                if k != "eager_sharding"
                else "it is fixed when the Variable is created"
            )
            raise ValueError(
                f"{type(v).__name__}.set_metadata: cannot change {k!r} from {now[k]!r} to "
                f"{x!r}; {fix}"
            )
    return out
