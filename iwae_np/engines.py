"""The two engines by name, for the drivers (training, ``table``, evaluation, the SNR study, the command line).

- ``"definition"``: the paper in plain autograd (:mod:`iwae_np.model`, :mod:`iwae_np.estimators`,
  :mod:`iwae_np.optimizers`); what the docs link, ``iwae-np check`` verifies and the oracle computes from.
- ``"fast"``: :mod:`iwae_np.fast`, the same numbers computed for speed, proven equal by the tests.

Every run records the engine that computed it (``config.json``, results).
"""
from typing import Callable, NamedTuple

from . import estimators, fast, model, optimizers

__all__ = ["Engine", "ENGINES", "DEFAULT_ENGINE", "get_engine"]


class Engine(NamedTuple):
    """What a driver needs of an engine; every function has the definition's signature."""
    name: str
    log_weight_terms: Callable
    log_importance_weights: Callable
    estimate_gradient: Callable
    weighted_gradients: Callable
    path_log_weights: Callable
    adam_init: Callable
    adam_update: Callable

    def objective(self, name, k=None):
        """The training objective called ``name`` (:func:`iwae_np.estimators.get_objective`), computed by this engine."""
        return estimators.get_objective(name, k, estimate=self.estimate_gradient)


ENGINES = {
    "definition": Engine("definition", model.log_weight_terms, model.log_importance_weights,
                         estimators.estimate_gradient, estimators.weighted_gradients, estimators.path_log_weights,
                         optimizers.adam_init, optimizers.adam_update),
    "fast": Engine("fast", fast.log_weight_terms, fast.log_importance_weights, fast.estimate_gradient,
                   fast.weighted_gradients, fast.path_log_weights, fast.adam_init, fast.adam_update),
}

#: Training, ``table`` and evaluation use the fast engine unless told otherwise.
DEFAULT_ENGINE = "fast"


def get_engine(name=None):
    """The :class:`Engine` called ``name`` (None: :data:`DEFAULT_ENGINE`); ``ValueError`` naming the choices."""
    name = DEFAULT_ENGINE if name is None else name
    if isinstance(name, Engine):
        return name
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose one of {list(ENGINES)}")
    return ENGINES[name]
