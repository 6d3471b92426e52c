"""nnx.Optimizer: both update forms, every Variable mode, the JAX boundaries, errors."""

from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_helpers import (
    MODES,
    LoRAParam,
    X,
    Y,
    assert_params_close,
    assert_trees_close,
    forward,
    frozen_grads,
    loss_of,
    make,
    pure_params,
    pure_value_fn,
    reference_loop,
)

import nnx
from nnx.optim import GradientStructureError, OptimError, OptState

STEPS = 3


# -- numbers ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["update(grads)", "update(model, grads)"])
def test_k_eager_steps_equal_a_plain_optax_loop(mode, form):
    model = make(mode)
    expected = reference_loop(make(mode), optax.adam(1e-2), STEPS)
    with nnx.var_defaults(**MODES[mode]) if MODES[mode] else nnx.var_defaults():
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    for _ in range(STEPS):
        grads = frozen_grads(model)
        if form == "update(grads)":
            optimizer.update(grads)
        else:
            optimizer.update(model, grads)
    assert_params_close(model, expected)
    assert optimizer.step.value == STEPS
    # OptState's value is untyped, so pyright narrows it to Literal[3] after the `==`
    assert cast(jax.Array, optimizer.step.value).dtype == jnp.uint32


def test_non_selected_variables_are_left_alone():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    model.calls.value = jnp.array(5.0)
    optimizer.update(frozen_grads(model))
    assert model.calls.value == 5.0


def test_default_wrt_is_param_and_opt_state_mirrors_optax():
    model = make()
    optimizer = nnx.Optimizer(model, optax.adam(1e-3))
    assert optimizer.wrt is nnx.Param
    count = optimizer.opt_state[0].count
    assert isinstance(count, OptState) and count.value == 0
    mu = optimizer.opt_state[0].mu  # Flax's layout: a State by parameter path
    assert isinstance(mu, nnx.State)
    kernel = mu["l1"]["kernel"]
    assert isinstance(kernel, nnx.OptVariable) and isinstance(count, nnx.OptArray)
    assert kernel[...].shape == (2, 8)
    paths = [p for p, _ in nnx.state(model, nnx.Param).flat_state()]
    assert [p for p, _ in mu.flat_state()] == paths
    assert all(float(jnp.abs(v[...]).sum()) == 0 for _, v in mu.flat_state())


@pytest.mark.parametrize(
    "grads_form", ["state_of_variables", "state_of_arrays", "pure_dict", "module_shaped"]
)
def test_every_gradient_form_gives_the_same_update(grads_form):
    model = make()
    expected = reference_loop(make(), optax.sgd(0.1, momentum=0.9), STEPS)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    for _ in range(STEPS):
        if grads_form == "module_shaped":  # seed 002: grad of vars_as(model, mutable=False)
            grads = jax.grad(loss_of)(nnx.vars_as(model, mutable=False))
        else:
            grads = frozen_grads(model)
            if grads_form == "state_of_arrays":
                grads = nnx.State(grads.to_pure_dict())
            elif grads_form == "pure_dict":
                grads = grads.to_pure_dict()
        optimizer.update(grads)
    assert_params_close(model, expected)


# -- boundaries ------------------------------------------------------------------
def test_hijax_under_plain_jit_closure_form():  # seed 002, first cell
    nnx.var_defaults(hijax=True)
    model = make("hijax")
    expected = reference_loop(make("hijax"), optax.adamw(1e-2), STEPS)
    optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=nnx.Param)
    assert optimizer.step.hijax

    @jax.jit
    def train_step(x, y):
        loss_fn = lambda m: jnp.mean((m(x) - y) ** 2)
        loss, grads = jax.value_and_grad(loss_fn)(nnx.vars_as(model, mutable=False))
        optimizer.update(model, grads)
        return loss

    for _ in range(STEPS):
        train_step(X, Y)
    assert_params_close(model, expected, tol=1e-5)
    assert optimizer.step.value == STEPS


