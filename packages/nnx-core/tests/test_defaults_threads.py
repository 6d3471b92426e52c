"""`var_defaults` in a `with` block or as a decorator never reaches another thread."""

from __future__ import annotations

import sys
import threading
import time
from typing import cast

import jax.numpy as jnp
import pytest

import nnx


def _race(scoped_body, seconds: float = 2.0) -> tuple[int, int]:
    """Thread A loops over ``scoped_body()``; thread B creates Variables outside any
    block meanwhile. Returns (how many B made, how many of them came out hijax)."""
    stop = threading.Event()
    made = [0, 0]
    errors: list[BaseException] = []
    x = jnp.zeros(())

    def a():
        try:
            while not stop.is_set():
                scoped_body()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def b():
        try:
            while not stop.is_set():
                v = nnx.Variable(x)
                made[0] += 1
                made[1] += v.hijax
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=a), threading.Thread(target=b)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(10)
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    return made[0], made[1]


def test_a_with_block_in_one_thread_never_changes_what_another_thread_creates():
    x = jnp.zeros(())

    def body():
        with nnx.var_defaults(hijax=True):
            assert nnx.Variable(x).hijax

    made, hijax = _race(body)
    assert made > 100  # the other thread really ran meanwhile
    assert hijax == 0


def test_the_alias_context_managers_are_thread_local_too():
    x = jnp.zeros(())

    def body():
        with nnx.use_hijax(True):
            assert nnx.Variable(x).hijax

    made, hijax = _race(body, seconds=1.0)
    assert made > 100 and hijax == 0


def test_a_decorated_function_in_one_thread_never_changes_another_thread():
    x = jnp.zeros(())

    @nnx.var_defaults(hijax=True)
    def make():
        return nnx.Variable(x)

    def body():
        assert cast(nnx.Variable, make()).hijax

    made, hijax = _race(body, seconds=1.0)
    assert made > 100 and hijax == 0


def test_the_decorator_applies_only_during_the_call():
    @nnx.var_defaults(hijax=True)
    def make(value, *, scale=1.0):
        """Docstring kept."""
        return nnx.Variable(value * scale)

    assert make.__name__ == "make" and make.__doc__ == "Docstring kept."
    assert not nnx.var_defaults().hijax  # defining it changed nothing
    v = cast(nnx.Variable, make(jnp.ones(2), scale=2.0))
    assert v.hijax and float(v[...][0]) == 2.0
    assert not nnx.Variable(jnp.ones(1)).hijax
    assert not nnx.var_defaults().hijax


def test_the_decorator_restores_the_setting_when_the_function_raises():
    @nnx.var_defaults(ref=True)
    def boom():
        assert nnx.var_defaults().ref
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        boom()
    assert not nnx.var_defaults().ref


def test_the_decorator_nests_inside_a_with_block_and_gives_the_block_back():
    @nnx.var_defaults(hijax=True)
    def make():
        return nnx.Variable(jnp.zeros(1))

    with nnx.var_defaults(ref=True):
        assert cast(nnx.Variable, make()).hijax
        assert nnx.Variable(jnp.zeros(1)).ref
    assert not nnx.var_defaults().ref


def test_a_stored_call_applied_as_a_decorator_takes_its_global_change_back():
    d = nnx.var_defaults(hijax=True)  # a plain call: the process default, at once
    assert nnx.var_defaults().hijax

    @d
    def make():
        return nnx.Variable(jnp.zeros(1))

    assert not nnx.var_defaults().hijax
    assert cast(nnx.Variable, make()).hijax


def test_the_decorator_needs_a_function():
    with pytest.raises(TypeError, match="needs a function, got int"):
        nnx.var_defaults(hijax=True)(3)


def test_the_global_call_still_changes_every_thread_at_once():
    old = nnx.var_defaults(hijax=True)
    try:
        seen = []
        t = threading.Thread(target=lambda: seen.append(nnx.Variable(jnp.zeros(1)).hijax))
        t.start()
        t.join()
        assert seen == [True]
    finally:
        old.restore()
    assert not nnx.var_defaults().hijax


def test_a_with_block_chosen_by_a_conditional_expression_is_scoped_too():
    flag = True
    with nnx.var_defaults(hijax=True) if flag else nnx.var_defaults():
        seen = []
        t = threading.Thread(target=lambda: seen.append(nnx.Variable(jnp.zeros(1)).hijax))
        t.start()
        t.join()
        assert seen == [False]
        assert nnx.Variable(jnp.zeros(1)).hijax


def test_a_stored_call_is_global_until_its_with_block_narrows_it_to_the_thread():
    def other_thread_makes_hijax() -> bool:
        seen = []
        t = threading.Thread(target=lambda: seen.append(nnx.Variable(jnp.zeros(1)).hijax))
        t.start()
        t.join()
        return seen[0]

    d = nnx.var_defaults(hijax=True)  # kept in a name: a global call (documented)
    try:
        assert other_thread_makes_hijax()
        with d:
            assert nnx.Variable(jnp.zeros(1)).hijax  # this thread: the block's setting
            assert not other_thread_makes_hijax()  # taken back from the others on entry
        assert not nnx.var_defaults().hijax and not other_thread_makes_hijax()
    finally:
        d.restore()
