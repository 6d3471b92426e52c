"""What JAX's pytree functions see of hijax Variables: the Variable, never its cell
(decision 0009), while a plain ``jax.jit`` still carries their writes."""

import copy
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx


class OptState(nnx.Variable):
    pass


class Counter(nnx.Module):
    def __init__(self):
        self.w = nnx.Param(jnp.arange(3.0), tag="weights")
        self.count = nnx.BatchStat(jnp.array(0))

    def __call__(self, x):
        self.count[...] += 1
        return x * self.w[...]


@pytest.fixture
def model():
    with nnx.var_defaults(hijax=True):
        return Counter()


def test_tree_map_over_a_state_hands_out_variables(model):
    seen = []
    jax.tree.map(seen.append, nnx.state(model, nnx.Param))
    (leaf,) = seen
    assert isinstance(leaf, nnx.Param) and isinstance(leaf, nnx.Variable)
    assert type(leaf).__name__ == "Param"
    np.testing.assert_array_equal(leaf[...], [0.0, 1.0, 2.0])
    assert leaf.get_metadata("tag") == "weights" and leaf.tag == "weights"
    assert "Cell" not in repr(leaf) and repr(leaf).startswith("Param(")


def test_optimizer_state_built_by_tree_map_as_in_flax_programs(model):
    params = nnx.state(model, nnx.Param)

    def make_opt_state(x):
        if isinstance(x, nnx.Variable):
            return OptState(jnp.zeros_like(x[...]), **x.metadata)
        return OptState(jnp.zeros_like(x))

    momentum = jax.tree.map(make_opt_state, params)
    assert type(momentum["w"]) is OptState
    np.testing.assert_array_equal(momentum["w"][...], jnp.zeros(3))
    assert momentum["w"].tag == "weights"


