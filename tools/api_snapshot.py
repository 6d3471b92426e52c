"""Snapshot of the public interface of one nnx package: names and call signatures.

Each package's public interface is ``nnx.<pkg>.__all__``. This script renders it as text,
one line per name (sorted), and classes followed by their public methods::

    Linear: class(Module) (in_features: int, out_features: int, *, rngs: Rngs)
      Linear.__call__: method (x)

The rendering is committed as ``packages/nnx-<pkg>/api.txt`` and compared with the
installed package by ``packages/nnx-<pkg>/tests/test_api_snapshot.py``, so every change
to a public interface shows up as a diff of that file in review.

Usage (in an environment where the package is installed, e.g. ``hatch run full:...``)::

    python tools/api_snapshot.py layers              # print the snapshot
    python tools/api_snapshot.py --write layers      # refresh packages/nnx-layers/api.txt
    python tools/api_snapshot.py --write             # refresh all four
    python tools/api_snapshot.py --check             # exit 1 with a diff if any is stale
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "transforms", "layers", "optim")
REFRESH = "python tools/api_snapshot.py --write {pkg}   (or: hatch run full:api --write {pkg})"

# Reprs of default values may contain memory addresses (functions, objects).
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Methods every class has; listing them would only add noise.
_SKIP_METHODS = frozenset(dir(object)) - {"__call__"}


def snapshot_path(pkg: str) -> Path:
    return ROOT / "packages" / f"nnx-{pkg}" / "api.txt"


def _clean(text: str) -> str:
    return _ADDRESS.sub("", text)


class _Source(str):
    """An annotation kept as source text (``from __future__ import annotations``)."""

    def __repr__(self) -> str:
        return str(self)


def _unquote(annotation: object) -> object:
    return _Source(annotation) if isinstance(annotation, str) else annotation


def _public_name(obj: object) -> str | None:
    """``nnx.Param`` for an object that the flat namespace exports, else its public
    module path with private module parts dropped (``nnx.core._variables.X`` -> ``nnx.core.X``)."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    module = getattr(obj, "__module__", None)
    if not isinstance(name, str) or not isinstance(module, str):
        return None
    if module.split(".")[0] != "nnx":
        return f"{module}.{name}"
    import nnx

    if getattr(nnx, name.split(".")[0], None) is obj:
        return f"nnx.{name}"
    public = ".".join(part for part in module.split(".") if not part.startswith("_"))
    return f"{public}.{name}"


def _public_default(default: object) -> object:
    """Defaults that are classes or functions render by public name, not by repr, so
    that moving a class between private modules does not change the snapshot."""
    if default is inspect.Parameter.empty:
        return default
    if type(default) in (tuple, list) and any(
        inspect.isclass(d) or inspect.isfunction(d) for d in default
    ):
        items = [repr(_public_default(d)) for d in default]
        if type(default) is tuple:
            return _Source(f"({', '.join(items)}{',' if len(items) == 1 else ''})")
        return _Source(f"[{', '.join(items)}]")
    if inspect.isclass(default) or inspect.isfunction(default):
        name = _public_name(default)
        if name is not None:
            return _Source(name)
    return default


def _signature(obj: object, *, drop_first: bool = False) -> str:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "(...)"
    params = list(sig.parameters.values())[1:] if drop_first else list(sig.parameters.values())
    params = [
        p.replace(annotation=_unquote(p.annotation), default=_public_default(p.default))
        for p in params
    ]
    sig = sig.replace(parameters=params, return_annotation=_unquote(sig.return_annotation))
    return _clean(str(sig))


def _class_signature(cls: type) -> str:
    # The constructor as users call it. Prefer __init__ over inspect.signature(cls): a
    # metaclass __call__ (common for pytree classes) would hide the real parameters.
    init = getattr(cls, "__init__", object.__init__)
    if init is not object.__init__ and inspect.isfunction(init):
        return _signature(init, drop_first=True)
    return _signature(cls)


