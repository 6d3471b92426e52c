"""Pytree data/static rules and Module utilities."""

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Linear

import nnx


class Scaler(nnx.Pytree):
    def __init__(self):
        self.w = nnx.Param(jnp.ones(3))
        self.arr = jnp.arange(3.0)
        self.name = "scaler"
        self.factor = 2
        self.fn = jax.nn.relu
        self.subs = [Linear(2, 2, rngs=nnx.Rngs(0))]


def test_pytree_children_and_static():
    s = Scaler()
    leaves = jax.tree.leaves(s)
    assert len(leaves) == 4  # arr, w, and the Linear's kernel and bias
    doubled = jax.tree.map(lambda x: x * 2, s)
    assert doubled.name == "scaler" and doubled.fn is jax.nn.relu
    np.testing.assert_array_equal(doubled.w[...], 2 * np.ones(3))


def test_static_change_changes_treedef():
    a, b = Scaler(), Scaler()
    assert jax.tree.structure(a) == jax.tree.structure(b)
    b.factor = 3
    assert jax.tree.structure(a) != jax.tree.structure(b)


def test_plain_jit_accepts_pytree_modules():
    m = Linear(2, 3, rngs=nnx.Rngs(0))
    y = jax.jit(lambda m, x: m(x))(m, jnp.ones((1, 2)))
    np.testing.assert_allclose(y, jnp.ones((1, 2)) @ m.kernel[...] + m.bias[None], rtol=1e-6)


def test_data_and_static_markers():
    class M(nnx.Pytree):
        def __init__(self):
            self.scale = nnx.data(2.0)
            self.sizes = nnx.static([1, 2])

    m = M()
    assert jax.tree.leaves(m) == [2.0]
    assert m.sizes == [1, 2]


def test_array_in_static_attribute_is_a_clear_error():
    class M(nnx.Pytree):
        def __init__(self):
            self.table = nnx.static(jnp.ones(3))

    with pytest.raises(nnx.PytreeStaticError, match=r"M.table is declared static"):
        M()


def test_list_with_functions_is_jittable():
    class Seq(nnx.Module):
        def __init__(self):
            self.layers = [Linear(2, 2, rngs=nnx.Rngs(0)), jax.nn.relu]

        def __call__(self, x):
            for f in self.layers:
                x = f(x)
            return x

    s = Seq()
    y = jax.jit(lambda s, x: s(x))(s, jnp.ones((1, 2)))
    assert y.shape == (1, 2)
    assert isinstance(s.layers, list) and isinstance(s.layers, nnx.List)


def test_list_mutation_moves_the_graph_epoch():
    class Stack(nnx.Module):
        def __init__(self):
            self.layers = []

    s = Stack()
    e = nnx.graph_epoch()
    s.layers.append(Linear(2, 2, rngs=nnx.Rngs(0)))
    assert nnx.graph_epoch() != e
    assert len(nnx.state(s).flat_state()) == 2


class Block(nnx.Module):
    def __init__(self):
        self.linear = Linear(2, 2, rngs=nnx.Rngs(0))
        self.deterministic = False
        self.use_running_average = False
        self.items = {"a": Linear(2, 2, rngs=nnx.Rngs(1))}


def test_iter_modules_and_children():
    b = Block()
    names = [p for p, _ in b.iter_modules()]
    assert names[-1] == () and ("linear",) in names and ("items", "a") in names
    children = dict(b.iter_children())  # graph nodes: the nnx.Dict itself, as in Flax
    assert set(children) == {"linear", "items"}
    assert isinstance(children["items"], nnx.Dict)


def test_train_eval_and_set_attributes():
    outer = nnx.Module()
    outer.blocks = [Block(), Block()]
    outer.eval()
    assert all(b.deterministic and b.use_running_average for b in outer.blocks)  # pyright: ignore[reportAttributeAccessIssue]
    outer.train()
    assert not any(b.deterministic for b in outer.blocks)  # pyright: ignore[reportAttributeAccessIssue]
    outer.set_attributes(deterministic=True)
    assert all(b.deterministic for b in outer.blocks)  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(AttributeError, match="no module in Module has"):
        outer.set_attributes(nonexistent=1)


def test_sow_and_pop():
    class M(nnx.Module):
        def __call__(self, x):
            self.sow(nnx.Intermediate, "y", x * 2)
            return x

    m = M()
    m(jnp.ones(2))
    m(jnp.ones(2))
    assert len(m.y[...]) == 2  # pyright: ignore[reportAttributeAccessIssue]
    inter = nnx.pop(m, nnx.Intermediate)
    assert ("y",) in [p for p, _ in inter.flat_state()]
    assert not hasattr(m, "y")


