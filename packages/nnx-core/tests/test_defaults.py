"""var_defaults: global setter, context manager, thread safety, and its aliases."""

import contextlib
import threading

import jax.numpy as jnp
import pytest

import nnx


def _mode_of_new_variable() -> str:
    v = nnx.Variable(jnp.ones(1))
    return "hijax" if v.hijax else "ref" if v.ref else "plain"


def _in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("value", fn()))
    t.start()
    t.join()
    return out["value"]


def test_global_setter_returns_the_previous_setting_and_restores_it():
    assert tuple(nnx.var_defaults()) == (False, False)
    old = nnx.var_defaults(hijax=True)
    assert (old.hijax, old.ref) == (True, False)  # the setting now in force
    assert (old.previous.hijax, old.previous.ref) == (False, False)
    assert _mode_of_new_variable() == "hijax"
    old.restore()
    assert _mode_of_new_variable() == "plain"
    old.restore()  # a second restore changes nothing
    assert tuple(nnx.var_defaults()) == (False, False)


def test_global_setter_can_be_undone_by_setting_the_read_value_back():
    current = nnx.var_defaults().hijax  # as seed 002 does
    nnx.var_defaults(hijax=True)
    assert _mode_of_new_variable() == "hijax"
    nnx.var_defaults(hijax=current)
    assert _mode_of_new_variable() == "plain"


def test_global_setter_is_seen_by_other_threads():
    nnx.var_defaults(ref=True)
    assert _in_thread(_mode_of_new_variable) == "ref"


def test_hijax_and_ref_switch_each_other_off():
    nnx.var_defaults(ref=True)
    nnx.var_defaults(hijax=True)
    assert tuple(nnx.var_defaults()) == (True, False)
    nnx.var_defaults(ref=True)
    assert tuple(nnx.var_defaults()) == (False, True)
    nnx.var_defaults(ref=False)
    assert tuple(nnx.var_defaults()) == (False, False)


def test_asking_for_both_modes_is_an_error():
    with pytest.raises(ValueError, match="choose hijax=True or ref=True"):
        nnx.var_defaults(hijax=True, ref=True)
    assert tuple(nnx.var_defaults()) == (False, False)


def test_context_manager_nests_and_restores():
    with nnx.var_defaults(ref=True) as d:
        assert (d.hijax, d.ref) == (False, True)
        assert _mode_of_new_variable() == "ref"
        with nnx.var_defaults(hijax=True):
            assert _mode_of_new_variable() == "hijax"
        assert _mode_of_new_variable() == "ref"
    assert _mode_of_new_variable() == "plain"


def test_context_manager_restores_on_exception():
    with pytest.raises(RuntimeError, match="boom"), nnx.var_defaults(hijax=True):
        raise RuntimeError("boom")
    assert _mode_of_new_variable() == "plain"


def test_context_in_one_thread_is_not_seen_by_a_thread_started_inside_it():
    with nnx.var_defaults(hijax=True):
        assert _mode_of_new_variable() == "hijax"
        assert _in_thread(_mode_of_new_variable) == "plain"


def test_context_in_one_thread_is_not_seen_by_a_running_thread():
    entered, checked = threading.Event(), threading.Event()
    seen = {}

    def holder():
        with nnx.var_defaults(hijax=True):
            entered.set()
            checked.wait(5)
            seen["holder"] = _mode_of_new_variable()

    def other():
        entered.wait(5)
        seen["other"] = _mode_of_new_variable()  # first read in this thread
        checked.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"holder": "hijax", "other": "plain"}


def test_context_exit_in_a_thread_does_not_undo_a_global_change_made_meanwhile():
    entered, changed = threading.Event(), threading.Event()

    def holder():
        with nnx.var_defaults(hijax=True):
            entered.set()
            changed.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    entered.wait(5)
    nnx.var_defaults(ref=True)  # global, while the other thread is in its block
    changed.set()
    t.join()
    assert _mode_of_new_variable() == "ref"
    assert _in_thread(_mode_of_new_variable) == "ref"


def test_many_threads_each_in_their_own_context():
    modes = ["plain", "ref", "hijax"] * 4
    barrier = threading.Barrier(len(modes))
    seen: dict = {}

    def worker(i, mode):
        kwargs = {"plain": {"ref": False, "hijax": False}, "ref": {"ref": True}}.get(
            mode, {"hijax": True}
        )
        with nnx.var_defaults(**kwargs):
            barrier.wait(5)
            seen[i] = [_mode_of_new_variable() for _ in range(20)]
            barrier.wait(5)

    threads = [threading.Thread(target=worker, args=(i, m)) for i, m in enumerate(modes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {i: [m] * 20 for i, m in enumerate(modes)}
    assert _mode_of_new_variable() == "plain"


def test_exit_stack_entry_is_scoped_to_the_thread_too():
    with contextlib.ExitStack() as stack:
        stack.enter_context(nnx.var_defaults(hijax=True))
        assert _mode_of_new_variable() == "hijax"
        assert _in_thread(_mode_of_new_variable) == "plain"
    assert _mode_of_new_variable() == "plain"


def test_global_call_inside_a_with_block_outlives_the_block():
    with nnx.var_defaults(ref=True):
        nnx.var_defaults(hijax=True)
        assert _mode_of_new_variable() == "hijax"
    assert _mode_of_new_variable() == "hijax"


@pytest.mark.parametrize(
    "alias, mode",
    [
        (nnx.use_refs, "ref"),
        (nnx.use_mutable_arrays, "ref"),
        (nnx.use_hijax, "hijax"),
    ],
)
def test_aliases_as_context_managers_and_global_setters(alias, mode):
    with alias(True):
        assert _mode_of_new_variable() == mode
        assert _in_thread(_mode_of_new_variable) == "plain"
        with alias(False):
            assert _mode_of_new_variable() == "plain"
    assert _mode_of_new_variable() == "plain"
    old = alias(True)
    assert _in_thread(_mode_of_new_variable) == mode
    old.restore()
    assert _mode_of_new_variable() == "plain"


def test_using_hijax_reads_the_default_that_use_hijax_sets():
    # Flax's guides: `current = nnx.using_hijax()`, `nnx.use_hijax(True)`, ...,
    # `nnx.use_hijax(current)` to clean up.
    current = nnx.using_hijax()
    assert current is False
    try:
        nnx.use_hijax(True)
        assert nnx.using_hijax() is True
        assert nnx.Variable(jnp.zeros(2)).hijax
        with nnx.var_defaults(hijax=False):
            assert nnx.using_hijax() is False
        assert nnx.using_hijax() is True
    finally:
        nnx.use_hijax(current)
    assert nnx.using_hijax() is False and not nnx.Variable(jnp.zeros(2)).hijax
