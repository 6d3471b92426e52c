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
            f"Expected keyword argument {name!r}: {type(metric).__name__}.update needs the "
            f"keyword argument {name!r}; got {sorted(kwargs)}. Pass it "
            f"(`metric.update({name}=...)`) or construct the metric with the name your batch "
            f"uses (e.g. `Average('loss')`)."
        ) from None
    return value.get_value() if isinstance(value, Variable) else value


class Metric(Pytree):
    """Base class of metrics: ``update(**batch)``, ``compute()``, ``reset()``.

    Example::

        class Maximum(nnx.Metric):
            def __init__(self, argname="values"):
                self.argname = argname
                self.value = nnx.metrics.MetricState(jnp.array(-jnp.inf))

            def update(self, **kwargs):
                self.value[...] = jnp.maximum(self.value[...], jnp.max(kwargs[self.argname]))

            def compute(self):
                return self.value[...]

            def reset(self):
                self.value[...] = jnp.array(-jnp.inf)
    """

    def __init__(self) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must override `__init__()`: nnx.Metric is a base class."
        )

    def update(self, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must override `update()`.")

    def compute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must override `compute()`.")

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must override `reset()`.")


def _mask_of(metric: Metric, mask: Any, values: Any):
    if mask is None:
        return None
    if isinstance(values, (bool, int, float)):
        raise ValueError(
            f"{type(metric).__name__}.update: a mask needs array values, got the Python "
            f"{type(values).__name__} {values!r}. Pass an array (`jnp.asarray(...)`) with the "
            f"mask's shape, or leave the mask out."
        )
    mask = jnp.asarray(mask.get_value() if isinstance(mask, Variable) else mask)
    try:
        jnp.broadcast_shapes(mask.shape, jnp.shape(values))
    except ValueError:
        raise ValueError(
            f"{type(metric).__name__}.update: the mask of shape {mask.shape} does not "
            f"broadcast to the values of shape {jnp.shape(values)}."
        ) from None
    return mask


class Average(Metric):
    """The mean of every value seen since the last reset.

    Example::

        loss = nnx.metrics.Average("loss")
        loss.update(loss=jnp.array([1.0, 2.0]))
        loss.update(loss=3.0, accuracy=0.5)    # other keywords are ignored
        loss.compute()                         # Array(2.)
        loss.update(loss=jnp.array([9.0, 4.0]), mask=jnp.array([False, True]))
        loss.compute()                         # Array(2.5): (1 + 2 + 3 + 4) / 4

    ``update(mask=...)`` leaves out the values where the mask is 0 (it
    broadcasts to the values' shape). A Python number counts as one value.

    Args:
      argname: the keyword of ``update`` that holds the values (default
        ``"values"``).
    """

    def __init__(self, argname: str = "values"):
        self.argname = argname
        self.total = MetricState(jnp.array(0.0, dtype=jnp.float32))
        self.count = MetricState(jnp.array(0, dtype=jnp.int32))

    def _add(self, values, mask=None) -> None:
        values = jnp.asarray(values)
        if mask is None:
            self.total[...] = self.total[...] + values.sum(dtype=jnp.float32)
            self.count[...] = self.count[...] + values.size
            return
        mask = jnp.broadcast_to(mask, values.shape)
        self.total[...] = self.total[...] + jnp.where(mask, values, 0).sum(dtype=jnp.float32)
        self.count[...] = self.count[...] + mask.astype(jnp.int32).sum()

    def update(self, mask: Any = None, **kwargs: Any) -> None:
        """Add the values of ``kwargs[argname]`` (those where ``mask`` is true)."""
        values = _arg(self, kwargs, self.argname)
        self._add(values, _mask_of(self, mask, values))

    def compute(self) -> jnp.ndarray:
        """The mean (NaN before the first update)."""
        return self.total[...] / self.count[...]

    def reset(self) -> None:
        self.total[...] = jnp.zeros_like(self.total[...])
        self.count[...] = jnp.zeros_like(self.count[...])


class Accuracy(Average):
    """The fraction of correct predictions, as Flax NNX's ``Accuracy``.

    Example::

        acc = nnx.metrics.Accuracy()           # multi-class: argmax of the last axis
        acc.update(logits=jnp.array([[0.1, 0.9], [0.8, 0.2]]), labels=jnp.array([1, 1]))
        acc.compute()                          # Array(0.5)

        binary = nnx.metrics.Accuracy(threshold=0.5)  # a score >= 0.5 predicts label > 0
        binary.update(logits=jnp.array([0.9, 0.2]), labels=jnp.array([1, 1]))
        binary.compute()                       # Array(0.5)

    Without a threshold (multi-class) ``logits`` has one more axis than
    ``labels``; with one (binary) the same number of axes. Labels are integers.
    ``update(mask=...)`` leaves out the examples where the mask is 0.

    Args:
      threshold: a float for binary classification, None (default) for
        multi-class.
    """

    def __init__(self, threshold: float | None = None, *args: Any, **kwargs: Any):
        if threshold is not None and not isinstance(threshold, float):
            raise TypeError(
                f"Expected threshold to be a float, got {type(threshold)} ({threshold!r}): "
                f"nnx.metrics.Accuracy takes a float threshold for binary classification or "
                f"None for multi-class; write it as a float, e.g. `Accuracy(threshold=0.5)`."
            )
        self.threshold = threshold
        super().__init__(*args, **kwargs)

    def update(self, mask: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Count the correct predictions of ``logits`` for ``labels``."""
        logits = jnp.asarray(_arg(self, kwargs, "logits"))
        labels = jnp.asarray(_arg(self, kwargs, "labels"))
        if self.threshold is not None:
            if logits.ndim != labels.ndim:
                raise ValueError(
                    f"For binary classification, expected logits.ndim==labels.ndim, got "
                    f"{logits.ndim} and {labels.ndim}: Accuracy(threshold={self.threshold})"
                    f".update got logits of shape {logits.shape} and labels of shape "
                    f"{labels.shape}. Pass one score per label, or construct Accuracy() without "
                    f"a threshold for multi-class logits."
                )
        elif logits.ndim != labels.ndim + 1:
            raise ValueError(
                f"For multi-class classification, expected logits.ndim==labels.ndim+1, got "
                f"{logits.ndim} and {labels.ndim}: Accuracy.update got logits of shape "
                f"{logits.shape} and labels of shape {labels.shape}. Pass logits with a "
                f"trailing class axis, or construct `Accuracy(threshold=0.5)` for binary "
                f"scores."
            )
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(
                f"Expected labels.dtype==jnp.int32, got {labels.dtype}: Accuracy.update "
                f"compares class indices. Pass integer labels, e.g. "
                f"`labels.astype(jnp.int32)`."
            )
        labels = labels.astype(jnp.int32)
        if self.threshold is not None:
            correct = (logits >= self.threshold) == (labels > 0)
        else:
            correct = logits.argmax(axis=-1) == labels
        self._add(correct, _mask_of(self, mask, correct))


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
        self.count = MetricState(jnp.array(0, dtype=jnp.int32))
        self.mean = MetricState(jnp.array(0.0, dtype=jnp.float32))
        self.m2 = MetricState(jnp.array(0.0, dtype=jnp.float32))

    def update(self, **kwargs: Any) -> None:
        """Add the values of ``kwargs[argname]`` (other keywords, ``mask`` too, are ignored)."""
        values = jnp.asarray(_arg(self, kwargs, self.argname), dtype=jnp.float32).ravel()
        if values.size == 0:
            return
        n_b = jnp.float32(values.size)
        mean_b = values.mean()
        m2_b = ((values - mean_b) ** 2).sum()
        count = self.count[...]
        n_a, mean_a, m2_a = count.astype(jnp.float32), self.mean[...], self.m2[...]
        n = n_a + n_b
        delta = mean_b - mean_a
        self.count[...] = count + values.size
        self.mean[...] = mean_a + delta * (n_b / n)
        self.m2[...] = m2_a + m2_b + delta**2 * (n_a * n_b / n)

    def compute(self) -> Statistics:
        """Mean, standard error of the mean, and (population) standard deviation."""
        n = self.count[...].astype(jnp.float32)
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
        """Update every metric with every keyword.

        ``mask`` may be one array for all metrics or a dict from metric name to
        its mask (metrics missing from the dict get none).
        """
        mask = kwargs.pop("mask", None)
        for name, metric in self._metrics():
            m = mask.get(name) if isinstance(mask, dict) else mask
            if m is None:
                metric.update(**kwargs)
            else:
                metric.update(**kwargs, mask=m)

    def compute(self) -> dict[str, Any]:
        return {name: metric.compute() for name, metric in self._metrics()}

    def reset(self) -> None:
        for _, metric in self._metrics():
            metric.reset()