@pytest.mark.parametrize("mode", ["hijax", "ref"])
def test_plain_jit_with_model_and_optimizer_as_arguments(mode):  # seeds 002 and 000
    nnx.var_defaults(**MODES[mode])
    model = make(mode)
    expected = reference_loop(make(mode), optax.adam(1e-2), STEPS)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    traces = []

    @jax.jit
    def train_step(model, optimizer, x, y):
        traces.append(1)
        graphdef, params, nondiff = nnx.split(model, nnx.Param, ...)

        def loss_fn(params):
            m = nnx.merge(graphdef, params, nondiff)
            return ((m(x) - y) ** 2).mean()

        frozen = nnx.to_arrays(params) if mode == "ref" else nnx.vars_as(params, mutable=False)
        loss, grads = jax.value_and_grad(loss_fn)(frozen)
        optimizer.update(model, grads)
        return loss

    losses = [float(train_step(model, optimizer, X, Y)) for _ in range(STEPS)]
    assert losses[0] > losses[-1]
    assert_params_close(model, expected, tol=1e-5)
    assert optimizer.step.value == STEPS
    assert len(traces) == 1  # the optimizer's pytree structure is stable


def test_split_merge_round_trip_under_plain_jit():
    model = make()
    expected = reference_loop(make(), optax.adam(1e-2), STEPS)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2))
    graphdef, state = nnx.split(optimizer)  # includes the model (a graph child)
    assert "model" in state and "opt_state" in state

    @jax.jit
    def train_step(state):
        optimizer = nnx.merge(graphdef, state)
        grads = jax.grad(loss_of)(nnx.vars_as(optimizer.model, mutable=False))
        optimizer.update(grads)
        return nnx.state(optimizer)

    for _ in range(STEPS):
        state = train_step(state)
    nnx.update(optimizer, state)
    assert_params_close(model, expected, tol=1e-5)
    assert optimizer.step.value == STEPS
    assert int(optimizer.opt_state[0].count.value) == STEPS


def test_split_of_model_and_optimizer_keeps_one_copy_of_the_params():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    graphdef, state = nnx.split((model, optimizer))
    model2, optimizer2 = nnx.merge(graphdef, state)
    assert optimizer2.model is model2
    assert len(nnx.state(optimizer2, nnx.Param).flat_state()) == 4


def test_state_survives_split_merge_and_training_continues_identically():
    a, b = make(), make()
    opt_a = nnx.Optimizer(a, optax.adam(1e-2))
    opt_b = nnx.Optimizer(b, optax.adam(1e-2))
    for _ in range(2):
        opt_a.update(frozen_grads(a))
        opt_b.update(frozen_grads(b))
    graphdef, state = nnx.split(opt_b)
    opt_c = nnx.merge(graphdef, jax.tree.map(jnp.array, state))
    assert opt_c.model is not b
    opt_a.update(frozen_grads(a))
    opt_c.update(frozen_grads(opt_c.model))
    assert_params_close(opt_c.model, pure_params(a))
    assert opt_c.step.value == 3


def test_state_survives_a_pure_dict_round_trip_like_a_checkpoint():
    a, b = make(), make()
    opt_a = nnx.Optimizer(a, optax.adam(1e-2))
    for _ in range(2):
        opt_a.update(frozen_grads(a))
    saved = jax.tree.map(np.asarray, nnx.state(opt_a).to_pure_dict())  # what a checkpoint holds
    mu = saved["opt_state"][0]["mu"]  # keyed by parameter path, as Flax writes it
    assert jax.tree.map(np.shape, mu) == {
        "l1": {"bias": (8,), "kernel": (2, 8)},
        "l2": {"bias": (3,), "kernel": (8, 3)},
    }
    opt_b = nnx.Optimizer(b, optax.adam(1e-2))
    state = nnx.state(opt_b)
    state.replace_by_pure_dict(saved)
    nnx.update(opt_b, state)
    assert int(opt_b.step.value) == 2
    opt_a.update(frozen_grads(a))
    opt_b.update(frozen_grads(b))
    assert_params_close(b, pure_params(a))