def test_model_surgery_wraps_an_existing_layer():
    class LoraLinear(nnx.Module):
        def __init__(self, linear, rank, rngs):
            self.linear = linear
            self.A = nnx.Param(jax.random.normal(rngs(), (linear.din, rank)))
            self.B = nnx.Param(jnp.zeros((rank, linear.dout)))

        def __call__(self, x):
            return self.linear(x) + x @ self.A @ self.B

    b = Block()
    old = b.linear
    b.linear = LoraLinear(old, 2, rngs=nnx.Rngs(0))  # pyright: ignore[reportAttributeAccessIssue]
    x = jnp.ones((1, 2))
    np.testing.assert_allclose(b.linear(x), old(x), rtol=1e-6)  # B is zero
    assert b.linear.linear is old  # pyright: ignore[reportAttributeAccessIssue]


def test_pickle_and_deepcopy_module():
    import copy
    import pickle

    m = Linear(2, 3, rngs=nnx.Rngs(0))
    m.tied = m.kernel
    for c in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert c.tied is c.kernel and c.kernel is not m.kernel  # pyright: ignore[reportAttributeAccessIssue]
        np.testing.assert_array_equal(c.kernel[...], m.kernel[...])


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Config:
    scale: jax.Array
    name: str = dataclasses.field(default="cfg", metadata={"static": True})


def test_registered_pytree_holding_arrays_is_data():
    class M(nnx.Pytree):
        def __init__(self):
            self.cfg = _Config(jnp.ones(3))
            self.opts = _Config(None)  # a pytree without arrays: static  # pyright: ignore[reportArgumentType]

    m = M()
    assert nnx.is_data(m.cfg) and not nnx.is_data(m.opts)
    leaves = jax.tree.leaves(m)
    assert len(leaves) == 1
    np.testing.assert_array_equal(leaves[0], np.ones(3))
    _, state = nnx.split(m)
    assert [p for p, _ in state.flat_state()] == [("cfg", "scale")]
    doubled = jax.jit(lambda m: jax.tree.map(lambda x: 2 * x, m))(m)
    assert isinstance(doubled.cfg, _Config) and doubled.cfg.name == "cfg"
    np.testing.assert_array_equal(doubled.cfg.scale, np.full(3, 2.0))


def test_state_and_dict_subclasses_holding_variables_are_data():
    class M(nnx.Pytree):
        def __init__(self):
            self.state = nnx.State({"w": nnx.Param(jnp.ones(2))})
            self.ordered = collections.OrderedDict(b=jnp.zeros(1))

    m = M()
    _, state = nnx.split(m)
    assert [p for p, _ in state.flat_state()] == [("ordered", "b"), ("state", "w")]


@pytest.mark.parametrize(
    "hidden",
    [
        lambda: jnp.ones(3),
        lambda: {"a": [jnp.ones(3)]},
        lambda: (1, nnx.Param(jnp.ones(1))),
        lambda: _Config(jnp.ones(3)),
    ],
    ids=["array", "nested-container", "variable-in-tuple", "registered-dataclass"],
)
def test_arrays_hidden_in_a_static_attribute_are_an_error(hidden):
    class M(nnx.Pytree):
        def __init__(self):
            self.table = nnx.static(hidden())

    with pytest.raises(nnx.PytreeStaticError, match=r"M\.table is declared static .*nnx\.data"):
        M()


def test_assigning_an_array_to_an_attribute_declared_static_later_is_an_error():
    class M(nnx.Pytree):
        def __init__(self):
            self.table = nnx.static(None)

    m = M()
    m.table = (1, 2)  # still static, no arrays: fine
    with pytest.raises(nnx.PytreeStaticError, match="M.table is declared static"):
        m.table = jnp.ones(2)
    assert m.table == (1, 2)


def test_static_attributes_are_part_of_the_structure_not_leaves():
    class M(nnx.Pytree):
        def __init__(self, sizes):
            self.sizes = nnx.static(list(sizes))
            self.w = nnx.Param(jnp.ones(1))

    a, b = M([1, 2]), M([1, 3])
    assert jax.tree.leaves(a) == jax.tree.leaves(b)
    assert jax.tree.structure(a) != jax.tree.structure(b)
    assert nnx.graphdef(a) != nnx.graphdef(b)
    assert nnx.graphdef(a) == nnx.graphdef(M([1, 2]))


def test_data_marker_makes_a_python_scalar_a_traced_leaf():
    class M(nnx.Pytree):
        def __init__(self):
            self.scale = nnx.data(2.0)
            self.label = "fixed"

    traced = []

    @jax.jit
    def f(m):
        traced.append(type(m.scale))
        return m.scale * 3

    assert float(f(M())) == 6.0
    assert issubclass(traced[0], jax.core.Tracer)  # pyright: ignore[reportAttributeAccessIssue]


class _Drop(nnx.Module):
    def __init__(self):
        self.deterministic = False
        self.rate = 0.5


class _Norm(nnx.Module):
    def __init__(self):
        self.use_running_average = False


def test_train_eval_reach_submodules_in_lists_dicts_tuples_and_shared_ones():
    shared = _Drop()
    root = nnx.Module()
    root.layers = [_Drop(), {"n": _Norm()}, (shared, _Norm())]
    root.again = shared
    root.eval()
    drops = [root.layers[0], shared]  # pyright: ignore[reportAttributeAccessIssue]
    norms = [root.layers[1]["n"], root.layers[2][1]]  # pyright: ignore[reportAttributeAccessIssue]
    assert all(d.deterministic for d in drops) and all(n.use_running_average for n in norms)
    assert not hasattr(root, "deterministic")  # only modules that have the attribute
    root.train()
    assert not any(d.deterministic for d in drops)
    assert not any(n.use_running_average for n in norms)


