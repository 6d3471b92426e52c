"""Seed 000, "Array Refs": every code cell runs against `import nnx`, in order.

One test per cell (cells are found by a line of their source); each checks what the
cell prints and the objects it leaves behind. Cells that run before a test's own cell
run once, in the seed's order, in one namespace, like a notebook kernel.

Limitations, cell by cell:
- "MutableArray Outputs", plain jax.jit returning a ref model: raises JAX's error (refs
  cannot leave a jit; it names the output path). The seed's next two cells are the way
  out and both work: create with plain arrays then `nnx.to_refs`, or `nnx.jit`.
- "Reference Sharing", one Ref passed twice: raises JAX's ValueError naming both
  arguments (JAX cannot alias a Ref). The same Variable shared inside one Pytree: works,
  because the pytree view of an nnx.Pytree holds each Variable once.
- `find_duplicates` and split/merge: work (split deduplicates).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from seed_notebook import Notebook

import nnx

SEED = "000_49de18eaf9d64826.txt"


@pytest.fixture(scope="module")
def nb():
    return Notebook.load(SEED)


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def test_imports(nb):
    r = nb.run("import optax").ok()
    assert r.ns["nnx"] is nnx


def test_array_refs_101_increment_without_return(nb):
    r = nb.run("a_ref = jax.new_ref").ok()
    first, second = _lines(r.out)
    assert first.startswith("[1] =") and "[1, 2, 3]" in first
    assert second.startswith("[2] =") and "[2, 3, 4]" in second
    np.testing.assert_array_equal(r.ns["a_ref"][...], [2, 3, 4])


def test_lowered_increment_updates_the_ref_buffer_in_place(nb):
    r = nb.run("print(increment.lower(a_ref).as_text())").ok()
    assert "func.func public @main" in r.out
    assert "stablehlo.add" in r.out
    # the ref's buffer is donated to the output: the update happens in place
    assert "tf.aliasing_output" in r.out


def test_hijax_variable_passed_to_a_jitted_ref_function(nb):
    r = nb.run("variable = nnx.Variable(jnp.array([1, 2, 3]), is_hijax=True)").ok()
    lines = _lines(r.out)
    assert lines[0] == "variable.is_hijax = True"
    # the Variable prints in Flax NNX's layout, one attribute per line
    first, second = r.out.split("[2] =")
    assert "[1] = Variable( # 3 (12 B)" in first and "value=Array([1, 2, 3]" in first
    assert "value=Array([2, 3, 4]" in second and "hijax=True" in second
    np.testing.assert_array_equal(r.ns["variable"][...], [2, 3, 4])


def test_use_refs_context_makes_ref_variables(nb):
    r = nb.run("with nnx.use_refs(True):\n  variable = nnx.Variable").ok()
    variable = r.ns["variable"]
    # `use_refs` is the array-refs era name of `var_defaults(ref=True)`: the Variable is
    # backed by a jax.Ref. `is_hijax` (alias of `hijax`) is about the other mode, so the
    # cell prints False here.
    assert variable.ref and isinstance(variable.get_raw_value(), jax.Ref)
    assert r.out.strip() == f"variable.is_hijax = {variable.is_hijax}"
    assert not nnx.var_defaults().ref  # the context restored the default


def test_to_refs_and_to_arrays_convert_a_model(nb):
    r = nb.run("refs_model = nnx.to_refs(model)").ok()
    model, refs_model, arrays_model = (r.ns[k] for k in ("model", "refs_model", "arrays_model"))
    assert not model.kernel.ref
    assert refs_model.kernel.ref and isinstance(refs_model.kernel.get_raw_value(), jax.Ref)
    assert not arrays_model.kernel.ref and not arrays_model.kernel.hijax
    for m in (refs_model, arrays_model):
        np.testing.assert_array_equal(m.kernel[...], model.kernel[...])
        np.testing.assert_array_equal(m.bias[...], model.bias[...])
    to_refs_out, to_arrays_out = r.out.split("nnx.to_arrays(refs_model) =")
    assert to_refs_out.startswith("nnx.to_refs(model) = Linear(")
    assert "ref=True" in to_refs_out and "ref=True" not in to_arrays_out


def test_block_definition(nb):
    r = nb.run("class Block(nnx.Module):").ok()
    assert isinstance(r.ns["Block"], type)


def test_training_loop_with_refs_under_plain_jit(nb):
    r = nb.run("loss, grads = jax.value_and_grad(loss_fn)(nnx.to_arrays(params))").ok()
    ns = r.ns
    model, optimizer = ns["model"], ns["optimizer"]
    assert np.isfinite(float(r.value))  # the cell displays the loss
    assert int(optimizer.step[...]) == 1
    assert model.linear.kernel.ref  # the step wrote through the refs, in place
    x, y = jnp.ones((10, 2)), jnp.ones((10, 3))
    losses = [float(ns["train_step"](model, optimizer, x=x, y=y)) for _ in range(5)]
    assert int(optimizer.step[...]) == 6
    assert losses[-1] < losses[0]


def test_scan_over_layers_with_a_vmapped_stack_of_refs(nb):
    r = nb.run("block_stack = create_stack(nnx.Rngs(0).fork(split=8))").ok()
    stack = r.ns["block_stack"]
    assert stack.linear.kernel.shape == (8, 2, 64)
    assert stack.linear_out.kernel.shape == (8, 64, 2)
    assert stack.linear.kernel.ref
    y = r.ns["y"]
    assert y.shape == (3, 2) and np.isfinite(np.asarray(y)).all()
    assert r.out.startswith("y = ")


def test_refs_returned_from_plain_jit_fail_with_a_clear_error(nb):
    r = nb.run("try:\n  with nnx.use_refs(True):\n    model = create_model").ok()
    # Limitation, raises: a plain jax.jit cannot return jax.Refs created inside it
    # (JAX's own rule, JAX's own error). It says what and where (the output path); what
    # to do is the next two cells: create with plain arrays and convert with
    # nnx.to_refs, or use nnx.jit, which carries new Variables out in their mode.
    assert r.out.startswith("Error:")
    assert "mutable array references cannot be returned" in r.out
    assert "result.bn." in r.out or "result.linear" in r.out


def test_create_with_arrays_then_convert_to_refs(nb):
    r = nb.run("model = nnx.to_refs(model) # convert to mutable after creation").ok()
    model = r.ns["model"]
    assert model.linear.kernel.ref and model.bn.mean.ref
    assert r.out.startswith("model.linear =")


def test_nnx_jit_returns_a_model_created_with_refs(nb):
    r = nb.run("@nnx.jit\ndef create_model(rngs):").ok()
    # Limitation fixed: nnx.jit carries the new Variables out and rebuilds them in the
    # mode they were created with.
    model = r.ns["model"]
    assert model.linear.kernel.ref
    assert model.linear.kernel.shape == (2, 64)
    assert r.out.startswith("model.linear =")


def test_the_same_ref_passed_twice_to_jit_is_an_error(nb):
    r = nb.run("x = jax.new_ref(jnp.array(0))").ok()
    assert r.out.startswith("ValueError:")
    assert "appeared at both a and b" in r.out


def test_refs_shared_inside_one_pytree_are_passed_to_jit_once(nb):
    r = nb.run("class SharedVariables(nnx.Pytree):").ok()
    # Limitation, works now: JAX rejects a Ref passed twice (previous cell), but the JAX
    # pytree view of an nnx.Pytree is its graph flattening, which holds each Variable
    # once; so `c` (an alias of `a`) and `f` (an alias of `d`) are no error, and a write
    # through either path reaches the one shared Variable.
    assert _lines(r.out) == ["SharedVariables None", "SharedModules None"]
    shared_modules = r.ns["shared_modules"]

    @jax.jit
    def write_through_alias(pytree):
        pytree.f.bias[...] = jnp.full((1,), 7.0)

    write_through_alias(shared_modules)
    assert shared_modules.f is shared_modules.d
    assert float(shared_modules.d.bias[0]) == 7.0


def test_find_duplicates_reports_the_shared_paths(nb):
    r = nb.run("if (duplicates := nnx.find_duplicates(shared_variables)):").ok()
    assert _lines(r.out) == [
        "shared variables duplicates: [[('a',), ('c',)]]",
        "shared modules duplicates:   [[('d',), ('f',)]]",
    ]


def test_split_deduplicates_so_jit_can_update_shared_refs(nb):
    r = nb.run("def h(graphdef, state):").ok()
    state, shared = r.ns["state"], r.ns["shared_variables"]
    assert set(state) == {"a", "b"}  # `c` is `a`: stored once
    assert int(shared.a[...]) == 10 and shared.c is shared.a
    assert int(shared.b[...]) == 1
    assert "updated SharedVariables(" in r.out
