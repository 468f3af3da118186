"""The fast engine: the definition's model, gradients and Adam, computed for speed and proven equal.

The definition (:mod:`iwae_np.model`, :mod:`iwae_np.bounds`, :mod:`iwae_np.estimators`,
:mod:`iwae_np.optimizers`) is the paper written plainly and differentiated by autograd: what the docs
link, what ``iwae-np check`` verifies and what the oracle's fixtures are computed from. This
subpackage computes the same numbers faster, for training, ``table`` and evaluation:

- :mod:`iwae_np.fast.primitives`: each network one autograd node with hand-written backpropagation, the
  densities and the reparameterized sample as primitives with closed-form VJPs, the Bernoulli term in
  cache-sized blocks on two threads;
- :mod:`iwae_np.fast.model`: ``log w`` from those primitives, the parameters' structure checked once;
- :mod:`iwae_np.fast.estimators`: every estimator as VJPs of ``log w`` with closed-form weights;
- :mod:`iwae_np.fast.gradients`, :mod:`iwae_np.fast.flat`: the parameters as views into one flat buffer,
  one gradient buffer;
- :mod:`iwae_np.fast.optimizers`: Adam in a few vectorized passes over the flat buffer;
- :mod:`iwae_np.fast.buffers`: large work arrays reused instead of page-faulted afresh.

``tests/test_fast_engine.py`` holds every value and gradient equal to the definition's (float64, every
objective, estimator and architecture, 1e-12 relative per parameter array) and a 200-step training run.
The definition never imports this subpackage.
"""
from .estimators import estimate_gradient, get_objective, path_log_weights, weighted_gradients
from .model import log_importance_weights, log_weight_terms
from .optimizers import adam_init, adam_update

__all__ = ["estimate_gradient", "get_objective", "path_log_weights", "weighted_gradients",
           "log_importance_weights", "log_weight_terms", "adam_init", "adam_update"]
