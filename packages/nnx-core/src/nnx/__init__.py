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

Flax's module paths (``nnx.graph``, ``nnx.nn.linear``, ``nnx.compat``, ...) are
modules made from the ``__nnx_paths__`` tables of the installed packages: each
package's public ``__init__`` may define ``__nnx_paths__ = {"nn.linear": "Linear
default_kernel_init", "compat": "jit=compat_jit", ...}``, mapping a dotted path
under ``nnx`` to the names (attributes of that package, or ``alias=attribute``)
the module at that path exposes. The module is the union of what every
installed package declares for it (nnx-core first); a path with children
(``nn`` for ``nn.linear``) is a package whose attributes include them. Real
modules always win.
"""

import importlib as _importlib
import importlib.abc as _importlib_abc
import importlib.machinery as _machinery
import importlib.util as _importlib_util
import pkgutil as _pkgutil
import sys as _sys
import types as _types
import typing as _typing

# Siblings ship ``nnx/<pkg>/`` only. In an editable install of the monorepo
# they live in other source folders, so the ``nnx`` package path is extended
# with every ``nnx/`` folder found on ``sys.path``.
__path__ = _pkgutil.extend_path(__path__, __name__)

import nnx._known as _known  # noqa: E402
from nnx import core as core  # noqa: E402
from nnx.core import *  # noqa: E402,F403
from nnx.core import __all__ as _core_all  # noqa: E402

if _typing.TYPE_CHECKING:  # let type checkers see the sibling namespaces
    from nnx.layers import *  # noqa: F403
    from nnx.optim import *  # noqa: F403
    from nnx.transforms import *  # noqa: F403

# subpackage -> distribution that ships it
_SIBLINGS: dict[str, str] = {
    "transforms": "nnx-transforms",
    "layers": "nnx-layers",
    "optim": "nnx-optim",
}

# Flat names of the siblings (their ``__all__``), mapped to the subpackage that
# provides them, so that the error is precise even when the sibling is absent.
# Generated from the siblings' api.txt snapshots by tools/known_names.py.
_KNOWN_NAMES: dict[str, str] = _known.NAMES


class MissingPackageError(AttributeError):
    """Raised for a name whose nnx distribution is not installed."""


def _sibling(sub: str):
    """The sibling subpackage ``nnx.<sub>``, or None when it is not installed."""
    name = f"nnx.{sub}"
    mod = _sys.modules.get(name)
    if mod is not None:
        return mod
    try:
        if _importlib_util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return _importlib.import_module(name)


def _missing_dists() -> list[str]:
    return [dist for sub, dist in _SIBLINGS.items() if _sibling(sub) is None]


# -- Flax module paths ------------------------------------------------------------
# path -> {exposed name: (package module name, attribute)}; None until built.
_paths: dict[str, dict[str, tuple[str, str]]] | None = None
_building = False


def _path_table() -> dict[str, dict[str, tuple[str, str]]]:
    """Every declared path (and every intermediate path) of the installed packages."""
    global _paths, _building
    if _paths is not None:
        return _paths
    table: dict[str, dict[str, tuple[str, str]]] = {}
    was_building, _building = _building, True
    try:
        packages = [core] + [m for m in (_sibling(s) for s in _SIBLINGS) if m is not None]
    finally:
        _building = was_building
    for pkg in packages:
        declared = getattr(pkg, "__nnx_paths__", None) or {}
        for path, names in declared.items():
            parts = path.split(".")
            for i in range(1, len(parts)):
                table.setdefault(".".join(parts[:i]), {})
            entry = table.setdefault(path, {})
            for item in names.split():
                alias, _, target = item.partition("=")
                entry.setdefault(alias, (pkg.__name__, target or alias))
    if not _building:  # a sibling importing nnx while the table is built sees a partial one
        _paths = table
    return table


def _reset_paths() -> None:
    """Forget the path table (tests that install a fake sibling table call it)."""
    global _paths
    _paths = None


def _is_path(path: str) -> bool:
    first = path.split(".", 1)[0]
    if first in globals() and not isinstance(globals()[first], _PathModule):
        return False  # a core name (or a real subpackage) is never shadowed
    return path in _path_table()


def _known_path_dist(path: str, name: str | None = None) -> str | None:
    """The distribution that declares ``path`` (or ``name`` in it), from the generated table."""
    full = path if name is None else f"{path}.{name}"
    for known, names in _known.PATHS.items():
        if not names:
            continue
        if name is not None and known == path and name in names:
            return _SIBLINGS.get(names[name])
        if known == full or known.startswith(full + "."):
            return _SIBLINGS.get(next(iter(names.values())))
    return None


class _PathModule(_types.ModuleType):
    """A Flax module path: its names resolve from the packages that declare them."""

    def __getattr__(self, name: str):
        path = self.__name__[len("nnx.") :]
        if name == "__all__":  # computed: the table can grow (a sibling installed later)
            return sorted(_path_table().get(path, {}))
        if name.startswith("__"):
            raise AttributeError(name)
        entry = _path_table().get(path, {})
        if name in entry:
            pkg_name, target = entry[name]
            pkg = _sys.modules.get(pkg_name) or _importlib.import_module(pkg_name)
            try:
                value = getattr(pkg, target)
            except AttributeError:
                raise AttributeError(
                    f"{self.__name__}.{name}: {pkg_name} declares it in __nnx_paths__ "
                    f"but has no attribute {target!r}"
                ) from None
            setattr(self, name, value)
            return value
        if f"{path}.{name}" in _path_table():
            return _importlib.import_module(f"{self.__name__}.{name}")
        dist = _known_path_dist(path, name)
        if dist is None and name in _KNOWN_NAMES:  # e.g. nnx.compat.jit: transforms' jit
            dist = _SIBLINGS.get(_KNOWN_NAMES[name])
        if dist is not None and dist in _missing_dists():
            raise MissingPackageError(
                f"{self.__name__}.{name} is provided by the {dist!r} distribution, which "
                f"is not installed. Install it with `pip install {dist}`."
            )
        missing = _missing_dists()
        hint = (
            f" It may come from an nnx distribution that is not installed: {', '.join(missing)}."
            if missing
            else ""
        )
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}.{hint}")

    def __dir__(self) -> list[str]:
        path = self.__name__[len("nnx.") :]
        table = _path_table()
        children = {p[len(path) + 1 :] for p in table if p.startswith(path + ".")}
        return sorted(set(table.get(path, {})) | {c for c in children if "." not in c})


class _PathFinder(_importlib_abc.MetaPathFinder, _importlib_abc.Loader):
    """Finds ``nnx.<path>`` modules declared in ``__nnx_paths__`` (after every real finder)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ARG002
        if not fullname.startswith("nnx."):
            return None
        sub = fullname[len("nnx.") :]
        if sub in _SIBLINGS or sub == "core":
            return None  # real packages (asking the table here would recurse)
        if _is_path(sub):
            return _machinery.ModuleSpec(fullname, self, is_package=True)
        dist = _known_path_dist(sub)
        if dist is not None and dist in _missing_dists():
            raise ModuleNotFoundError(
                f"{fullname} is provided by the {dist!r} distribution, which is not "
                f"installed. Install it with `pip install {dist}`.",
                name=fullname,
            )
        return None

    def create_module(self, spec):
        return _PathModule(spec.name)

    def exec_module(self, module) -> None:
        path = module.__name__[len("nnx.") :]
        module.__path__ = []  # a package: its children are found by this finder
        module.__doc__ = (
            f"Flax NNX's module path ``flax.nnx.{path}``: re-exports of the one nnx "
            "implementation (see ``__nnx_paths__`` in the nnx package modules)."
        )


def _install_finder() -> None:
    for finder in _sys.meta_path:
        if type(finder).__name__ == "_PathFinder" and type(finder).__module__ == __name__:
            return
    _sys.meta_path.append(_PathFinder())


_install_finder()


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
    if not name.startswith("_") and _is_path(name):  # nnx.graph, nnx.nn, nnx.compat, ...
        return _importlib.import_module(f"nnx.{name}")
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
    dist = _known_path_dist(name)
    if dist is not None:
        raise MissingPackageError(
            f"nnx.{name} is provided by the {dist!r} distribution, which is not "
            f"installed. Install it with `pip install {dist}`."
        )
    raise AttributeError(f"module 'nnx' has no attribute {name!r}")


def __dir__() -> list[str]:
    names = set(_core_all) | {"core", "MissingPackageError"}
    for sub in _SIBLINGS:
        mod = _sibling(sub)
        if mod is not None:
            names.update(getattr(mod, "__all__", ()))
            names.add(sub)
    names.update(p for p in _path_table() if "." not in p)
    return sorted(n for n in names if not n.startswith("_"))