def test_as_a_jax_pytree_the_optimizer_carries_only_its_own_state():
    model = make()
    optimizer = nnx.Optimizer(model, optax.adam(1e-3))
    variables = jax.tree.leaves(optimizer, is_leaf=nnx.is_variable)
    assert len(variables) == 1 + 1 + 2 * 4  # step, count, mu and nu per parameter
    rebuilt = jax.tree.map(lambda x: x, optimizer)
    assert rebuilt.model is model and rebuilt.tx is optimizer.tx


def test_optimizer_state_follows_the_model_mode_not_the_defaults():
    model = make("hijax")  # defaults stay plain here
    optimizer = nnx.Optimizer(model, optax.adam(1e-2))
    opt_vars = jax.tree.leaves(nnx.state(optimizer, OptState), is_leaf=nnx.is_variable)
    assert len(opt_vars) == 10 and all(v.hijax for v in opt_vars)
    expected = reference_loop(make("hijax"), optax.adam(1e-2), STEPS)

    @jax.jit
    def train_step(model, optimizer):
        optimizer.update(model, jax.grad(loss_of)(nnx.vars_as(model, mutable=False)))

    for _ in range(STEPS):
        train_step(model, optimizer)
    assert_params_close(model, expected, tol=1e-5)
    assert optimizer.step.value == STEPS
    assert nnx.Optimizer(make("ref"), optax.sgd(0.1)).step.ref
    assert not nnx.Optimizer(make(), optax.sgd(0.1)).step.hijax


@pytest.mark.parametrize("mode", MODES)
def test_optax_state_after_k_jitted_steps_equals_optax_own(mode):
    model = make(mode)
    expected, expected_state = reference_loop(
        make(mode), optax.adam(1e-2), STEPS, return_state=True
    )
    optimizer = nnx.Optimizer(model, optax.adam(1e-2))
    if mode == "plain":  # plain Variables cross jax.jit through split/merge
        graphdef, state = nnx.split(optimizer)

        @jax.jit
        def split_step(state):
            optimizer = nnx.merge(graphdef, state)
            optimizer.update(jax.grad(loss_of)(nnx.vars_as(optimizer.model, mutable=False)))
            return nnx.state(optimizer)

        for _ in range(STEPS):
            state = split_step(state)
        nnx.update(optimizer, state)
    else:

        @jax.jit
        def step(model, optimizer):
            grads = nnx.split(nnx.vars_as(model, mutable=False), nnx.Param, ...)[1]
            graphdef, _, rest = nnx.split(model, nnx.Param, ...)
            grads = jax.grad(lambda p: loss_of(nnx.merge(graphdef, p, rest)))(grads)
            optimizer.update(model, grads)

        for _ in range(STEPS):
            step(model, optimizer)
    assert_params_close(model, expected, tol=1e-5)
    got_state = jax.tree.map(lambda v: v[...], optimizer.opt_state, is_leaf=nnx.is_variable)
    got_state = jax.tree.map(  # States as pure dicts, like the reference's
        lambda x: x.to_pure_dict() if isinstance(x, nnx.State) else x,
        got_state,
        is_leaf=lambda x: isinstance(x, nnx.State),
    )
    assert int(got_state[0].count) == STEPS
    assert_trees_close(got_state, expected_state, tol=1e-5)


def test_model_and_optimizer_under_plain_jit_and_split_merge():
    nnx.var_defaults(hijax=True)
    model = make("hijax")
    expected = reference_loop(make("hijax"), optax.adam(1e-2), 2 * STEPS)
    state = nnx.ModelAndOptimizer(model, optax.adam(1e-2))

    @jax.jit
    def train_step(state):  # the model travels inside `state`: pass nothing else
        state.update(jax.grad(loss_of)(nnx.vars_as(state.model, mutable=False)))

    for _ in range(STEPS):
        train_step(state)
    graphdef, flat = nnx.split(state)
    copy = nnx.merge(graphdef, nnx.vars_as(flat, hijax=True))  # new hijax cells
    assert copy.model is not model and int(copy.step.value) == STEPS
    for _ in range(STEPS):
        train_step(copy)
    assert_params_close(copy.model, expected, tol=1e-5)
    assert_params_close(model, reference_loop(make("hijax"), optax.adam(1e-2), STEPS), tol=1e-5)


