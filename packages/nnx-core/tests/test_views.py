"""`nnx.view`, `nnx.view_info` and `nnx.with_attributes` (Flax NNX 0.12's documented behaviour)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from core_helpers import Linear

import nnx


class Drop(nnx.Module):
    def __init__(self, rate: float, *, deterministic: bool = False):
        self.rate = rate
        self.deterministic = deterministic

    def set_view(self, deterministic: bool | None = None):
        """Choose the mode.

        Args:
          deterministic: if True, disables dropout masking.
        """
        if deterministic is not None:
            self.deterministic = deterministic


class Norm(nnx.Module):
    def __init__(self):
        self.mean = nnx.BatchStat(jnp.zeros(2))
        self.use_running_average = False

    def set_view(self, use_running_average: bool | None = None, **kwargs):  # noqa: ARG002
        if use_running_average is not None:
            self.use_running_average = use_running_average


class Plain(nnx.Module):  # no docstring on set_view
    def __init__(self):
        self.flag = 0

    def set_view(self, flag=None):
        if flag is not None:
            self.flag = flag


class Block(nnx.Module):
    def __init__(self):
        self.linear = Linear(2, 2, rngs=nnx.Rngs(0))
        self.dropout = Drop(0.5)
        self.layers = [Drop(0.1), self.linear]


def test_view_makes_a_new_graph_in_another_mode_sharing_the_variables():
    block = Block()
    eval_block = nnx.view(block, deterministic=True)
    assert eval_block.dropout.deterministic and eval_block.layers[0].deterministic
    assert not block.dropout.deterministic  # the original is left alone
    assert eval_block.linear.kernel is block.linear.kernel
    assert eval_block.layers[1] is eval_block.linear  # sharing kept in the copy
    train_block = nnx.view(eval_block, deterministic=False)
    assert not train_block.dropout.deterministic and eval_block.dropout.deterministic


def test_view_with_only_and_unused_kwargs():
    block = Block()
    new = nnx.view(block, only=lambda path, m: path == ("dropout",), deterministic=True)
    assert new.dropout.deterministic and not new.layers[0].deterministic
    with pytest.raises(ValueError, match=r"no Module's set_view takes \['decode'\]"):
        nnx.view(block, deterministic=True, decode=True)
    quiet = nnx.view(block, deterministic=True, decode=True, raise_if_not_found=False)
    assert quiet.dropout.deterministic


def test_view_passes_every_kwarg_to_a_set_view_that_takes_kwargs():
    class M(nnx.Module):
        def __init__(self):
            self.norm = Norm()

    new = nnx.view(M(), use_running_average=True, anything=1)  # **kwargs takes the rest
    assert new.norm.use_running_average


def test_view_info_lists_each_class_with_its_arguments_and_docs():
    class M(nnx.Module):
        def __init__(self):
            self.drop = Drop(0.5)
            self.plain = Plain()
            self.linear = Linear(2, 2, rngs=nnx.Rngs(0))

    text = nnx.view_info(M())
    assert text.splitlines() == [
        "Drop:",
        "  deterministic: bool | None = None",
        "    if True, disables dropout masking.",
        "Plain:",
        "  set_view(self, flag=None)",  # as Flax prints it: the class function
    ]
    assert nnx.view_info(M(), only=Drop).startswith("Drop:") and "Plain" not in nnx.view_info(
        M(), only=Drop
    )


def test_with_attributes_sets_existing_attributes_on_a_copy():
    block = Block()
    new = nnx.with_attributes(block, deterministic=True, rate=0.0)
    assert new.dropout.deterministic and new.dropout.rate == 0.0
    assert new.layers[0].deterministic
    assert not block.dropout.deterministic and block.dropout.rate == 0.5
    assert new.linear.kernel is block.linear.kernel
    only = nnx.with_attributes(block, only=Drop, deterministic=True)
    assert only.dropout.deterministic
    with pytest.raises(ValueError, match=r"no selected Module has \['missing'\]"):
        nnx.with_attributes(block, missing=1)
    assert nnx.with_attributes(block, missing=1, raise_if_not_found=False) is not block


# -- Module.perturb -------------------------------------------------------------------
class Perturbed(nnx.Module):
    def __init__(self):
        self.linear1 = Linear(2, 3, rngs=nnx.Rngs(0))
        self.linear2 = Linear(3, 4, rngs=nnx.Rngs(1))

    def __call__(self, x):
        h = self.linear1(x)
        h = self.perturb("xgrad", h)
        return self.linear2(h)


def test_perturb_needs_a_sample_run_then_holds_zeros_of_the_intermediate_shape():
    model = Perturbed()
    x = jnp.ones((1, 2))
    assert not hasattr(model, "xgrad")
    y0 = model(x)
    assert isinstance(model.xgrad, nnx.Perturbation) and model.xgrad.shape == (1, 3)  # pyright: ignore[reportAttributeAccessIssue]
    np.testing.assert_array_equal(model.xgrad[...], np.zeros((1, 3)))  # pyright: ignore[reportAttributeAccessIssue]
    np.testing.assert_allclose(y0, model.linear2(model.linear1(x)), rtol=1e-6)


def test_the_gradient_of_a_perturbation_is_the_gradient_of_the_intermediate():
    model = Perturbed()
    x = jnp.array([[0.5, -1.0]])
    target = jnp.ones((1, 4))
    model(x)
    graphdef, perturbations, rest = nnx.split(model, nnx.Perturbation, ...)

    def loss(perturbations):
        m = nnx.merge(graphdef, perturbations, rest)
        return jnp.mean((m(x) - target) ** 2)

    grads = jax.grad(loss)(perturbations)

    def downstream(h):  # the same loss as a function of the intermediate itself
        return jnp.mean((model.linear2(h) - target) ** 2)

    expected = jax.grad(downstream)(model.linear1(x))
    np.testing.assert_allclose(grads["xgrad"][...], expected, rtol=1e-5)
    assert not np.allclose(expected, 0)


def test_perturb_refuses_a_name_holding_another_variable_kind():
    class M(nnx.Module):
        def __init__(self):
            self.h = nnx.Param(jnp.zeros(2))

        def __call__(self, x):
            return self.perturb("h", x)

    with pytest.raises(ValueError, match="M.h holds a Param, not a Perturbation"):
        M()(jnp.ones(2))


# -- capture ---------------------------------------------------------------------------
class Sower(nnx.Module):
    def __init__(self):
        self.linear = Linear(2, 2, rngs=nnx.Rngs(0))

    def features(self, x):
        return self.linear(x)

    def __call__(self, x):
        h = self.features(x)
        self.sow(nnx.Intermediate, "hidden", h)
        h = self.perturb("h_grad", h)
        return 2 * h


def test_capture_returns_what_was_sown_during_the_call_and_leaves_the_model_clean():
    model = Sower()
    x = jnp.ones((1, 2))
    y, inter = nnx.capture(model, nnx.Intermediate)(x)
    np.testing.assert_allclose(y, 2 * model.linear(x), rtol=1e-6)
    assert [p for p, _ in inter.flat_state()] == [("hidden",)]
    (h,) = inter["hidden"][...]
    np.testing.assert_allclose(h, model.linear(x), rtol=1e-6)
    assert not hasattr(model, "hidden")  # taken out of the model
    assert isinstance(model.h_grad, nnx.Perturbation)  # not asked for: left in place  # pyright: ignore[reportAttributeAccessIssue]
    y2, inter2 = nnx.capture(model, nnx.Intermediate)(x)  # a second call: only its own
    assert len(inter2["hidden"][...]) == 1


def test_capture_of_several_types_bound_methods_functions_and_the_decorator_form():
    model = Sower()
    x = jnp.ones((1, 2))
    y, inter, perturbs = nnx.capture(lambda m, x: m(x), nnx.Intermediate, nnx.Perturbation)(
        model, x
    )
    assert [p for p, _ in inter.flat_state()] == [("hidden",)]  # exact types
    assert [p for p, _ in perturbs.flat_state()] == [("h_grad",)]
    assert not hasattr(model, "h_grad")
    out = nnx.capture(model.features)(x)  # no types: the result only
    np.testing.assert_allclose(out, model.linear(x), rtol=1e-6)
    decorated = nnx.capture(nnx.Intermediate)(model)
    assert [p for p, _ in decorated(x)[1].flat_state()] == [("hidden",)]


def test_capture_with_init_differentiates_perturbations():
    model = Sower()
    x = jnp.array([[1.0, -2.0]])
    _, _, perturbs = nnx.capture(model, nnx.Intermediate, nnx.Perturbation)(x)
    assert not hasattr(model, "hidden") and not hasattr(model, "h_grad")

    def loss(perturbs):  # the model keeps no value made under the trace
        y, _, _ = nnx.capture(model, nnx.Intermediate, nnx.Perturbation, init=perturbs)(x)
        return jnp.sum(y**2)

    grads = jax.grad(loss)(perturbs)
    h = model.linear(x)
    np.testing.assert_allclose(grads["h_grad"][...], 2 * 2 * (2 * h), rtol=1e-5)


def test_capture_method_outputs_records_every_method_under_its_name():
    model = Sower()
    x = jnp.ones((1, 2))
    y, inter = nnx.capture(model, nnx.Cache, method_outputs=nnx.Cache)(x)
    assert [p for p, _ in inter.flat_state()] == [
        ("__call__",),
        ("features",),
        ("linear", "__call__"),
    ]
    np.testing.assert_allclose(inter["__call__"][...][0], y)
    assert Sower.features.__name__ == "features" and "wrapped" not in repr(Sower.__call__)


def test_capture_method_outputs_leaves_nnx_list_methods_alone():
    # nnx.iter_modules yields an nnx.List (Flax NNX's is a Module): its list methods
    # are not the model's methods and record nothing
    class Stack(nnx.Module):
        def __init__(self):
            self.seen = nnx.List([])

        def __call__(self, x):
            self.seen.append(1)
            self.seen.pop()
            return 2 * x

    model = Stack()
    y, inter = nnx.capture(model, nnx.Cache, method_outputs=nnx.Cache)(jnp.ones(2))
    assert [p for p, _ in inter.flat_state()] == [("__call__",)]
    model.seen.append(5)  # still the list's method (no recorded output planted over it)
    assert list(model.seen) == [5] and "append" not in vars(model.seen)
