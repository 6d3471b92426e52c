"""Every public name is documented: a docstring of its own and an entry in the API reference.

Walks ``__all__`` of ``nnx.core``, ``nnx.transforms``, ``nnx.layers`` and ``nnx.optim``.

- ``undocumented()``: names whose object has no docstring of its own (a class's
  ``__doc__`` from its own body, a function's, a module's; an instance, e.g. a marker
  object, counts its class's docstring).
- ``check_site(site_dir)``: after a build, names that have no anchor
  (``id="nnx.<pkg>.<name>"``) in the rendered ``api/<pkg>/`` page, plus the
  undocumented ones.

Run alone (``python tools/docs/coverage.py``) it prints the undocumented names and exits
1 if there are any; the docs build runs ``check_site``.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from pathlib import Path

PACKAGES = ("core", "transforms", "layers", "optim")


def module(pkg: str) -> types.ModuleType:
    return importlib.import_module(f"nnx.{pkg}")


def public_names(pkg: str) -> list[str]:
    names = list(getattr(module(pkg), "__all__", []))
    if not names:
        raise RuntimeError(f"nnx.{pkg} has no __all__")
    return names


def is_module(pkg: str, name: str) -> bool:
    return isinstance(getattr(module(pkg), name), types.ModuleType)


def external_origin(pkg: str, name: str) -> str | None:
    """``"jax.nn.relu"`` for a name that re-exports another project's function, else None."""
    obj = getattr(module(pkg), name)
    origin = getattr(obj, "__module__", None) or ""
    if isinstance(obj, types.ModuleType) or origin.startswith("nnx") or not callable(obj):
        return None
    public = {"jax._src.nn.functions": "jax.nn", "jax._src.numpy.lax_numpy": "jax.numpy"}
    return f"{public.get(origin, origin)}.{getattr(obj, '__name__', name)}"


def own_docstring(obj: object) -> str | None:
    if isinstance(obj, type):  # not inherited: a subclass says what it adds
        doc = obj.__dict__.get("__doc__")
    elif isinstance(obj, types.ModuleType) or inspect.isroutine(obj):
        doc = obj.__doc__
    else:  # an instance (a marker, a constant): its class says what it is
        doc = type(obj).__dict__.get("__doc__")
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def undocumented() -> list[str]:
    missing = []
    for pkg in PACKAGES:
        mod = module(pkg)
        for name in public_names(pkg):
            if not hasattr(mod, name):
                missing.append(f"nnx.{pkg}.{name}: in __all__ but not defined")
            elif own_docstring(getattr(mod, name)) is None:
                missing.append(f"nnx.{pkg}.{name}: no docstring")
    return missing


def check_site(site_dir: Path) -> list[str]:
    problems = []
    for pkg in PACKAGES:
        page = site_dir / "api" / pkg / "index.html"
        html = page.read_text() if page.exists() else ""
        if not html:
            problems.append(f"no page {page}")
            continue
        for name in public_names(pkg):
            if f'id="nnx.{pkg}.{name}"' not in html:
                problems.append(f"nnx.{pkg}.{name}: no entry in api/{pkg}/")
    return problems + undocumented()


if __name__ == "__main__":
    found = undocumented()
    print("\n".join(found) or "every public name has a docstring")
    sys.exit(1 if found else 0)
