"""Flax NNX's module paths (nnx.graph, nnx.traversals, nnx.nn.linear, nnx.compat, ...):
modules made from the packages' ``__nnx_paths__`` tables, and the clean ``dir(nnx)``."""

import copy
import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import jax.numpy as jnp
import pytest

import nnx

ROOT = Path(__file__).resolve().parents[3]


def test_core_paths_are_thin_reexports():
    from nnx import graph, statelib
    from nnx.filterlib import PathContains  # pyright: ignore[reportMissingImports]
    from nnx.rnglib import Rngs, reseed  # pyright: ignore[reportMissingImports]
    from nnx.traversals import flatten_mapping  # pyright: ignore[reportMissingImports]

    assert graph.split is nnx.split and graph.GraphDef is nnx.GraphDef
    assert statelib.State is nnx.State and PathContains is nnx.PathContains
    assert Rngs is nnx.Rngs and reseed is nnx.reseed
    assert flatten_mapping is nnx.flatten_mapping
    variablelib = importlib.import_module("nnx.variablelib")
    assert variablelib.Variable is nnx.Variable
    assert "split" in nnx.graph.__all__ and "split" in dir(nnx.graph)
    assert nnx.compat.split is nnx.split and nnx.object.Pytree is nnx.Pytree
    assert nnx.ids.uuid() != nnx.ids.uuid()
    assert isinstance(nnx.graph, types.ModuleType) and nnx.graph.__name__ == "nnx.graph"


def test_star_import_of_a_path():
    ns: dict = {}
    exec("from nnx.statelib import *", ns)
    assert ns["State"] is nnx.State and ns["to_flat_state"] is nnx.to_flat_state


def test_unknown_name_on_a_path_says_so():
    with pytest.raises(AttributeError, match="module 'nnx.graph' has no attribute 'nope'"):
        nnx.graph.nope
    with pytest.raises(AttributeError, match="module 'nnx' has no attribute 'nopepath'"):
        nnx.nopepath
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("nnx.nopepath")


def test_real_modules_and_core_names_are_never_shadowed():
    assert nnx.core.__name__ == "nnx.core" and nnx.core.Rngs is nnx.Rngs
    assert callable(nnx.state) and not isinstance(nnx.state, types.ModuleType)
    assert not nnx._is_path("state")


def test_dir_lists_only_public_names():
    names = dir(nnx)
    for private in ("TYPE_CHECKING", "annotations", "importlib", "pkgutil", "sys", "types"):
        assert private not in names
    assert not [n for n in names if n.startswith("_")]
    for public in ("Rngs", "split", "core", "graph", "traversals", "compat", "MissingPackageError"):
        assert public in names


