"""Training metrics: running averages, accuracy, mean/std, and groups of them.

A metric is an :class:`nnx.Pytree` whose running totals live in
:class:`MetricState` Variables, so it can be updated inside ``nnx.jit`` (and
inside a plain ``jax.jit`` with ref or hijax Variables). Every metric has
``update(**batch)`` (unknown keywords are ignored, so one batch dict can feed a
:class:`MultiMetric`), ``compute()`` and ``reset()``; ``reset`` writes zeros
into the same Variables, so it works inside a trace too.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from nnx.core import Pytree, Variable
from nnx.optim._errors import MetricArgumentError


class MetricState(Variable):
    """A Variable holding a metric's running totals."""


def _arg(metric: Metric, kwargs: dict, name: str):
    try:
        value = kwargs[name]
    except KeyError:
        raise MetricArgumentError(
            f"{type(metric).__name__}.update needs the keyword argument {name!r}; got "
            f"{sorted(kwargs)}. Pass it (`metric.update({name}=...)`) or construct the "
            f"metric with the name your batch uses (e.g. `Average('loss')`)."
        ) from None
    return value.get_value() if isinstance(value, Variable) else value


class Metric(Pytree):
    """Base class of metrics: ``update(**batch)``, ``compute()``, ``reset()``."""

    def update(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def compute(self) -> Any:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class Average(Metric):
    """The mean of every value seen since the last reset.

    Example::

        loss = nnx.metrics.Average("loss")
        loss.update(loss=jnp.array([1.0, 2.0]))
        loss.update(loss=3.0, accuracy=0.5)    # other keywords are ignored
        loss.compute()                         # Array(2.)

    Args:
      argname: the keyword of ``update`` that holds the values (default
        ``"values"``).
    """

    def __init__(self, argname: str = "values"):
        self.argname = argname
        self.total = MetricState(jnp.array(0.0, dtype=jnp.float32))
        self.count = MetricState(jnp.array(0, dtype=jnp.int32))

    def _add(self, values) -> None:
        values = jnp.asarray(values)
        self.total[...] = self.total[...] + values.sum(dtype=jnp.float32)
        self.count[...] = self.count[...] + values.size

    def update(self, **kwargs: Any) -> None:
        self._add(_arg(self, kwargs, self.argname))

    def compute(self) -> jnp.ndarray:
        """The mean (NaN before the first update)."""
        return self.total[...] / self.count[...]

    def reset(self) -> None:
        self.total[...] = jnp.zeros_like(self.total[...])
        self.count[...] = jnp.zeros_like(self.count[...])


class Accuracy(Average):
    """The fraction of correct predictions.

    Example::

        acc = nnx.metrics.Accuracy()
        acc.update(logits=jnp.array([[0.1, 0.9], [0.8, 0.2]]), labels=jnp.array([1, 1]))
        acc.compute()                          # Array(0.5)

    ``logits`` has one more axis than ``labels`` (classes, compared with
    ``argmax``), or the same shape for binary labels, compared with
    ``logits > threshold``.

    Args:
      threshold: decision threshold for binary predictions (default 0.5).
    """

    def __init__(self, threshold: float = 0.5):
        super().__init__("logits")
        self.threshold = threshold

    def update(self, **kwargs: Any) -> None:
        logits = jnp.asarray(_arg(self, kwargs, "logits"))
        labels = jnp.asarray(_arg(self, kwargs, "labels"))
        if logits.ndim == labels.ndim + 1:
            predictions = logits.argmax(axis=-1)
        elif logits.shape == labels.shape:
            predictions = (logits > self.threshold).astype(labels.dtype)
        else:
            raise ValueError(
                f"Accuracy.update: logits of shape {logits.shape} do not fit labels of shape "
                f"{labels.shape}. Pass logits with one more (class) axis than labels, or "
                "binary scores with the labels' shape."
            )
        self._add(predictions == labels)


class Statistics(NamedTuple):
    """What :meth:`Welford.compute` returns."""

    mean: jnp.ndarray
    standard_error_of_mean: jnp.ndarray
    standard_deviation: jnp.ndarray


class Welford(Metric):
    """Running mean and standard deviation (Welford/Chan, stable in float32).

    Example::

        stats = nnx.metrics.Welford("loss")
        stats.update(loss=jnp.array([1.0, 2.0, 3.0]))
        stats.update(loss=jnp.array([4.0]))
        stats.compute().mean                   # Array(2.5)
        stats.compute().standard_deviation     # Array(1.118034)  (population std)

    Args:
      argname: the keyword of ``update`` that holds the values.
    """

    def __init__(self, argname: str = "values"):
        self.argname = argname
        self.count = MetricState(jnp.array(0.0, dtype=jnp.float32))
        self.mean = MetricState(jnp.array(0.0, dtype=jnp.float32))
        self.m2 = MetricState(jnp.array(0.0, dtype=jnp.float32))

    def update(self, **kwargs: Any) -> None:
        values = jnp.asarray(_arg(self, kwargs, self.argname), dtype=jnp.float32).ravel()
        if values.size == 0:
            return
        n_b = jnp.float32(values.size)
        mean_b = values.mean()
        m2_b = ((values - mean_b) ** 2).sum()
        n_a, mean_a, m2_a = self.count[...], self.mean[...], self.m2[...]
        n = n_a + n_b
        delta = mean_b - mean_a
        self.count[...] = n
        self.mean[...] = mean_a + delta * (n_b / n)
        self.m2[...] = m2_a + m2_b + delta**2 * (n_a * n_b / n)

    def compute(self) -> Statistics:
        """Mean, standard error of the mean, and (population) standard deviation."""
        n = self.count[...]
        variance = self.m2[...] / n
        std = jnp.sqrt(variance)
        return Statistics(self.mean[...], std / jnp.sqrt(n), std)

    def reset(self) -> None:
        for v in (self.count, self.mean, self.m2):
            v[...] = jnp.zeros_like(v[...])


class MultiMetric(Metric):
    """Several named metrics updated from one batch.

    Example::

        metrics = nnx.metrics.MultiMetric(
            accuracy=nnx.metrics.Accuracy(),
            loss=nnx.metrics.Average("loss"),
        )
        logits, labels = jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([0, 0])
        metrics.update(logits=logits, labels=labels, loss=jnp.array(0.5))
        metrics.compute()                      # {'accuracy': Array(..), 'loss': Array(..)}
        metrics.reset()

    Every metric receives every keyword and reads the ones it needs.
    """

    def __init__(self, **metrics: Metric):
        for name, metric in metrics.items():
            if not isinstance(metric, Metric):
                raise TypeError(
                    f"MultiMetric: {name}={type(metric).__name__} is not an nnx metric "
                    "(Average, Accuracy, Welford, or a Metric subclass)."
                )
            if name.startswith("_") or hasattr(MultiMetric, name):
                raise ValueError(
                    f"MultiMetric: the name {name!r} is taken by MultiMetric itself (its "
                    f"methods and private attributes); pick another, e.g. `{name}_metric=...`."
                )
        self._names = tuple(metrics)
        for name, metric in metrics.items():
            setattr(self, name, metric)

    def _metrics(self):
        return ((name, getattr(self, name)) for name in self._names)

    def update(self, **kwargs: Any) -> None:
        for _, metric in self._metrics():
            metric.update(**kwargs)

    def compute(self) -> dict[str, Any]:
        return {name: metric.compute() for name, metric in self._metrics()}

    def reset(self) -> None:
        for _, metric in self._metrics():
            metric.reset()
