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
        MetricArgumentError, match=r"needs the keyword argument 'loss'.*\['values'\]"
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


def test_accuracy_shape_error():
    with pytest.raises(ValueError, match="do not fit labels"):
        nnx.metrics.Accuracy().update(logits=jnp.ones((2, 3, 4)), labels=jnp.ones((5,)))


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
    assert int(metrics.loss.count.value) == 0 and int(metrics.accuracy.count.value) == 0


def test_multimetric_rejects_non_metrics():
    with pytest.raises(TypeError, match="not an nnx metric"):
        nnx.metrics.MultiMetric(loss=lambda x: x)


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