def test_core_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", nnx.core.__version__)
    text = (ROOT / "packages" / "nnx-core" / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text


def test_known_names_table_is_generated_from_the_siblings():
    # nnx/_known.py must match the siblings' api.txt and __nnx_paths__ tables
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "known_names.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert nnx._KNOWN_NAMES is nnx._known.NAMES


# -- a fake sibling with nested paths ---------------------------------------------
class _Linear:
    pass


def _kernel_init():
    return "lecun"


@pytest.fixture
def fake_sibling(monkeypatch):
    fake = types.ModuleType("nnx.fakesib")
    fake.__path__ = []  # a package, as a real sibling is
    fake.Linear = _Linear  # pyright: ignore[reportAttributeAccessIssue]
    fake._dki = _kernel_init  # pyright: ignore[reportAttributeAccessIssue]
    fake.fake_jit = lambda f: f  # pyright: ignore[reportAttributeAccessIssue]
    fake.TrainState = type("TrainState", (), {})  # pyright: ignore[reportAttributeAccessIssue]
    fake.__nnx_paths__ = {  # pyright: ignore[reportAttributeAccessIssue]
        "nn.linear": "Linear default_kernel_init=_dki",
        "nn": "Linear",
        "compat": "jit=fake_jit",
        "helpers": "TrainState",
        "fakesib.general": "Linear",
        "core": "Linear",  # a real module: never replaced
    }
    # Only core and the fake: the real siblings (installed in the matrix environments)
    # declare the same paths, and modules they made earlier are set aside for the test.
    for name in [n for n in sys.modules if n.split(".")[:2][-1] in ("nn", "compat", "helpers")]:
        if name.startswith("nnx."):
            monkeypatch.delitem(sys.modules, name)
    for attr in ("nn", "compat", "helpers"):
        monkeypatch.delattr(nnx, attr, raising=False)
    before = dict(sys.modules)
    attrs_before = set(vars(nnx))
    monkeypatch.setitem(sys.modules, "nnx.fakesib", fake)
    monkeypatch.setattr(nnx, "_SIBLINGS", {"fakesib": "nnx-fakesib"})
    nnx._reset_paths()
    yield fake
    nnx._reset_paths()
    for name in set(sys.modules) - set(before):
        if name.startswith("nnx."):
            del sys.modules[name]
    for name in set(vars(nnx)) - attrs_before:
        delattr(nnx, name)


def test_nested_paths_from_a_sibling_table(fake_sibling):
    import nnx.nn.linear  # pyright: ignore[reportMissingImports]
    from nnx.nn.linear import default_kernel_init  # pyright: ignore[reportMissingImports]

    assert default_kernel_init is _kernel_init
    assert nnx.nn.linear.Linear is _Linear and nnx.nn.Linear is _Linear
    assert isinstance(nnx.nn, types.ModuleType) and nnx.nn.linear is sys.modules["nnx.nn.linear"]
    assert "linear" in dir(nnx.nn) and "default_kernel_init" in nnx.nn.linear.__all__
    # a path declared by two packages is the union, core first
    assert nnx.compat.jit is fake_sibling.fake_jit and nnx.compat.split is nnx.split
    from nnx import helpers

    assert helpers.TrainState is fake_sibling.TrainState
    # a path under a real package that has no such file
    import nnx.fakesib.general  # pyright: ignore[reportMissingImports]

    assert nnx.fakesib.general.Linear is _Linear
    # real modules win
    assert nnx.core.__name__ == "nnx.core" and not hasattr(nnx.core, "Linear")
    assert "nn" in dir(nnx) and "helpers" in dir(nnx)


def test_an_uninstalled_sibling_is_named(monkeypatch):
    monkeypatch.setattr(nnx, "_SIBLINGS", {**nnx._SIBLINGS, "ghost": "nnx-ghost"})
    monkeypatch.setattr(
        nnx._known, "PATHS", {**nnx._known.PATHS, "ghostnn.layers": {"Thing": "ghost"}}
    )
    monkeypatch.setattr(nnx._known, "NAMES", {**nnx._known.NAMES, "GhostThing": "ghost"})
    monkeypatch.setattr(nnx, "_KNOWN_NAMES", nnx._known.NAMES)
    nnx._reset_paths()
    try:
        with pytest.raises(
            nnx.MissingPackageError, match=r"nnx.ghostnn .*'nnx-ghost'.*pip install nnx-ghost"
        ):
            nnx.ghostnn
        with pytest.raises(ModuleNotFoundError, match=r"nnx.ghostnn .*pip install nnx-ghost"):
            importlib.import_module("nnx.ghostnn.layers")
        with pytest.raises(
            nnx.MissingPackageError, match=r"nnx.GhostThing .*pip install nnx-ghost"
        ):
            nnx.GhostThing
        # a name known to come from the missing sibling, asked on a path that exists
        with pytest.raises(nnx.MissingPackageError, match=r"nnx.compat.GhostThing .*nnx-ghost"):
            nnx.compat.GhostThing
    finally:
        nnx._reset_paths()


# -- nnx.traversals -----------------------------------------------------------------
def test_flatten_and_unflatten_mapping():
    from nnx import traversals as t

    xs = {"foo": 1, "bar": {"a": 2, "b": {}}}
    assert t.flatten_mapping(xs) == {("foo",): 1, ("bar", "a"): 2}
    flat = t.flatten_mapping(xs, keep_empty_nodes=True)
    assert flat == {("foo",): 1, ("bar", "a"): 2, ("bar", "b"): t.empty_node}
    assert t.unflatten_mapping(flat) == xs
    assert t.flatten_mapping({}, keep_empty_nodes=True) == {}
    assert t.flatten_mapping(xs, sep="/") == {"foo": 1, "bar/a": 2}
    assert t.unflatten_mapping({"foo": 1, "bar/a": 2}, sep="/") == {"foo": 1, "bar": {"a": 2}}
    assert t.unflatten_mapping([(("x", "y"), 3)]) == {"x": {"y": 3}}
    leafy = t.flatten_mapping(xs, is_leaf=lambda path, v: path == ("bar",))
    assert leafy == {("foo",): 1, ("bar",): {"a": 2, "b": {}}}
    assert t.flatten_to_sequence(xs) == [(("foo",), 1), (("bar", "a"), 2)]
    with pytest.raises(TypeError, match="expects a Mapping, got list"):
        t.flatten_mapping([1])
    with pytest.raises(ValueError, match=r"goes through \('a',\), which holds a value"):
        t.unflatten_mapping({("a",): 1, ("a", "b"): 2})
    # a State flattens like a dict, and its flat form rebuilds it
    s = nnx.state(nnx.Rngs(0))
    flat_s = t.flatten_mapping(s.to_pure_dict())
    assert set(flat_s) == {("default", "count"), ("default", "key")}
    assert copy.deepcopy(t.empty_node) is t.empty_node or repr(t.empty_node) == "empty_node"


def test_ids_copies_are_new_ids():
    u = nnx.ids.uuid()
    assert copy.copy(u) != u and copy.deepcopy(u) != u and u == u
    assert repr(u).startswith("UUID(") and isinstance(hash(u), int)
    assert jnp.zeros(()).shape == ()


def test_more_of_flax_module_paths_resolve_to_the_one_implementation():
    # names Flax NNX 0.12.8 keeps in these modules and user code imports from them
    assert nnx.graphlib.split is nnx.split and nnx.graphlib.State is nnx.State
    assert nnx.graph.set_graph_mode is nnx.set_graph_mode
    assert nnx.graph.iter_module_children is nnx.iter_module_children
    assert nnx.graph.map_state is nnx.map_state and nnx.graph.vars_as is nnx.vars_as
    assert nnx.module.view is nnx.view and nnx.module.capture is nnx.capture
    assert nnx.module.with_attributes is nnx.with_attributes
    assert nnx.statelib.restore_int_paths is nnx.restore_int_paths
    assert nnx.spmd.as_abstract is nnx.as_abstract
    assert nnx.variablelib.use_eager_sharding is nnx.use_eager_sharding
    assert nnx.extract.to_tree is nnx.to_tree and nnx.extract.NodeStates is nnx.NodeStates
    assert nnx.helpers.Module is nnx.Module and nnx.rnglib.Variable is nnx.Variable


def test_graph_is_node_is_pytree_node_and_jax_paths():
    import jax

    p = nnx.Param(jnp.ones(2))
    d = nnx.Dict(a=p)
    # a Variable is a leaf of the graph; Pytrees and pytree containers are nodes
    assert [nnx.graph.is_node(x) for x in (d, {"a": p}, [p], (p,), p, jnp.ones(2), 1)] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert nnx.graph.is_pytree_node({"a": 1}) and nnx.graph.is_pytree_node(())
    assert not nnx.graph.is_pytree_node(d) and not nnx.graph.is_pytree_node(p)
    leaves = jax.tree_util.tree_flatten_with_path({"a": [0, {"b": 1}]})[0]
    assert [nnx.graph.jax_to_nnx_path(path) for path, _ in leaves] == [("a", 0), ("a", 1, "b")]
