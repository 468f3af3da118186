r"""Log densities of the model's distributions (paper section 2).

- :func:`gaussian_log_density`: diagonal Gaussian, parameterized by mean and log standard deviation.
- :func:`standard_normal_log_density`: the prior :math:`p(h^L) = \mathcal N(0, I)`.
- :func:`bernoulli_log_likelihood`: :math:`\log p(x \mid h^1)` from logits.

All sum over the last axis (the units) and broadcast over the leading ones
(samples ``k`` and examples ``batch``). Written in ``autograd.numpy``; autograd differentiates them.
"""
import math

import autograd.numpy as anp

from .special import softplus

__all__ = ["gaussian_log_density", "standard_normal_log_density", "bernoulli_log_likelihood", "LOG_2PI"]

#: :math:`\log 2\pi`, the constant of every Gaussian log density.
LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(h, mu, log_sigma):
    r"""Diagonal Gaussian log density, summed over the last axis.

    .. math::
        \log \mathcal N(h; \mu, \sigma) = -\frac12 \sum_j \Big[\log 2\pi + 2\log\sigma_j
            + \Big(\frac{h_j - \mu_j}{\sigma_j}\Big)^2\Big]

    ``log_sigma`` is the log *standard deviation* (the paper's sigma = exp of a linear layer).
    Shapes broadcast: ``h (k, batch, d)`` against ``mu, log_sigma (batch, d)`` or ``(k, batch, d)``;
    the result drops the last axis. ``(h - mu) / sigma`` is computed as ``(h - mu) * exp(-log_sigma)``.
    """
    z = (h - mu) * anp.exp(-log_sigma)  # (..., d)
    return -0.5 * anp.sum(LOG_2PI + 2.0 * log_sigma + z * z, axis=-1)


def standard_normal_log_density(h):
    r"""The prior :math:`\log \mathcal N(h; 0, I) = -\frac12 \sum_j [\log 2\pi + h_j^2]`."""
    return -0.5 * anp.sum(LOG_2PI + h * h, axis=-1)


def bernoulli_log_likelihood(x, logits):
    r"""Bernoulli log-likelihood from logits, summed over the last axis.

    .. math::
        \log p(x \mid h^1) = \sum_j \big[x_j l_j - \operatorname{softplus}(l_j)\big]

    Derivation, with :math:`p = \sigma(l)`::

        x log p + (1 - x) log(1 - p)
          = x log(p / (1 - p)) + log(1 - p)
          = x l + log(1 - sigma(l))            # log(p / (1 - p)) = l
          = x l - log(1 + e^l)                 # 1 - sigma(l) = 1 / (1 + e^l)
          = x l - softplus(l)

    No ``log(sigmoid(l))``, no clipping: finite for every finite logit, with the stable
    :func:`iwae_np.special.softplus`. ``x (batch, D)`` broadcasts against ``logits (k, batch, D)``.
    """
    return anp.sum(x * logits - softplus(logits), axis=-1)
