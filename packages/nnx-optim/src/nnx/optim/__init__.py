"""nnx.optim: optimizers over optax, training metrics, and parameter EMA.

Example::

    import nnx, optax
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    optimizer.update(model, grads)
    metrics = nnx.metrics.MultiMetric(loss=nnx.metrics.Average("loss"))
"""

from nnx.optim import metrics
from nnx.optim._ema import EMA
from nnx.optim._metrics import Accuracy, Average, Metric, MultiMetric, Welford
from nnx.optim._errors import GradientStructureError, MetricArgumentError, OptimError
from nnx.optim._optimizer import ModelAndOptimizer, OptArray, Optimizer, OptState, OptVariable
from nnx.optim._version import __version__

__all__ = [
    "Optimizer",
    "ModelAndOptimizer",
    "OptState",
    "OptArray",
    "OptVariable",
    "EMA",
    "metrics",
    "Metric",
    "MultiMetric",
    "Average",
    "Accuracy",
    "Welford",
    "OptimError",
    "GradientStructureError",
    "MetricArgumentError",
]