# -- optax features --------------------------------------------------------------
@pytest.mark.parametrize(
    "make_tx",
    [
        lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-2)),
        lambda: optax.adam(optax.linear_schedule(1e-2, 1e-3, 5)),
        lambda: optax.MultiSteps(optax.sgd(0.1), every_k_schedule=2),
        lambda: optax.masked(optax.sgd(0.1), lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
    ],
    ids=["chain", "schedule", "multisteps", "masked"],
)
@pytest.mark.parametrize("where", ["eager", "hijax plain jit"])
def test_composite_transformations_match_optax(make_tx, where):
    mode = "hijax" if where == "hijax plain jit" else "plain"
    model = make(mode)
    expected = reference_loop(make(mode), make_tx(), 5)
    optimizer = nnx.Optimizer(model, make_tx())

    def step(model, optimizer):
        optimizer.update(model, jax.grad(loss_of)(nnx.vars_as(model, mutable=False)))

    if where != "eager":
        step = jax.jit(step)
    for _ in range(5):
        step(model, optimizer)
    assert_params_close(model, expected, tol=1e-5)
    assert int(optimizer.step.value) == 5


def test_inject_hyperparams_can_be_read_and_changed_between_steps():
    model = make()
    optimizer = nnx.Optimizer(model, optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))
    lr = optimizer.opt_state.hyperparams["learning_rate"]
    assert np.isclose(lr.value, 0.1)
    before = pure_params(model)
    grads = frozen_grads(model)
    lr.value = jnp.array(0.0)
    optimizer.update(grads)
    assert_params_close(model, before)
    lr[...] = 0.5
    optimizer.update(grads)
    expected = jax.tree.map(lambda p, g: p - 0.5 * g, before, grads.to_pure_dict())
    assert_params_close(model, expected)


def test_extra_arguments_reach_a_line_search():
    nnx.var_defaults(hijax=True)
    model = make("hijax")
    # the backtracking line search needs value, grad and value_fn, like optax.lbfgs's
    # zoom line search (which takes far longer to compile)
    tx = optax.chain(
        optax.sgd(0.5), optax.scale_by_backtracking_linesearch(max_backtracking_steps=4)
    )
    pure_value_fn = lambda d: jnp.mean((forward(d, X) - Y) ** 2)

    @jax.jit
    def reference(p, state):  # the same iteration with optax directly
        value, grad = jax.value_and_grad(pure_value_fn)(p)
        updates, state = tx.update(grad, state, p, value=value, grad=grad, value_fn=pure_value_fn)
        return optax.apply_updates(p, updates), state

    p = pure_params(model)
    state = tx.init(p)
    for _ in range(3):
        p, state = reference(p, state)

    optimizer = nnx.Optimizer(model, tx)

    def value_fn(params):  # what optax passes: a State of arrays
        return pure_value_fn(params.to_pure_dict())

    @jax.jit
    def train_step():
        params = nnx.State(nnx.state(model, nnx.Param).to_pure_dict())
        value, grad = jax.value_and_grad(value_fn)(params)
        optimizer.update(model, grad, value=value, grad=grad, value_fn=value_fn)

    for _ in range(3):
        train_step()
    assert_params_close(model, p, tol=1e-5)


def _sgd_with_lr_sequence(params, lrs):
    """p <- p - lr_k * grad(p_k): what SGD with a changed learning rate must do."""
    for lr in lrs:
        g = jax.grad(pure_value_fn)(params)
        params = jax.tree.map(lambda p, g, lr=lr: p - lr * g, params, g)
    return params


