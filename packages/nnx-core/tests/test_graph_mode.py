"""nnx.set_graph_mode / nnx.set_graph_updates: global call, with block, decorator, threads."""

import threading
import typing

import pytest

import nnx


def test_defaults_are_graph_mode_with_graph_updates():
    s = nnx.graph_settings()
    assert (s.graph, s.graph_updates) == (True, True)
    assert s is nnx.GraphMode(True, True)


def test_global_call_and_restore():
    old = nnx.set_graph_mode(False)
    try:
        assert nnx.graph_settings().graph is False
        assert old.previous.graph is True
        assert old.graph is False
    finally:
        old.restore()
    assert nnx.graph_settings().graph is True


def test_with_block_restores_also_on_error():
    with pytest.raises(RuntimeError, match="boom"), nnx.set_graph_updates(False):
        assert nnx.graph_settings() is nnx.GraphMode(True, False)
        raise RuntimeError("boom")
    assert nnx.graph_settings() is nnx.GraphMode(True, True)


def test_nested_blocks_combine():
    with nnx.set_graph_mode(False):
        with nnx.set_graph_updates(False):
            assert nnx.graph_settings() is nnx.GraphMode(False, False)
        assert nnx.graph_settings() is nnx.GraphMode(False, True)
    assert nnx.graph_settings() is nnx.GraphMode(True, True)


@nnx.set_graph_mode(False)
def _decorated():
    return nnx.graph_settings()


def test_decorator_applies_per_call_only():
    assert nnx.graph_settings().graph is True  # defining it changed nothing
    assert typing.cast(nnx.GraphMode, _decorated()).graph is False
    assert nnx.graph_settings().graph is True


class TestDecoratedMethod:
    @nnx.set_graph_updates(False)
    def test_method(self):
        assert nnx.graph_settings().graph_updates is False


def test_with_block_is_thread_local():
    seen = {}
    inside = threading.Event()
    done = threading.Event()

    def other():
        inside.wait(5)
        seen["other"] = nnx.graph_settings().graph
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with nnx.set_graph_mode(False):
        inside.set()
        done.wait(5)
        seen["here"] = nnx.graph_settings().graph
    t.join()
    assert seen == {"other": True, "here": False}


def test_global_call_is_seen_by_other_threads():
    seen = {}
    old = nnx.set_graph_mode(False)
    try:
        t = threading.Thread(target=lambda: seen.setdefault("g", nnx.graph_settings().graph))
        t.start()
        t.join()
    finally:
        old.restore()
    assert seen == {"g": False}


def test_stored_then_entered_stays_in_thread():
    s = nnx.set_graph_mode(False)  # a plain call: the process default changed
    with s:
        seen = {}
        t = threading.Thread(target=lambda: seen.setdefault("g", nnx.graph_settings().graph))
        t.start()
        t.join()
        assert nnx.graph_settings().graph is False
    assert seen == {"g": True}
    assert nnx.graph_settings().graph is True


def test_resolve_graph_mode():
    assert nnx.resolve_graph_mode() is nnx.graph_settings()
    assert nnx.resolve_graph_mode(graph=False) is nnx.GraphMode(False, True)
    with nnx.set_graph_mode(False):
        assert nnx.resolve_graph_mode(graph_updates=False) is nnx.GraphMode(False, False)
        assert nnx.resolve_graph_mode(graph=True) is nnx.GraphMode(True, True)


def test_decorator_needs_a_function():
    with pytest.raises(TypeError, match="needs a function"):
        nnx.set_graph_mode(False)(3)
    assert nnx.graph_settings().graph is True


def test_graph_mode_is_immutable_and_pickles_to_the_same_instance():
    import pickle

    m = nnx.GraphMode(False, True)
    with pytest.raises(AttributeError, match="immutable"):
        m.graph = True  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(m)) is m
