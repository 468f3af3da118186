"""Small random problems for checking gradients and implementations: a model, binary images, noise.

One generator of them for ``iwae-np check``, the oracle's fixtures and the test suite.
"""
import math

import numpy as np

from ..model import Architecture, init_params, sample_eps
from ..tree import tree_map

__all__ = ["SMALL_ARCHITECTURES", "random_problem"]

#: Small models with the structure of the paper's two architectures, for fast exhaustive checks.
SMALL_ARCHITECTURES = {
    "one-layer": Architecture(12, (3,), ((6, 5),), ((5, 6),)),
    "two-layer": Architecture(12, (4, 2), ((6, 5), (4, 3)), ((5, 6), (3, 4))),
}


def random_problem(arch, k, batch, rng, dtype=np.float64, scale=0.3, fan_in=False):
    r"""``(params, x, eps)``: a random model, ``batch`` binary images and the noise of ``k`` samples, all from ``rng``.

    The parameters are a Glorot init (zero biases) plus Gaussian noise, so that no gradient is trivially
    zero: :math:`N(0, \text{scale}^2)` on every entry, or with ``fan_in`` :math:`N(0, \text{scale}^2 / n_{in})`
    on weights (pre-activations stay O(1) at D = 784) and :math:`N(0, \text{scale}^2)` on biases.
    ``x ~ Bernoulli(0.5)``; ``eps ~ N(0, I)``. Draws in that order.
    """
    params = init_params(arch, rng, dtype)

    def perturb(p):
        s = scale / math.sqrt(p.shape[0]) if fan_in and p.ndim == 2 else scale
        return p + (s * rng.standard_normal(p.shape)).astype(dtype)

    params = tree_map(perturb, params)
    x = (rng.uniform(size=(batch, arch.x_dim)) < 0.5).astype(dtype)
    eps = sample_eps(rng, params, k, batch)
    return params, x, eps