@pytest.mark.parametrize("mode", MODES)
def test_inject_hyperparams_changed_between_jitted_steps_without_retracing(mode):
    model = make(mode)
    lrs = [0.3, 0.0, 0.5, 0.25]  # the first step uses the initial 0.3
    expected = _sgd_with_lr_sequence(pure_params(model), lrs)
    optimizer = nnx.Optimizer(model, optax.inject_hyperparams(optax.sgd)(learning_rate=0.3))
    traces = []

    def update(model, optimizer):
        traces.append(1)
        optimizer.update(model, jax.grad(loss_of)(nnx.vars_as(model, mutable=False)))

    if mode == "plain":
        graphdef, state = nnx.split(optimizer)

        @jax.jit
        def split_step(state):
            optimizer = nnx.merge(graphdef, state)
            update(optimizer.model, optimizer)
            return nnx.state(optimizer)

        for k, lr in enumerate(lrs):
            if k:  # a Python float: stored as float32, so no new trace
                optimizer.opt_state.hyperparams["learning_rate"][...] = lr
            state = split_step(nnx.state(optimizer))
            nnx.update(optimizer, state)
    else:
        step = jax.jit(update)
        for k, lr in enumerate(lrs):
            if k:
                optimizer.opt_state.hyperparams["learning_rate"][...] = lr
            step(model, optimizer)
    assert_params_close(model, expected, tol=1e-5)
    assert len(traces) == 1
    np.testing.assert_allclose(optimizer.opt_state.hyperparams["learning_rate"].value, 0.25)


def test_inject_hyperparams_of_adam_inside_a_chain_match_optax():
    def make_tx():
        return optax.chain(
            optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
        )

    model = make()
    params = pure_params(model)
    tx = make_tx()
    opt_state: Any = tx.init(params)  # optax types its states as any pytree
    optimizer = nnx.Optimizer(model, make_tx())
    for lr in [1e-2, 3e-2, 1e-3]:
        opt_state[1].hyperparams["learning_rate"] = jnp.asarray(lr)  # optax's own recipe
        updates, opt_state = tx.update(jax.grad(pure_value_fn)(params), opt_state, params)
        params = optax.apply_updates(params, updates)
        optimizer.opt_state[1].hyperparams["learning_rate"].value = lr
        optimizer.update(frozen_grads(model))
    assert_params_close(model, params, tol=1e-6)
    assert float(optimizer.opt_state[1].hyperparams["b1"].value) == pytest.approx(0.9)


def test_a_python_number_written_into_opt_state_keeps_its_dtype():
    optimizer = nnx.Optimizer(make(), optax.inject_hyperparams(optax.sgd)(learning_rate=0.1))
    lr = optimizer.opt_state.hyperparams["learning_rate"]
    lr[...] = 1
    assert lr.value.dtype == jnp.float32 and float(lr.value) == 1.0
    optimizer.step.value = 7
    step = cast(jax.Array, optimizer.step.value)  # untyped value, narrowed to Literal[7]
    assert step.dtype == jnp.uint32 and int(step) == 7


