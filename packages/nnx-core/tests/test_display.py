"""Text reprs and nnx.display."""

import jax
import jax.numpy as jnp
from core_helpers import Linear

import nnx


def test_module_repr_shows_shapes_kinds_and_counts():
    m = Linear(2, 5, rngs=nnx.Rngs(0))
    text = repr(m)
    assert text.startswith("Linear( # Param: 15 (60 B)\n")
    kernel = (
        "  kernel=Param( # 10 (40 B)\n    value=Array(shape=(2, 5), dtype=dtype('float32'))\n  ),"
    )
    assert kernel in text
    assert "  din=2" in text


def test_large_arrays_are_summarized():
    # a Variable shows its value as numpy prints it: elided past 1000 elements
    v = nnx.Param(jnp.zeros((1000, 1000)))
    text = repr(v)
    assert text.startswith("Param( # 1,000,000 (4.0 MB)\n  value=Array([[0., 0., 0., ..., 0.")
    assert text.endswith("dtype=float32)\n)") and len(text.splitlines()) < 12


def test_small_values_are_shown_and_modes_are_marked():
    assert repr(nnx.Variable(jnp.array([1, 2, 3]))) == (
        "Variable( # 3 (12 B)\n  value=Array([1, 2, 3], dtype=int32)\n)"
    )
    hi = nnx.Variable(jnp.array(1), hijax=True, tag="t")
    assert repr(hi) == (
        "Variable( # 1 (4 B)\n  value=Array(1, dtype=int32, weak_type=True),\n"
        "  hijax=True,\n  tag='t'\n)"
    )
    # a Python number is not an array: no size comment
    assert repr(nnx.Param(1.0)) == "Param(\n  value=1.0\n)"


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
    assert text.startswith("Rngs( # RngState: 2 (12 B)\n")  # keys and counts: one kind
    assert "key=RngKey( # 1 (8 B)\n      value=Array((), dtype=key<fry>) overlaying:" in text
    assert "count=RngCount( # 1 (4 B)\n      value=Array(0, dtype=uint32)," in text
    assert "value=Array(shape=(8,), dtype=key<fry>)" in repr(r.fork(split=8))


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
    nnx.display(nnx.Param(jnp.zeros((3,))))
    assert capsys.readouterr().out == (
        "Param( # 3 (12 B)\n  value=Array([0., 0., 0.], dtype=float32)\n)\n"
    )


def test_not_a_notebook_outside_ipython():
    from nnx.core import _display

    assert _display._in_notebook() is False


def test_reprs_of_every_mode_and_of_large_values_inside_containers():
    r = nnx.Variable(jnp.zeros((2,)), ref=True)  # the ref's current value
    assert repr(r) == "Variable( # 2 (8 B)\n  value=Array([0., 0.], dtype=float32),\n  ref=True\n)"
    frozen = nnx.vars_as(nnx.Param(jnp.zeros((2,))), mutable=False)
    assert repr(frozen).endswith("  value=Array([0., 0.], dtype=float32),\n  mutable=False\n)")
    d = nnx.Variable({"w": jnp.zeros((100, 100)), "n": jnp.array(1)}, hijax=True)
    text = repr(d)
    assert text.startswith("Variable( # 10,001 (40.0 KB)\n  value={'w': Array([[0., 0., 0., ...")
    assert "'n': Array(1, dtype=int32, weak_type=True)}" in text and "hijax=True" in text
    assert len(text) < 800


def test_repr_inside_jit_shows_tracers_not_values():
    seen = []

    @jax.jit
    def f(m):
        seen.append(repr(m))
        return m.kernel[...]

    f(Linear(2, 2, rngs=nnx.Rngs(0)))
    assert "kernel=Param( # 4 (16 B)\n    value=Traced<float32[2,2]>" in seen[0]


def test_a_setting_call_prints_in_angle_brackets():
    # Flax's docs show `nnx.use_eager_sharding(True)` at the prompt as `<...>`
    assert repr(nnx.use_eager_sharding(True)) == "<nnx.use_eager_sharding(True)>"
    assert nnx.using_eager_sharding()


def test_flat_state_prints_one_pair_per_line_as_flax_does():
    # Flax NNX 0.12's layout: each (path, leaf) pair on its own line, nested reprs indented
    state = nnx.State({"a": jnp.ones(2), "b": {"c": 1}})
    assert repr(state.flat_state()) == (
        "FlatState([\n"
        "  (('a',), Array([1., 1.], dtype=float32)),\n"
        "  (('b', 'c'), 1)\n"
        "])"
    )
    assert repr(nnx.State({}).flat_state()) == "FlatState([])"
    flat = nnx.State({"w": nnx.Param(jnp.ones(3))}).flat_state()
    assert repr(flat) == (
        "FlatState([\n"
        "  (('w',), Param( # 3 (12 B)\n"
        "    value=Array([1., 1., 1.], dtype=float32)\n"
        "  ))\n"
        "])"
    )


def test_list_and_dict_print_as_flax_does():
    assert repr(nnx.List([1, 2])) == "List([\n  1,\n  2\n])"
    assert repr(nnx.Dict(a=1, b="x")) == "Dict({\n  'a': 1,\n  'b': 'x'\n})"
    assert repr(nnx.List([])) == "List([])" and repr(nnx.Dict()) == "Dict({})"
    assert repr(nnx.List([nnx.List([1]), {"a": 1}])) == (
        "List([\n  List([\n    1\n  ]),\n  {'a': 1}\n])"
    )
    assert repr(nnx.List([nnx.Param(jnp.ones(1))])) == (
        "List([\n  Param( # 1 (4 B)\n    value=Array([1.], dtype=float32)\n  )\n])"
    )


def test_rng_stream_prints_its_tag_first():
    text = repr(nnx.Rngs(params=1).params)
    assert text.splitlines()[1] == "  tag='params',"
    assert text.index("tag='params',") < text.index("key=RngKey")
