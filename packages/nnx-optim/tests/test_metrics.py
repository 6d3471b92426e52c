"""nnx.metrics: Average, Accuracy, Welford, MultiMetric against numpy, eager and under jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnx
from nnx.optim import MetricArgumentError

BATCHES = [np.array([1.0, 2.0, 3.5]), np.array([-4.0]), np.array([0.25, 8.0, 1.0, 2.0])]


def test_nnx_metrics_namespace():
    assert nnx.metrics.Average is nnx.optim.metrics.Average
    assert "metrics" in nnx.optim.__all__


def test_average_is_the_mean_of_all_values():
    avg = nnx.metrics.Average()
    for b in BATCHES:
        avg.update(values=b)
    np.testing.assert_allclose(avg.compute(), np.concatenate(BATCHES).mean(), rtol=1e-6)


def test_average_reads_its_argname_and_ignores_other_keywords():
    avg = nnx.metrics.Average("loss")
    avg.update(loss=2.0, accuracy=0.1)
    avg.update(loss=jnp.array(4.0))
    np.testing.assert_allclose(avg.compute(), 3.0)


def test_reset_starts_over():
    avg = nnx.metrics.Average()
    avg.update(values=jnp.array([10.0]))
    avg.reset()
    avg.update(values=jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(avg.compute(), 2.0)


def test_missing_argument_says_which():
    with pytest.raises(
        MetricArgumentError,
        match=r"Expected keyword argument 'loss': Average.update needs .*\['values'\]",
    ):
        nnx.metrics.Average("loss").update(values=1.0)


def test_accuracy_multiclass_and_binary():
    acc = nnx.metrics.Accuracy()
    logits = jnp.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])
    acc.update(logits=logits, labels=jnp.array([1, 1, 2]))
    np.testing.assert_allclose(acc.compute(), 2 / 3, rtol=1e-6)
    binary = nnx.metrics.Accuracy(threshold=0.5)
    binary.update(logits=jnp.array([0.9, 0.2, 0.7, 0.4]), labels=jnp.array([1, 0, 0, 0]))
    np.testing.assert_allclose(binary.compute(), 0.75)


def test_accuracy_shape_errors_read_like_flax():
    with pytest.raises(
        ValueError,
        match=r"For multi-class classification, expected logits.ndim==labels.ndim\+1, got 3 "
        r"and 1: .*logits of shape \(2, 3, 4\) and labels of shape \(5,\)",
    ):
        nnx.metrics.Accuracy().update(logits=jnp.ones((2, 3, 4)), labels=jnp.ones((5,), int))
    with pytest.raises(ValueError, match="For multi-class classification"):
        nnx.metrics.Accuracy().update(logits=jnp.ones((4,)), labels=jnp.ones((4,), int))
    with pytest.raises(
        ValueError, match=r"For binary classification, expected logits.ndim==labels.ndim, got 2"
    ):
        nnx.metrics.Accuracy(0.5).update(logits=jnp.ones((4, 2)), labels=jnp.ones((4,), int))
    with pytest.raises(ValueError, match=r"Expected labels.dtype==jnp.int32, got float32"):
        nnx.metrics.Accuracy().update(logits=jnp.ones((4, 2)), labels=jnp.ones((4,)))
    with pytest.raises(TypeError, match=r"Expected threshold to be a float, got <class 'int'>"):
        nnx.metrics.Accuracy(threshold=1)


def test_binary_accuracy_by_hand_uses_greater_or_equal_and_positive_labels():
    # scores >= 0.5 predict "positive"; labels > 0 are positive (2 counts as positive)
    # predictions: T F T T F ; truth: T F F T T -> correct: T T F T F = 3 of 5
    acc = nnx.metrics.Accuracy(threshold=0.5)
    acc.update(logits=jnp.array([0.9, 0.2, 0.5, 0.7, 0.49]), labels=jnp.array([1, 0, 0, 2, 1]))
    np.testing.assert_allclose(acc.compute(), 3 / 5)
    assert acc.argname == "values" and acc.threshold == 0.5


def test_average_with_a_mask_by_hand():
    # masked values left out: (1 + 4) + (10) = 15 over 3 values = 5
    avg = nnx.metrics.Average()
    avg.update(values=jnp.array([1.0, 2.0, 3.0, 4.0]), mask=jnp.array([1, 0, 0, 1]))
    avg.update(values=jnp.array([[10.0, 99.0]]), mask=jnp.array([True, False]))
    np.testing.assert_allclose(avg.compute(), 5.0)
    assert int(avg.count.value) == 3 and float(avg.total.value) == 15.0
    with pytest.raises(ValueError, match="a mask needs array values"):
        avg.update(values=2.0, mask=jnp.array(True))
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) does not broadcast"):
        avg.update(values=jnp.ones(4), mask=jnp.ones(3))


def test_accuracy_with_a_mask_by_hand():
    # argmax [1, 0, 2, 1] vs labels [1, 1, 2, 0] -> correct [T, F, T, F]; mask drops #1 and #4
    logits = jnp.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], jnp.float32)
    acc = nnx.metrics.Accuracy()
    acc.update(logits=logits, labels=jnp.array([1, 1, 2, 0]), mask=jnp.array([1, 1, 1, 0]))
    np.testing.assert_allclose(acc.compute(), 2 / 3, rtol=1e-6)


def test_multimetric_mask_for_all_or_per_metric():
    logits = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    labels = jnp.array([1, 1])  # correct: [T, F]
    loss = jnp.array([2.0, 6.0])
    m = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    m.update(logits=logits, labels=labels, loss=loss, mask=jnp.array([True, False]))
    out = m.compute()
    np.testing.assert_allclose(out["accuracy"], 1.0)
    np.testing.assert_allclose(out["loss"], 2.0)
    m.reset()
    m.update(logits=logits, labels=labels, loss=loss, mask={"loss": jnp.array([False, True])})
    out = m.compute()
    np.testing.assert_allclose(out["accuracy"], 0.5)  # no mask for accuracy
    np.testing.assert_allclose(out["loss"], 6.0)


def test_top_level_names_and_the_mnist_tutorial_line():
    for name in ("Metric", "MultiMetric", "Average", "Accuracy", "Welford"):
        assert getattr(nnx, name) is getattr(nnx.metrics, name)
        assert name in nnx.optim.__all__
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))
    metrics.update(
        logits=jnp.array([[0.2, 0.8], [0.6, 0.4]]), labels=jnp.array([1, 1]), loss=jnp.array(0.7)
    )
    out = metrics.compute()
    np.testing.assert_allclose(out["accuracy"], 0.5)
    np.testing.assert_allclose(out["loss"], 0.7, rtol=1e-6)


def test_the_metric_base_class_says_what_to_override():
    with pytest.raises(NotImplementedError, match=r"must override `__init__\(\)`"):
        nnx.Metric()

    class Half(nnx.Metric):
        def __init__(self):
            pass

    with pytest.raises(NotImplementedError, match=r"Half must override `update\(\)`"):
        Half().update(values=1)
    with pytest.raises(NotImplementedError, match=r"Half must override `compute\(\)`"):
        Half().compute()


def test_welford_matches_numpy_mean_and_std():
    w = nnx.metrics.Welford()
    for b in BATCHES:
        w.update(values=b)
    allv = np.concatenate(BATCHES)
    stats = w.compute()
    np.testing.assert_allclose(stats.mean, allv.mean(), rtol=1e-6)
    np.testing.assert_allclose(stats.standard_deviation, allv.std(), rtol=1e-5)
    np.testing.assert_allclose(
        stats.standard_error_of_mean, allv.std() / np.sqrt(allv.size), rtol=1e-5
    )


def test_welford_is_stable_for_a_large_offset():
    w = nnx.metrics.Welford()
    rng = np.random.default_rng(0)
    chunks = [1e4 + rng.normal(size=50).astype(np.float32) for _ in range(4)]
    for c in chunks:
        w.update(values=c)
    np.testing.assert_allclose(
        w.compute().standard_deviation, np.concatenate(chunks).std(), rtol=1e-3
    )


def test_multimetric_updates_computes_and_resets_each():
    metrics = nnx.metrics.MultiMetric(
        accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss")
    )
    metrics.update(logits=jnp.array([[0.0, 1.0], [1.0, 0.0]]), labels=jnp.array([1, 1]), loss=3.0)
    metrics.update(logits=jnp.array([[0.0, 1.0]]), labels=jnp.array([1]), loss=1.0)
    out = metrics.compute()
    assert sorted(out) == ["accuracy", "loss"]
    np.testing.assert_allclose(out["accuracy"], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(out["loss"], 2.0)
    metrics.reset()
    assert int(metrics.loss.count.value) == 0 and int(metrics.accuracy.count.value) == 0  # pyright: ignore[reportAttributeAccessIssue]


def test_multimetric_rejects_non_metrics():
    with pytest.raises(TypeError, match="not an nnx metric"):
        nnx.metrics.MultiMetric(loss=lambda x: x)  # pyright: ignore[reportArgumentType]


def test_metrics_update_inside_split_merge_jit():
    metrics = nnx.metrics.MultiMetric(
        loss=nnx.metrics.Average("loss"), stats=nnx.metrics.Welford("loss")
    )
    graphdef, state = nnx.split(metrics)

    @jax.jit
    def step(state, loss):
        m = nnx.merge(graphdef, state)
        m.update(loss=loss)
        return nnx.state(m)

    for b in BATCHES:
        state = step(state, jnp.asarray(b, jnp.float32))
    nnx.update(metrics, state)
    allv = np.concatenate(BATCHES)
    np.testing.assert_allclose(metrics.compute()["loss"], allv.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics.compute()["stats"].standard_deviation, allv.std(), rtol=1e-5)


@pytest.mark.parametrize("mode", ["hijax", "ref"])
def test_metrics_update_and_reset_inside_plain_jit(mode):
    nnx.var_defaults(**{mode: True})
    avg = nnx.metrics.Average()

    @jax.jit
    def step(avg, values):
        avg.update(values=values)

    step(avg, jnp.array([5.0, 5.0]))
    step(avg, jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(avg.compute(), 13 / 4)
    jax.jit(lambda a: a.reset())(avg)
    assert int(avg.count.value) == 0


def test_welford_by_hand():
    # values 1, 2, 3 then 4: mean 2.5, population variance (2.25+0.25+0.25+2.25)/4 = 1.25
    w = nnx.metrics.Welford("loss")
    w.update(loss=jnp.array([1.0, 2.0, 3.0]))
    w.update(loss=jnp.array([4.0]))
    stats = w.compute()
    np.testing.assert_allclose(stats.mean, 2.5, rtol=1e-7)
    np.testing.assert_allclose(stats.standard_deviation, np.sqrt(1.25), rtol=1e-6)
    np.testing.assert_allclose(stats.standard_error_of_mean, np.sqrt(1.25) / 2, rtol=1e-6)
    w.reset()
    w.update(loss=jnp.array([7.0, 9.0]))
    np.testing.assert_allclose(w.compute().mean, 8.0)
    np.testing.assert_allclose(w.compute().standard_deviation, 1.0)


def test_average_by_hand_counts_every_element():
    # (1 + 2) + 3 + (4 + 5 + 6 + 7) = 28 over 7 values = 4
    avg = nnx.metrics.Average()
    avg.update(values=jnp.array([1.0, 2.0]))
    avg.update(values=3.0)
    avg.update(values=jnp.array([[4.0, 5.0], [6.0, 7.0]]))
    np.testing.assert_allclose(avg.compute(), 4.0)
    assert int(avg.count.value) == 7 and float(avg.total.value) == 28.0


def test_multimetric_names_that_shadow_its_methods_are_rejected():
    with pytest.raises(ValueError, match=r"'update' is taken by MultiMetric"):
        nnx.metrics.MultiMetric(update=nnx.metrics.Average())
    with pytest.raises(ValueError, match=r"'_names' is taken"):
        nnx.metrics.MultiMetric(_names=nnx.metrics.Average())


@pytest.mark.parametrize("mode", ["hijax", "ref"])
def test_multimetric_update_compute_reset_inside_plain_jit(mode):
    nnx.var_defaults(**{mode: True})
    metrics = nnx.metrics.MultiMetric(
        accuracy=nnx.metrics.Accuracy(),
        loss=nnx.metrics.Average("loss"),
        stats=nnx.metrics.Welford("loss"),
    )
    traces = []

    @jax.jit
    def step(metrics, logits, labels, loss):
        traces.append(1)
        metrics.update(logits=logits, labels=labels, loss=loss)
        return metrics.compute()

    # batch 1: argmax [1, 0] vs labels [1, 1] -> 1/2; batch 2: argmax [0, 0] vs [0, 1] -> 1/2
    step(metrics, jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.array([1, 1]), jnp.array([1.0, 3.0]))
    out = step(
        metrics, jnp.array([[2.0, 1.0], [1.0, 0.0]]), jnp.array([0, 1]), jnp.array([5.0, 7.0])
    )
    np.testing.assert_allclose(out["accuracy"], 0.5)
    np.testing.assert_allclose(out["loss"], 4.0)  # (1 + 3 + 5 + 7) / 4
    np.testing.assert_allclose(out["stats"].standard_deviation, np.sqrt(5.0), rtol=1e-6)
    assert len(traces) == 1

    @jax.jit
    def reset(metrics):
        metrics.reset()

    reset(metrics)
    assert int(metrics.accuracy.count.value) == 0 and float(metrics.loss.total.value) == 0.0  # pyright: ignore[reportAttributeAccessIssue]
    assert int(metrics.stats.count.value) == 0  # pyright: ignore[reportAttributeAccessIssue]
    step(metrics, jnp.array([[0.0, 1.0]]), jnp.array([1]), jnp.array([2.0]))
    np.testing.assert_allclose(metrics.compute()["accuracy"], 1.0)
    np.testing.assert_allclose(metrics.compute()["loss"], 2.0)


def test_metric_reprs_are_flax_nnx_text():
    # the output Flax NNX 0.12's MultiMetric docstring shows, character for character
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average())
    state = "MetricState( # 1 (4 B)\n    value=Array({}, dtype={})\n  )"
    assert repr(vars(metrics)["loss"]) == (
        "Average( # MetricState: 2 (8 B)\n"
        "  argname='values',\n"
        f"  total={state.format('0.', 'float32')},\n"
        f"  count={state.format(0, 'int32')}\n"
        ")"
    )
    assert repr(metrics).startswith(
        "MultiMetric( # MetricState: 4 (16 B)\n  accuracy=Accuracy( # MetricState: 2 (8 B)\n"
        "    threshold=None,\n    argname='values',\n"
    )
    assert "_names" not in repr(metrics)  # private static attributes are not shown