def test_tree_map_computing_arrays_gives_a_state_of_those_arrays(model):
    # as in Flax NNX, where a hijax Variable is a leaf: the State holds what f returned
    zeros = jax.tree.map(jnp.zeros_like, nnx.state(model))
    assert type(zeros) is nnx.State and type(zeros["w"]) is type(jnp.zeros(3))
    np.testing.assert_array_equal(zeros["w"], jnp.zeros(3))
    doubled = jax.tree.map(lambda x: x * 2, nnx.state(model))
    np.testing.assert_array_equal(doubled["w"], [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(model.w[...], [0.0, 1.0, 2.0])  # the model is untouched
    # nnx.update takes such a State back into the model's own Variables
    nnx.update(model, doubled)
    np.testing.assert_array_equal(model.w[...], [0.0, 2.0, 4.0])
    assert model.w.hijax


def test_tree_map_over_a_module_gives_a_module_of_new_hijax_variables(model):
    doubled = jax.tree.map(lambda x: x * 2, model)
    assert type(doubled) is Counter and type(doubled.w) is nnx.Param and doubled.w.hijax
    assert doubled.w is not model.w and doubled.w.tag == "weights"
    np.testing.assert_array_equal(doubled.w[...], [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(model.w[...], [0.0, 1.0, 2.0])


def test_identity_tree_map_returns_the_same_variables(model):
    again = jax.tree.map(lambda x: x, model)
    assert again.w is model.w and again.count is model.count


def test_leaves_and_their_writes_are_the_model_variables(model):
    leaves = jax.tree.leaves(model)
    assert [type(x).__name__ for x in leaves] == ["BatchStat", "Param"]
    leaves[1][...] = jnp.ones(3)  # a write through what jax.tree.leaves gave
    np.testing.assert_array_equal(model.w[...], jnp.ones(3))
    leaves[1].note = "set through the leaf"
    assert model.w.note == "set through the leaf"
    assert copy.deepcopy(leaves[1]).note == "set through the leaf"
    assert type(pickle.loads(pickle.dumps(leaves[1]))) is nnx.Param


def test_plain_jax_jit_still_carries_writes(model):
    step = jax.jit(lambda m, x: m(x))
    y = None
    for _ in range(3):
        y = step(model, jnp.ones(3))
    assert y is not None
    np.testing.assert_array_equal(y, [0.0, 1.0, 2.0])
    assert int(model.count[...]) == 3


def test_an_abstract_hijax_state_shows_its_shape_dtype_structs():
    with nnx.var_defaults(hijax=True):
        p = nnx.Param(jax.ShapeDtypeStruct((2, 3), jnp.float32))
    assert p.hijax
    (leaf,) = jax.tree.leaves(nnx.State({"p": p}))
    assert leaf == jax.ShapeDtypeStruct((2, 3), jnp.float32)
    # a restore target: the arrays put in its place, which nnx.update writes into p
    restored = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), nnx.State({"p": p}))
    np.testing.assert_array_equal(restored["p"], jnp.ones((2, 3)))
    holder = nnx.State({"p": p})
    nnx.update(holder, restored)
    np.testing.assert_array_equal(p[...], jnp.ones((2, 3)))


def test_checkpoint_libraries_see_numpy_copies_with_the_same_paths(model):
    state = nnx.state(model)
    host = jax.tree.map(np.asarray, state)  # what a checkpoint library writes
    assert type(host["w"]) is np.ndarray and host["w"].tolist() == [0.0, 1.0, 2.0]
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    assert paths == ["['count']", "['w']"]  # the Variables are leaves, no '.value'
    assert [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(host)[0]
    ] == paths
    # of a bare Variable (a pytree node), the host copy is a plain Variable
    (bare,) = jax.tree.leaves(jax.tree.map(np.asarray, model.w), is_leaf=nnx.is_variable)
    assert isinstance(bare.get_value(), np.ndarray) and not bare.hijax


# -- hijax Variables are leaves of the States and Pytrees that hold them (decision 0014)
def _momentum_of(params):
    return jax.tree.map(lambda x: OptState(jnp.zeros_like(x[...]), **x.get_metadata()), params)


def test_tree_map_over_params_momentum_and_grads_of_different_kinds(model):
    params = nnx.state(model, nnx.Param)
    with nnx.var_defaults(hijax=True):
        momentum = _momentum_of(params)
    grads = nnx.State({"w": nnx.Param(jnp.array([1.0, 2.0, 4.0]), hijax=False)})
    seen = []

    def update_fn(param, momentum, grad):
        seen.append((type(param).__name__, type(momentum).__name__, type(grad).__name__))
        momentum[...] = 0.9 * momentum + 0.1 * grad
        param[...] -= 0.5 * momentum

    for _ in range(2):
        jax.tree.map(update_fn, params, momentum, grads)
    assert seen == [("Param", "OptState", "Param")] * 2
    g = np.array([1.0, 2.0, 4.0])
    m1 = 0.1 * g
    m2 = 0.9 * m1 + 0.1 * g
    np.testing.assert_allclose(momentum["w"][...], m2, rtol=1e-6)
    np.testing.assert_allclose(model.w[...], np.arange(3.0) - 0.5 * (m1 + m2), rtol=1e-6)
    assert momentum["w"].tag == "weights" and momentum["w"].hijax


def test_tree_map_over_params_and_grads_computes_new_variables(model):
    params = nnx.state(model, nnx.Param)
    grads = jax.grad(lambda p: jnp.sum(p["w"][...] ** 2))(nnx.vars_as(params, mutable=False))
    stepped = jax.tree.map(lambda p, g: p - 0.25 * g, params, grads)
    np.testing.assert_allclose(stepped["w"], np.arange(3.0) * 0.5)
    np.testing.assert_array_equal(model.w[...], np.arange(3.0))  # the model is untouched


def test_tree_map_inside_plain_jit_hands_out_variables(model):
    seen = []

    @jax.jit
    def f(model):
        jax.tree.map(lambda x: seen.append(x), nnx.state(model))
        (w,) = [x for x in seen if isinstance(x, nnx.Param)]
        w[...] = w[...] + w.get_metadata("tag").count("e")  # writes carry out
        return 0

    f(model)
    assert sorted(type(x).__name__ for x in seen) == ["BatchStat", "Param"]
    assert all(isinstance(x, nnx.Variable) for x in seen)
    np.testing.assert_array_equal(model.w[...], [1.0, 2.0, 3.0])


class SGD(nnx.Pytree):
    """SGD with momentum over the Params it is built from (optax.sgd's rule)."""

    def __init__(self, params, lr: float, momentum: float):
        self.lr, self.beta = lr, momentum
        self.momentum = nnx.data(_momentum_of(params))

    def update(self, params, grads):
        def update_fn(param, momentum, grad):
            momentum[...] = self.beta * momentum + grad
            param[...] -= self.lr * momentum

        jax.tree.map(update_fn, params, self.momentum, grads)


class MLP(nnx.Module):
    def __init__(self):
        self.w1 = nnx.Param(jnp.linspace(-1.0, 1.0, 6).reshape(2, 3))
        self.b1 = nnx.Param(jnp.zeros(3))
        self.w2 = nnx.Param(jnp.linspace(0.5, -0.5, 3).reshape(3, 1))
        self.calls = nnx.BatchStat(jnp.array(0))

    def __call__(self, x):
        self.calls[...] += 1
        return jnp.tanh(x @ self.w1 + self.b1[None]) @ self.w2


def _mlp_loss(p, x, y):
    return jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"] - y) ** 2)


def _reference_sgd(params: dict, x, y, steps: int, lr: float, beta: float):
    """optax.sgd(lr, momentum=beta) over a dict, in plain JAX (optax is not a dependency
    of nnx-core; examples/hijax_optimizer.py checks against optax itself):
    ``trace = g + beta * trace; p = p - lr * trace``."""
    trace = jax.tree.map(jnp.zeros_like, params)
    for _ in range(steps):
        g = jax.grad(_mlp_loss)(params, x, y)
        trace = jax.tree.map(lambda t, g: g + beta * t, trace, g)
        params = jax.tree.map(lambda p, t: p - lr * t, params, trace)
    return params, trace


def test_sgd_with_momentum_by_hand_under_plain_jit_matches_the_optax_rule():
    with nnx.var_defaults(hijax=True):
        model = MLP()
        optimizer = SGD(nnx.state(model, nnx.Param), lr=0.1, momentum=0.9)
    x = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2)
    y = jnp.sin(x[:, :1])
    start = {k: jnp.asarray(getattr(model, k)[...]) for k in ("w1", "b1", "w2")}

    @jax.jit  # plain JAX: the model and the optimizer are arguments, nothing returned
    def train_step(model, optimizer, x, y):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss_fn(params):
            return jnp.mean((nnx.merge(graphdef, params, rest)(x) - y) ** 2)

        grads = jax.grad(loss_fn)(nnx.vars_as(params, mutable=False))
        optimizer.update(params, grads)

    for _ in range(4):
        train_step(model, optimizer, x, y)
    ref, trace = _reference_sgd(start, x, y, 4, lr=0.1, beta=0.9)
    for k in ("w1", "b1", "w2"):
        np.testing.assert_allclose(getattr(model, k)[...], ref[k], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(optimizer.momentum[k][...], trace[k], rtol=1e-5, atol=1e-7)
    assert int(model.calls[...]) == 4 and model.w1.hijax
    assert type(optimizer.momentum["w1"]) is OptState and optimizer.momentum["w1"].hijax


def test_jit_over_a_state_retraces_when_metadata_changes(model):
    state = nnx.state(model, nnx.Param)

    @jax.jit
    def scaled(state):
        return state["w"][...] * len(state["w"].tag)

    np.testing.assert_array_equal(scaled(state), np.arange(3.0) * 7)
    model.w.tag = "w"  # the kind and metadata are part of the leaf's JAX type
    np.testing.assert_array_equal(scaled(state), np.arange(3.0))


def test_nested_jit_inside_jit_carries_writes_of_state_leaves(model):
    @jax.jit
    def inner(state):
        state["w"][...] += 1.0

    @jax.jit
    def outer(model):
        inner(nnx.state(model, nnx.Param))
        inner(nnx.state(model, nnx.Param))

    outer(model)
    np.testing.assert_array_equal(model.w[...], [2.0, 3.0, 4.0])
