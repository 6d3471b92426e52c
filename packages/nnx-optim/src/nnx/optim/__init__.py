"""nnx.optim: optimizers over optax, training metrics, and parameter EMA.

Example::

    import nnx, optax
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    grads = nnx.grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    metrics = nnx.metrics.MultiMetric(loss=nnx.metrics.Average("loss"))
"""

from nnx.optim import metrics
from nnx.optim._ema import EMA
from nnx.optim._errors import GradientStructureError, MetricArgumentError, OptimError
from nnx.optim._optimizer import ModelAndOptimizer, Optimizer, OptState
from nnx.optim._version import __version__

__all__ = [
    "Optimizer",
    "ModelAndOptimizer",
    "OptState",
    "EMA",
    "metrics",
    "OptimError",
    "GradientStructureError",
    "MetricArgumentError",
]
