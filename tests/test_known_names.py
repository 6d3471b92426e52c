"""With every package installed: nnx._KNOWN_NAMES (generated from the siblings' api.txt
by tools/known_names.py) names exactly the siblings' public names, each resolves on
``nnx``, and every module path a sibling declares imports."""

import importlib

import pytest

import nnx

SIBLINGS = ("transforms", "layers", "optim")


@pytest.mark.parametrize("sub", SIBLINGS)
def test_known_names_match_the_siblings_all(sub):
    mod = importlib.import_module(f"nnx.{sub}")
    public = set(mod.__all__)
    known = {n for n, s in nnx._KNOWN_NAMES.items() if s == sub}
    assert public - set(nnx.core.__all__) <= known | set(nnx.core.__all__), (
        f"names of nnx.{sub}.__all__ missing from nnx/_known.py: "
        f"{sorted(public - known - set(nnx.core.__all__))}; refresh api.txt and run "
        "`python tools/known_names.py --write`"
    )
    assert known <= public, f"stale names in nnx/_known.py: {sorted(known - public)}"
    for name in public:
        assert getattr(nnx, name) is not None


@pytest.mark.parametrize("sub", SIBLINGS)
def test_declared_paths_import(sub):
    mod = importlib.import_module(f"nnx.{sub}")
    for path, names in getattr(mod, "__nnx_paths__", {}).items():
        m = importlib.import_module(f"nnx.{path}")
        for item in names.split():
            alias = item.split("=", 1)[0]
            assert hasattr(m, alias), f"nnx.{path}.{alias}"
