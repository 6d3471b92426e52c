"""Seed 003, "Flax Basics": modules, Variables, nested modules, surgery, transforms,
the functional API and filters. One test per cell, run in order in one namespace.

`nnx.display` falls back to the text repr outside notebooks, so the cells that call it
print the model, and the tests read that text.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from seed_notebook import Notebook

import nnx

SEED = "003_4c2bc2a590ff02fd.txt"


@pytest.fixture(scope="module")
def nb():
    return Notebook.load(SEED)


def test_pip_install_cell_is_skipped(nb):
    (cell,) = [c for c in nb.cells if c.skipped]
    assert "pip install" in cell.source


def test_imports(nb):
    assert nb.run("import jax.numpy as jnp").ok().ns["nnx"] is nnx


def test_linear_module_is_called_directly(nb):
    r = nb.run("y = model(x=jnp.ones((1, 2)))\n\nprint(y)").ok()
    model, y = r.ns["model"], r.ns["y"]
    assert y.shape == (1, 5)
    expected = np.ones((1, 2)) @ np.asarray(model.w[...]) + np.asarray(model.b[...])
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    # nnx.display's text fallback: the module tree with its Params and static attributes
    assert "Linear(" in r.out and "w=Param(" in r.out and "din=2" in r.out


def test_stateful_counter(nb):
    r = nb.run("class Counter(nnx.Module):").ok()
    before, after = r.out.strip().splitlines()
    assert before.startswith("counter.count.value = Array(0")
    assert after.startswith("counter.count.value = Array(1")
    assert type(r.ns["counter"].count).__name__ == "Count"


def test_nested_modules(nb):
    r = nb.run("class MLP(nnx.Module):").ok()
    model = r.ns["model"]
    assert r.ns["y"].shape == (3, 5)
    assert model.linear1.w.shape == (2, 16) and model.linear2.w.shape == (16, 5)
    assert isinstance(model.bn, nnx.BatchNorm) and isinstance(model.dropout, nnx.Dropout)
    assert "MLP(" in r.out and "bn=BatchNorm(" in r.out and "dropout=Dropout(" in r.out


def test_model_surgery_with_lora(nb):
    r = nb.run("class LoraLinear(nnx.Module):").ok()
    ns = r.ns
    model, LoraLinear, LoraParam = ns["model"], ns["LoraLinear"], ns["LoraParam"]
    assert isinstance(model.linear1, LoraLinear) and isinstance(model.linear2, LoraLinear)
    assert model.linear1.A.shape == (2, 4) and model.linear2.B.shape == (4, 5)
    lora = nnx.state(model, LoraParam)
    assert len(jax.tree.leaves(lora)) == 4
    assert ns["y"].shape == (3, 5)
    # the LoRA path adds x @ A @ B to the wrapped Linear's output
    x = jnp.ones((3, 32))
    l2 = model.linear2
    np.testing.assert_allclose(
        l2(x), l2.linear(x) + x @ l2.A[...] @ l2.B[...], rtol=1e-5, atol=1e-5
    )
    assert "LoraLinear(" in r.out and "LoraParam(" in r.out


def test_nnx_jit_train_step_with_optimizer_reference(nb):
    r = nb.run("optimizer = nnx.Optimizer(model, optax.adam(1e-3))  # reference sharing").ok()
    ns = r.ns
    loss_line, step_line = r.out.strip().splitlines()
    assert loss_line.startswith("loss = Array(")
    assert step_line.startswith("optimizer.step.value = Array(1")
    assert int(ns["optimizer"].step.value) == 1
    # the state updates are in place: more steps lower the loss
    losses = [float(ns["train_step"](ns["model"], ns["optimizer"], ns["x"], ns["y"]))]
    losses += [float(ns["train_step"](ns["model"], ns["optimizer"], ns["x"], ns["y"]))]
    assert losses[1] < float(ns["loss"])
    assert int(ns["optimizer"].step.value) == 3


def test_scan_over_a_vmapped_stack_of_layers(nb):
    r = nb.run("@nnx.vmap(in_axes=0, out_axes=0)\ndef create_model(key").ok()
    model = r.ns["model"]
    assert r.out.startswith("y.shape = (3, 10)")
    assert model.linear1.w.shape == (5, 10, 32) and model.linear2.w.shape == (5, 32, 10)
    assert model.bn.mean.shape == (5, 32)
    # the five layers got different parameters (one key each)
    w = np.asarray(model.linear1.w[...])
    assert not np.allclose(w[0], w[1])
    assert np.isfinite(np.asarray(r.ns["y"])).all()


def test_stateful_linear(nb):
    r = nb.run("class StatefulLinear(nnx.Module):").ok()
    assert int(r.ns["model"].count.value) == 1
    assert "count=Count(" in r.out


def test_split_into_graphdef_and_state(nb):
    r = nb.run("graphdef, state = nnx.split(model)\n\nnnx.display(graphdef, state)").ok()
    assert isinstance(r.ns["graphdef"], nnx.GraphDef)
    assert isinstance(r.ns["state"], nnx.State)
    assert set(r.ns["state"]) == {"w", "b", "count"}
    assert "GraphDef(" in r.out and "State(" in r.out


def test_functional_api_round_trip_through_plain_jit(nb):
    r = nb.run("# 1. Use split to create a pytree representation of the Module").ok()
    before, after = r.out.strip().splitlines()
    assert before == "model.count.value = Array(1, dtype=uint32)"
    assert after == "model.count.value = Array(2, dtype=uint32)"
    assert r.ns["y"].shape == (1, 5)


def test_split_with_type_filters(nb):
    r = nb.run("graphdef, params, counts = nnx.split(model, nnx.Param, Count)").ok()
    assert set(r.ns["params"]) == {"w", "b"}
    assert set(r.ns["counts"]) == {"count"}
    assert "Param(" in r.out and "Count(" in r.out


def test_filters_must_be_exhaustive(nb):
    nb.run("graphdef, params, counts = nnx.split(model, nnx.Param, Count)").ok()
    with pytest.raises(nnx.FilterError, match="count"):
        nnx.split(nb.ns["model"], nnx.Param)


def test_merge_and_update_consume_several_states(nb):
    r = nb.run("model = nnx.merge(graphdef, params, counts)").ok()
    model = r.ns["model"]
    assert type(model).__name__ == "StatefulLinear"
    assert int(model.count.value) == 2
    np.testing.assert_array_equal(model.w[...], r.ns["params"]["w"][...])
