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
from nnx.optim._metrics import (
    Accuracy,
    Average,
    Metric,
    MetricState,  # noqa: F401  (nnx.training.metrics, see __nnx_paths__)
    MultiMetric,
    Statistics,  # noqa: F401
    Welford,
)
from nnx.optim._optimizer import ModelAndOptimizer, OptArray, Optimizer, OptState, OptVariable
from nnx.optim._train_state import TrainState
from nnx.optim._version import __version__

__all__ = [
    "Optimizer",
    "ModelAndOptimizer",
    "OptState",
    "OptArray",
    "OptVariable",
    "EMA",
    "TrainState",
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

# Flax NNX's module paths for the names above: a dotted module under ``nnx`` ->
# space-separated names, each an attribute of nnx.optim (``alias=target``
# renames). nnx-core's ``nnx/__init__.py`` builds the modules from this table
# (``nnx.helpers.TrainState``, ``nnx.training.metrics.Average``, ...).
# ``flax.nnx.compat`` 0.12.8 has no optimizer-side names, so none are listed.
_OPTIMIZER_NAMES = "Optimizer ModelAndOptimizer OptState OptArray OptVariable"
_METRIC_NAMES = "Metric MetricState Average Accuracy Welford Statistics MultiMetric"
__nnx_paths__ = {
    "helpers": "TrainState",
    "optimizer": _OPTIMIZER_NAMES,
    "training.optimizer": _OPTIMIZER_NAMES,
    "training.metrics": _METRIC_NAMES,
    "training.ema": "EMA",
}
