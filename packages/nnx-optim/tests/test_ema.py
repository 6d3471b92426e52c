"""nnx.EMA: the moving average against an independent computation, eager and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from optim_helpers import LoRAParam, X, make, pure_params

import nnx
from nnx.optim import GradientStructureError, OptimError


def _perturb(model, k):
    for v in jax.tree.leaves(nnx.state(model, nnx.Param), is_leaf=nnx.is_variable):
        v[...] = v[...] + 0.1 * k


def test_ema_follows_the_recurrence():
    model = make()
    ema = nnx.EMA(model, decay=0.9)
    expected = pure_params(model)
    for k in range(1, 4):
        _perturb(model, k)
        ema.update(model)
        expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, expected, pure_params(model))
    got = ema.params.to_pure_dict()
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_ema_holds_copies_not_the_model_variables():
    model = make()
    ema = nnx.EMA(model, decay=0.5)
    assert ema.params["l1"]["kernel"] is not model.l1.kernel
    assert isinstance(ema.params["l1"]["kernel"], nnx.Param)


def test_apply_to_gives_a_model_with_the_averaged_params():
    model = make()
    ema = nnx.EMA(model, decay=0.0)  # decay 0: the average is the last value
    _perturb(model, 1)
    ema.update(nnx.state(model, nnx.Param))  # a State works as the source too
    _perturb(model, 5)
    view = ema.apply_to(model)
    assert view.l1.kernel is ema.params["l1"]["kernel"]
    assert view.calls is model.calls  # non-averaged state is the model's own
    assert not np.allclose(view(X), model(X))


def test_only_wrt_variables_are_averaged():
    model = make(lora=True)
    ema = nnx.EMA(model, decay=0.5, wrt=LoRAParam)
    assert [p for p, _ in ema.params.flat_state()] == [("lora",)]


def test_ema_updates_inside_plain_jit_with_hijax_variables():
    nnx.var_defaults(hijax=True)
    model = make("hijax")
    ema = nnx.EMA(model, decay=0.5)
    start = pure_params(model)
    _perturb(model, 2)

    @jax.jit
    def step(ema, model):
        ema.update(model)

    step(ema, model)
    expected = jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, start, pure_params(model))
    for a, b in zip(jax.tree.leaves(ema.params.to_pure_dict()), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_ema_survives_split_merge_under_jit():
    model = make()
    ema = nnx.EMA(model, decay=0.5)
    graphdef, state = nnx.split((ema, model))
    _perturb(model, 1)
    target = pure_params(model)
    start = nnx.state(ema).to_pure_dict()

    @jax.jit
    def step(state):
        ema, model = nnx.merge(graphdef, state)
        ema.update(model)
        return nnx.state((ema, model))

    graphdef, state = nnx.split((ema, model))
    nnx.update((ema, model), step(state))
    got = ema.params.to_pure_dict()
    expected = jax.tree.map(lambda a, b: 0.5 * a + 0.5 * b, start["params"], target)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_mismatched_source_names_the_path():
    ema = nnx.EMA(make(), decay=0.5)
    with pytest.raises(GradientStructureError, match="'lora'"):
        ema.update(make(lora=True))


def test_bad_decay_and_empty_selection():
    with pytest.raises(ValueError, match="decay must be in"):
        nnx.EMA(make(), decay=1.5)
    with pytest.raises(OptimError, match="no Variable matching wrt=LoRAParam"):
        nnx.EMA(make(), wrt=LoRAParam)


def _mean_of_params(ema):
    return [np.asarray(x) for x in jax.tree.leaves(ema.params.to_pure_dict())]


def test_decay_can_be_changed_between_and_inside_jitted_steps():
    nnx.var_defaults(hijax=True)
    model = make("hijax")
    ema = nnx.EMA(model, decay=0.5)
    assert isinstance(ema.decay, nnx.optim.OptState) and ema.decay.hijax
    expected = pure_params(model)
    traces = []

    @jax.jit
    def step(ema, model, new_decay):
        traces.append(1)
        ema.decay[...] = new_decay  # written inside the trace, carried out by hijax
        ema.update(model)

    for k, d in enumerate([0.5, 0.9, 0.0], start=1):
        _perturb(model, k)
        step(ema, model, jnp.float32(d))
        expected = jax.tree.map(lambda e, p, d=d: d * e + (1 - d) * p, expected, pure_params(model))
        assert float(ema.decay.value) == pytest.approx(d)
    for a, b in zip(_mean_of_params(ema), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert len(traces) == 1

    ema.decay[...] = 0.75  # a Python number between steps keeps float32: no retrace
    _perturb(model, 4)
    jax.jit(lambda ema, model: ema.update(model))(ema, model)
    expected = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * p, expected, pure_params(model))
    for a, b in zip(_mean_of_params(ema), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_decay_of_one_call_may_be_traced():
    model = make()
    ema = nnx.EMA(model, decay=0.9)
    start = pure_params(model)
    _perturb(model, 1)
    graphdef, state = nnx.split((ema, model))

    @jax.jit
    def step(state, d):
        ema, model = nnx.merge(graphdef, state)
        ema.update(model, decay=d)
        return nnx.state((ema, model))

    nnx.update((ema, model), step(state, jnp.float32(0.25)))
    expected = jax.tree.map(lambda a, b: 0.25 * a + 0.75 * b, start, pure_params(model))
    for a, b in zip(_mean_of_params(ema), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert float(ema.decay.value) == pytest.approx(0.9)  # the stored decay is unchanged


def test_ema_copies_follow_the_model_mode():
    model = make("ref")  # defaults stay plain
    ema = nnx.EMA(model, decay=0.5)
    assert ema.params["l1"]["kernel"].ref and ema.decay.ref
    _perturb(model, 1)
    jax.jit(lambda ema, model: ema.update(model))(ema, model)
    got = float(ema.params["l1"]["bias"].value[0])
    assert got == pytest.approx(0.05, rel=1e-6)  # 0.5 * 0 + 0.5 * 0.1


def test_decay_out_of_range_in_update_is_an_error():
    ema = nnx.EMA(make(), decay=0.5)
    with pytest.raises(ValueError, match=r"EMA.update: decay must be in \[0, 1\], got -0.1"):
        ema.update(make(), decay=-0.1)