def test_set_attributes_with_type_and_predicate_filters():
    root = nnx.Module()
    root.a, root.b, root.n = _Drop(), _Drop(), _Norm()
    root.set_attributes(_Drop, rate=0.1)
    assert root.a.rate == root.b.rate == 0.1  # pyright: ignore[reportAttributeAccessIssue]
    root.set_attributes(lambda m: m is root.b, rate=0.9)  # pyright: ignore[reportAttributeAccessIssue]
    assert (root.a.rate, root.b.rate) == (0.1, 0.9)  # pyright: ignore[reportAttributeAccessIssue]
    root.set_attributes(_Norm, rate=1.0, raise_if_not_found=False)
    assert not hasattr(root.n, "rate")  # pyright: ignore[reportAttributeAccessIssue]
    with pytest.raises(
        AttributeError, match=r"no module in Module has \['rate'\].*raise_if_not_found"
    ):
        root.set_attributes(_Norm, rate=1.0)


def test_iter_children_lists_direct_submodules_once():
    shared = _Drop()
    root = nnx.Module()
    root.x, root.y = shared, shared
    root.inner = nnx.Module()
    root.inner.deep = _Norm()  # pyright: ignore[reportAttributeAccessIssue]
    root.group = [_Norm()]
    children = list(nnx.iter_children(root))
    assert [k for k, _ in children] == ["group", "inner", "x"]  # the nnx.List, as in Flax
    assert children[2][1] is shared
    assert [p for p, _ in nnx.iter_modules(root)] == [
        ("group", 0),
        ("inner", "deep"),
        ("inner",),
        ("x",),
        (),
    ]


def test_sow_custom_reduce_and_kind_mismatch_error():
    class M(nnx.Module):
        def __call__(self, x):
            self.sow(
                nnx.Intermediate, "total", x, reduce_fn=lambda a, b: a + b, init_fn=lambda: 0.0
            )
            return x

    m = M()
    m(jnp.array(2.0))
    m(jnp.array(3.0))
    assert float(m.total[...]) == 5.0 and type(m.total) is nnx.Intermediate  # pyright: ignore[reportAttributeAccessIssue]
    m.w = nnx.Param(jnp.ones(1))
    with pytest.raises(ValueError, match=r"sow: M\.w holds a Param, not a Intermediate"):
        m.sow(nnx.Intermediate, "w", jnp.ones(1))


def test_sow_inside_jit_via_split_merge_returns_the_intermediates():
    class M(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.full((2,), 3.0))

        def __call__(self, x):
            y = x * self.w
            self.sow(nnx.Intermediate, "y", y)
            return y.sum()

    m = M()
    g, s = nnx.split(m)

    @jax.jit
    def f(s, x):
        model = nnx.merge(g, s, copy=True)
        out = model(x)
        return out, nnx.pop(model, nnx.Intermediate)

    out, inter = f(s, jnp.ones(2))
    assert float(out) == 6.0
    np.testing.assert_array_equal(inter["y"][...][0], [3.0, 3.0])


def test_iter_children_yields_variables_and_containers_as_flax_does():
    # Flax NNX 0.12: the direct children that are graph nodes, Variables included
    m = nnx.Module()
    m.w = nnx.Param(jnp.ones(2))
    m.sub = _Norm()
    m.d = nnx.Dict(a=nnx.Param(jnp.zeros(1)))
    m.n = 3  # a static value is not a child
    assert [k for k, _ in nnx.iter_children(m)] == ["d", "sub", "w"]
    assert [k for k, _ in m.iter_children()] == ["d", "sub", "w"]
    # Flax NNX's nnx.List and nnx.Dict are Modules: module children too
    assert [k for k, _ in nnx.iter_module_children(m)] == ["d", "sub"]
    m.alias = m.w  # pyright: ignore[reportAttributeAccessIssue]
    assert [k for k, _ in nnx.iter_children(m, graph=True)] == ["alias", "d", "sub"]
    with pytest.raises(nnx.AliasingError, match="iter_children: graph=False"):
        list(nnx.iter_children(m, graph=False))


def test_iter_graph_in_tree_mode_refuses_a_shared_object():
    lin = nnx.Module()
    lin.w = nnx.Param(jnp.ones(2))
    assert [p for p, _ in nnx.iter_graph([lin], graph=False)] == [(0, "w"), (0,)]
    assert len(list(nnx.iter_graph([lin, lin], graph=True))) == 2  # walked once
    with pytest.raises(nnx.AliasingError, match=r"iter_graph: graph=False.*'0'.*'1'"):
        nnx.iter_graph([lin, lin], graph=False)
    with nnx.set_graph_mode(False), pytest.raises(nnx.AliasingError):
        nnx.iter_graph([lin, lin])