def test_lbfgs_with_value_fn_matches_a_plain_optax_loop():
    steps = 4

    @jax.jit
    def reference(p, state):
        value, grad = jax.value_and_grad(pure_value_fn)(p)
        updates, state = tx.update(grad, state, p, value=value, grad=grad, value_fn=pure_value_fn)
        return optax.apply_updates(p, updates), state

    tx = optax.lbfgs()
    model = make()
    p = pure_params(model)
    state: Any = tx.init(p)  # optax types its states as any pytree
    for _ in range(steps):
        p, state = reference(p, state)
    assert float(pure_value_fn(p)) < 0.2 * float(loss_of(model))  # it did optimize

    optimizer = nnx.Optimizer(model, optax.lbfgs())

    def value_fn(params):  # optax calls it with the parameters as a State of arrays
        return pure_value_fn(params.to_pure_dict())

    graphdef, opt_state = nnx.split(optimizer)

    @jax.jit
    def train_step(opt_state):
        optimizer = nnx.merge(graphdef, opt_state)
        params = nnx.State(nnx.state(optimizer.model, nnx.Param).to_pure_dict())
        value, grad = jax.value_and_grad(value_fn)(params)
        optimizer.update(grad, value=value, grad=grad, value_fn=value_fn)  # update(grads) form
        return nnx.state(optimizer)

    for _ in range(steps):
        opt_state = train_step(opt_state)
    nnx.update(optimizer, opt_state)
    assert_params_close(model, p, tol=1e-5)
    memory = optimizer.opt_state[0].diff_params_memory  # (memory_size, *shape) per param
    np.testing.assert_allclose(
        memory["l1"]["kernel"][...],
        state[0].diff_params_memory["l1"]["kernel"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_contrib_reduce_on_plateau_reads_the_value_argument():
    def make_tx():
        plateau = optax.contrib.reduce_on_plateau(factor=0.5, patience=1, atol=1e-3)
        return optax.chain(optax.sgd(0.5), plateau)

    values = [3.0, 2.0, 2.0, 2.0, 2.0, 2.0]  # improves once, then plateaus: the scale halves
    model = make()
    params = pure_params(model)
    tx = make_tx()
    state: Any = tx.init(params)  # optax types its states as any pytree
    optimizer = nnx.Optimizer(model, make_tx())
    for value in values:
        updates, state = tx.update(jax.grad(pure_value_fn)(params), state, params, value=value)
        params = optax.apply_updates(params, updates)
        optimizer.update(frozen_grads(model), value=jnp.asarray(value))
    assert_params_close(model, params, tol=1e-6)
    scale = float(optimizer.opt_state[1].scale.value)
    assert scale == pytest.approx(float(state[1].scale)) and scale < 1.0


def _scale_by_keyword():
    """A transformation reading a required keyword of update: -scale * g."""

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None, *, scale, **extra):
        return jax.tree.map(lambda g: -scale * g, updates), state

    # a required keyword on purpose: optax's update protocol has none
    return optax.GradientTransformationExtraArgs(init, update)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("form", ["update(grads)", "update(model, grads)", "keywords"])
def test_extra_keyword_arguments_reach_tx_update(form):
    model = make()
    before = pure_params(model)
    grads = frozen_grads(model)
    optimizer = nnx.Optimizer(model, _scale_by_keyword())
    if form == "update(grads)":
        optimizer.update(grads, scale=0.5)
    elif form == "update(model, grads)":
        optimizer.update(model, grads, scale=0.5)
    else:
        optimizer.update(model=model, grads=grads, scale=0.5)
    expected = jax.tree.map(lambda p, g: p - 0.5 * g, before, grads.to_pure_dict())
    assert_params_close(model, expected)
    with pytest.raises(TypeError, match="scale"):
        optimizer.update(grads)  # without the keyword optax's update fails


def test_wrt_selects_only_lora_params():  # seed 003's LoRA fine-tuning
    model = make(lora=True)
    base = pure_params(model, nnx.Not(LoRAParam))
    expected = reference_loop(make(lora=True), optax.adam(1e-2), STEPS, wrt=LoRAParam)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=LoRAParam)
    for _ in range(STEPS):
        optimizer.update(frozen_grads(model, LoRAParam))
    assert_params_close(model, expected, wrt=LoRAParam)
    assert_params_close(model, base, wrt=nnx.Not(LoRAParam))  # frozen


def test_module_shaped_gradients_are_filtered_by_wrt():
    model = make(lora=True)
    expected = reference_loop(make(lora=True), optax.sgd(0.1), 1, wrt=LoRAParam)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=LoRAParam)
    optimizer.update(jax.grad(loss_of)(nnx.vars_as(model, mutable=False)))
    assert_params_close(model, expected, wrt=LoRAParam)


def test_wrt_accepts_a_path_filter():
    wrt = nnx.All(nnx.Param, nnx.PathContains("l2"))
    model = make()
    frozen = pure_params(model, nnx.Not(wrt))
    expected = reference_loop(make(), optax.adam(1e-2), STEPS, wrt=wrt)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=wrt)
    assert list(optimizer.opt_state[0].mu) == ["l2"]
    for _ in range(STEPS):
        optimizer.update(jax.grad(loss_of)(nnx.vars_as(model, mutable=False)))
    assert_params_close(model, expected, wrt=wrt)
    assert_params_close(model, frozen, wrt=nnx.Not(wrt))


