"""Training: one step of stochastic gradient ascent on a bound, with Adam."""
import numpy as np

from .gradients import iwae_value_and_gradient, vae_value_and_gradient
from .model import sample_eps
from .optimizers import adam_update
from .tree import tree_map

__all__ = ["OBJECTIVES", "train_step"]

#: Objective name -> function of (params, x, eps) returning (batch-mean bound, its gradient).
OBJECTIVES = {"vae": vae_value_and_gradient, "iwae": iwae_value_and_gradient}


def train_step(params, opt_state, x, rng, k, lr, objective="iwae", adam=None):
    """Sample ``eps`` from ``rng``, take the gradient of the bound and one Adam step on its negative.

    Returns ``(params, opt_state, bound)`` where ``bound`` is the batch-mean value of the bound
    before the step (a Python float).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {sorted(OBJECTIVES)}")
    eps = sample_eps(rng, params, k, np.shape(x)[0])
    bound, grads = OBJECTIVES[objective](params, x, eps)
    loss_grads = tree_map(lambda g: -g, grads)
    params, opt_state = adam_update(params, loss_grads, opt_state, lr, **(adam or {}))
    return params, opt_state, float(bound)
