"""``nnx.metrics``: training metrics (``nnx.metrics.Average``, ``Accuracy``, ...).

Example::

    metrics = nnx.metrics.MultiMetric(loss=nnx.metrics.Average("loss"))
    metrics.update(loss=jnp.array(0.5))
    metrics.compute()   # {'loss': Array(0.5)}
"""

from nnx.optim._metrics import (
    Accuracy,
    Average,
    Metric,
    MetricState,
    MultiMetric,
    Statistics,
    Welford,
)

__all__ = [
    "Metric",
    "MetricState",
    "Average",
    "Accuracy",
    "Welford",
    "Statistics",
    "MultiMetric",
]