def test_model_and_optimizer_is_one_object():
    model = make()
    expected = reference_loop(make(), optax.sgd(0.1), STEPS)
    state = nnx.ModelAndOptimizer(model, optax.sgd(0.1))
    np.testing.assert_allclose(state(X), model(X))
    for _ in range(STEPS):
        state.update(jax.grad(loss_of)(nnx.vars_as(state.model, mutable=False)))
    assert_params_close(model, expected)
    variables = jax.tree.leaves(state, is_leaf=nnx.is_variable)
    assert len(variables) == 6  # the model travels with it: 5 Variables, and step


# -- errors ----------------------------------------------------------------------
def test_missing_gradient_names_the_path():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    grads = frozen_grads(model).to_pure_dict()
    del grads["l2"]["bias"]
    with pytest.raises(GradientStructureError, match=r"no entry at 'l2/bias'.*wrt=Param"):
        optimizer.update(grads)


def test_extra_gradient_names_the_path():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    grads = frozen_grads(model).to_pure_dict()
    grads["l1"]["scale"] = jnp.ones(())
    with pytest.raises(GradientStructureError, match=r"entry at 'l1/scale'.*not a Variable"):
        optimizer.update(model, grads)


def test_gradient_of_the_wrong_shape_names_the_path():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    grads = frozen_grads(model).to_pure_dict()
    grads["l1"]["kernel"] = jnp.ones((3, 3))
    with pytest.raises(GradientStructureError, match=r"'l1/kernel' has shape \(3, 3\).*\(2, 8\)"):
        optimizer.update(grads)


def test_the_first_mismatched_path_is_named():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    grads = frozen_grads(model).to_pure_dict()
    del grads["l2"]["kernel"]
    del grads["l1"]["bias"]
    with pytest.raises(GradientStructureError, match=r"no entry at 'l1/bias'") as info:
        optimizer.update(grads)
    assert "l2" not in str(info.value)
    before = pure_params(model)
    assert_params_close(model, before)  # nothing was written
    assert optimizer.step.value == 0


def test_structure_error_is_raised_while_tracing_a_jitted_step():
    nnx.var_defaults(hijax=True)
    model = make("hijax")
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))

    @jax.jit
    def step(model, optimizer):
        grads = jax.grad(loss_of)(nnx.vars_as(model, mutable=False))
        grads = nnx.state(grads, nnx.Param).to_pure_dict()
        grads["l1"]["extra"] = jnp.ones(())
        optimizer.update(model, grads)

    with pytest.raises(GradientStructureError, match=r"entry at 'l1/extra'"):
        step(model, optimizer)


def test_structure_errors_are_nnx_structure_errors():
    assert issubclass(GradientStructureError, nnx.StructureError)


def test_gradients_of_the_wrong_type_are_rejected():
    optimizer = nnx.Optimizer(make(), optax.sgd(0.1))
    with pytest.raises(TypeError, match="gradients must be an nnx.State"):
        optimizer.update([jnp.ones(3)])


def test_passing_the_model_instead_of_gradients_is_an_error():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))
    before = pure_params(model)
    with pytest.raises(TypeError, match=r"got the model where the gradients go"):
        optimizer.update(model)
    with pytest.raises(TypeError, match=r"optimizer.update\(model, grads\)"):
        optimizer.update(model, model)
    assert_params_close(model, before)
    assert optimizer.step.value == 0


def test_wrt_that_selects_nothing_is_an_error():
    with pytest.raises(OptimError, match="no Variable or array attribute matching wrt=LoRAParam"):
        nnx.Optimizer(make(), optax.sgd(0.1), wrt=LoRAParam)


def test_tx_must_be_a_gradient_transformation():
    with pytest.raises(TypeError, match="optax GradientTransformation"):
        nnx.Optimizer(make(), 1e-3)  # pyright: ignore[reportArgumentType]


def test_plain_variables_under_plain_jit_say_what_to_do():
    model = make()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1))

    @jax.jit
    def step():
        optimizer.update(jax.grad(loss_of)(nnx.vars_as(model, mutable=False)))

    with pytest.raises(nnx.TraceContextError, match="hijax"):
        step()
