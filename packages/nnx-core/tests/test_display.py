"""Text reprs and nnx.display."""

import jax
import jax.numpy as jnp
from core_helpers import Linear

import nnx


def test_module_repr_shows_shapes_kinds_and_counts():
    m = Linear(2, 5, rngs=nnx.Rngs(0))
    text = repr(m)
    assert text.startswith("Linear( # Param: 15 (60 B)")
    assert "kernel=Param(value=float32[2,5])" in text
    assert "din=2" in text


def test_large_arrays_are_summarized():
    v = nnx.Param(jnp.zeros((1000, 1000)))
    assert repr(v) == "Param(value=float32[1000,1000])"


def test_small_values_are_shown_and_modes_are_marked():
    assert (
        repr(nnx.Variable(jnp.array([1, 2, 3]))) == "Variable(value=Array([1, 2, 3], dtype=int32))"
    )
    hi = nnx.Variable(jnp.array(1), hijax=True, tag="t")
    assert repr(hi) == "Variable(value=Array(1, dtype=int32, weak_type=True), hijax=True, tag='t')"


def test_shared_and_cyclic_graphs_print():
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    m.me = m
    m.tied = m.kernel
    text = repr(m)
    assert "<shared Linear>" in text and "<shared Param" in text


def test_graphdef_repr():
    g, _ = nnx.split(Linear(2, 2, rngs=nnx.Rngs(0)))
    assert "NodeDef(Linear" in repr(g) and "VariableDef(Param)" in repr(g)


def test_display_falls_back_to_text(capsys):
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    nnx.display(m, nnx.state(m))
    out = capsys.readouterr().out
    assert "Linear(" in out and "State({" in out


def test_rng_keys_print_as_key_arrays():
    r = nnx.Rngs(0)
    text = repr(r)
    assert "RngKey(value=key<fry>[]" in text and "RngCount(value=Array(0, dtype=uint32)" in text
    assert "key<fry>[8]" in repr(r.fork(split=8))


def test_display_uses_treescope_in_a_notebook(monkeypatch):
    import sys
    import types

    from nnx.core import _display

    shown = []
    fake = types.ModuleType("treescope")
    fake.display = lambda obj, ignore_exceptions=False: shown.append(obj)  # pyright: ignore[reportAttributeAccessIssue]
    monkeypatch.setitem(sys.modules, "treescope", fake)
    monkeypatch.setattr(_display, "_in_notebook", lambda: True)
    m = Linear(2, 2, rngs=nnx.Rngs(0))
    nnx.display(m, 3)
    assert shown == [m, 3]


def test_display_in_a_notebook_without_treescope_prints_text(monkeypatch, capsys):
    import sys

    from nnx.core import _display

    monkeypatch.setitem(sys.modules, "treescope", None)  # import fails
    monkeypatch.setattr(_display, "_in_notebook", lambda: True)
    nnx.display(nnx.Param(jnp.zeros((300, 300))))
    assert capsys.readouterr().out == "Param(value=float32[300,300])\n"


def test_not_a_notebook_outside_ipython():
    from nnx.core import _display

    assert _display._in_notebook() is False


def test_reprs_of_every_mode_and_of_large_values_inside_containers():
    r = nnx.Variable(jnp.zeros((64, 64)), ref=True)
    assert repr(r) == "Variable(value=Ref(float32[64,64]), ref=True)"
    frozen = nnx.vars_as(nnx.Param(jnp.zeros((4, 4))), mutable=False)
    assert repr(frozen) == "Param(value=float32[4,4], mutable=False)"
    d = nnx.Variable({"w": jnp.zeros((100, 100)), "n": jnp.array(1)}, hijax=True)
    text = repr(d)
    assert "'w': float32[100,100]" in text and "hijax=True" in text and len(text) < 200


def test_repr_inside_jit_shows_tracers_not_values():
    seen = []

    @jax.jit
    def f(m):
        seen.append(repr(m))
        return m.kernel[...]

    f(Linear(2, 2, rngs=nnx.Rngs(0)))
    assert "kernel=Param(value=Traced<float32[2,2]>" in seen[0]
