"""Linen collection names <-> Variable types (Flax NNX's registry):
``register_variable_name``, ``variable_type_from_name``, ``variable_name_from_type``."""

from __future__ import annotations

from typing import Any

from nnx.core._variables import BatchStat, Cache, Intermediate, Param, Perturbation, Variable

_NAME_TO_TYPE: dict[str, type[Variable]] = {}


def register_variable_name(name: str, typ: Any = None, *, overwrite: bool = False) -> Any:
    """Map the Linen collection name ``name`` to the Variable type ``typ``.

    Without ``typ`` it is a class decorator: ``@nnx.register_variable_name("counts")``.
    Mapping a name that is already mapped needs ``overwrite=True``.
    """
    if typ is None:
        return lambda cls: register_variable_name(name, cls, overwrite=overwrite)
    if not (isinstance(typ, type) and issubclass(typ, Variable)):
        raise TypeError(f"register_variable_name({name!r}, ...) needs a Variable type, got {typ!r}")
    if not overwrite and name in _NAME_TO_TYPE and _NAME_TO_TYPE[name] is not typ:
        raise ValueError(
            f"Name {name!r} is already mapped to {_NAME_TO_TYPE[name].__name__}. To map it to "
            f"{typ.__name__}, call register_variable_name({name!r}, ..., overwrite=True)."
        )
    _NAME_TO_TYPE[name] = typ
    return typ


def variable_type_from_name(
    name: str, /, *, base: type[Variable] = Variable, allow_register: bool = False
) -> type[Variable]:
    """The Variable type of the Linen collection ``name`` (``'params'`` -> ``Param``).

    An unknown name is a ``ValueError``, or with ``allow_register=True`` a new
    subclass of ``base`` named ``name``, registered.
    """
    typ = _NAME_TO_TYPE.get(name)
    if typ is not None:
        return typ
    if not allow_register:
        raise ValueError(
            f"Name {name!r} is not registered; registered: {sorted(_NAME_TO_TYPE)}. "
            "Register it with nnx.register_variable_name(name, VariableType), or pass "
            "allow_register=True to create one."
        )
    typ = type(name, (base,), {"__module__": __name__})
    _NAME_TO_TYPE[name] = typ
    return typ


def variable_name_from_type(typ: type[Variable], /, *, allow_register: bool = False) -> str:
    """The Linen collection name of the Variable type ``typ`` (``Param`` -> ``'params'``).

    An unregistered type is a ``ValueError``, or with ``allow_register=True`` it is
    registered under its class name.
    """
    for name, t in _NAME_TO_TYPE.items():
        if t is typ:
            return name
    if not allow_register:
        raise ValueError(
            f"Type {typ.__name__} is not registered. Register it with "
            f"nnx.register_variable_name('<name>', {typ.__name__}), or pass allow_register=True."
        )
    name = typ.__name__
    if name in _NAME_TO_TYPE:
        raise ValueError(
            f"Name {name!r} is already mapped to {_NAME_TO_TYPE[name].__name__}, so "
            f"{typ.__name__} cannot take it; register it under another name."
        )
    _NAME_TO_TYPE[name] = typ
    return name


for _n, _t in (
    ("params", Param),
    ("batch_stats", BatchStat),
    ("cache", Cache),
    ("intermediates", Intermediate),
    ("perturbations", Perturbation),
):
    register_variable_name(_n, _t)