def _member_kind(cls: type, name: str) -> tuple[str, str] | None:
    raw = inspect.getattr_static(cls, name)
    if isinstance(raw, property):
        return "property", ""
    if isinstance(raw, classmethod):
        return "classmethod", _signature(raw.__func__, drop_first=True)
    if isinstance(raw, staticmethod):
        return "staticmethod", _signature(raw.__func__)
    if inspect.isfunction(raw):
        return "method", _signature(raw, drop_first=True)
    return None


def _class_lines(name: str, cls: type) -> list[str]:
    bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
    kind = f"class({bases})" if bases else "class"
    lines = [f"{name}: {kind} {_class_signature(cls)}"]
    for member in sorted(vars(cls)):  # only what this class defines itself
        if member in _SKIP_METHODS or (member.startswith("_") and member != "__call__"):
            continue
        described = _member_kind(cls, member)
        if described is not None:
            mkind, sig = described
            lines.append(f"  {name}.{member}: {mkind} {sig}".rstrip())
    return lines


def describe(name: str, obj: object) -> list[str]:
    """The snapshot lines for one public name."""
    if inspect.isclass(obj):
        return _class_lines(name, obj)
    if inspect.ismodule(obj):
        return [f"{name}: module"]
    origin = typing.get_origin(obj)
    if origin is not None:  # a type alias: its signature differs between Python versions
        return [f"{name}: type alias of {getattr(origin, '__name__', origin)}"]
    if callable(obj) and (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
        return [f"{name}: function {_signature(obj)}"]
    if callable(obj):  # a callable instance, e.g. a wrapped or partial function
        return [f"{name}: callable {type(obj).__name__} {_signature(obj)}"]
    return [f"{name}: {type(obj).__name__}"]


def render(pkg: str) -> str:
    """The snapshot of ``nnx.<pkg>`` as installed in this interpreter."""
    module = importlib.import_module(f"nnx.{pkg}")
    names = getattr(module, "__all__", None)
    if names is None:
        raise SystemExit(f"nnx.{pkg} has no __all__: its public interface is undefined")
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise SystemExit(f"nnx.{pkg}.__all__ lists names twice: {duplicates}")
    lines = [
        f"# Public interface of nnx.{pkg} (its __all__): generated, do not edit.",
        f"# Refresh: {REFRESH.format(pkg=pkg)}",
    ]
    for name in sorted(names):
        try:
            obj = getattr(module, name)
        except AttributeError:
            raise SystemExit(
                f"nnx.{pkg}.__all__ lists {name!r}, which it does not define"
            ) from None
        lines.extend(describe(name, obj))
    return "\n".join(lines) + "\n"


def diff(pkg: str) -> str:
    """A unified diff from the committed snapshot to the installed package ('' if equal)."""
    path = snapshot_path(pkg)
    committed = path.read_text() if path.exists() else ""
    current = render(pkg)
    return "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            current.splitlines(keepends=True),
            fromfile=f"{path.relative_to(ROOT)} (committed)",
            tofile=f"nnx.{pkg} (installed)",
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="refresh the committed snapshot")
    mode.add_argument("--check", action="store_true", help="exit 1 if a snapshot is stale")
    parser.add_argument(
        "packages",
        nargs="*",
        metavar="PKG",
        help=f"one or more of {', '.join(PACKAGES)} (default: all)",
    )
    args = parser.parse_args(argv)
    pkgs = args.packages or list(PACKAGES)
    unknown = sorted(set(pkgs) - set(PACKAGES))
    if unknown:
        parser.error(f"unknown package(s) {unknown}; choose from {', '.join(PACKAGES)}")
    status = 0
    for pkg in pkgs:
        if args.write:
            snapshot_path(pkg).write_text(render(pkg))
            print(f"wrote {snapshot_path(pkg).relative_to(ROOT)}")
        elif args.check:
            d = diff(pkg)
            if d:
                status = 1
                print(f"{d}\nnnx.{pkg}: snapshot is stale; refresh with {REFRESH.format(pkg=pkg)}")
        else:
            sys.stdout.write(render(pkg))
    return status


if __name__ == "__main__":
    sys.exit(main())
