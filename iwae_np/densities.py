r"""Log densities of the model's distributions (paper section 2).

- :func:`gaussian_log_density`: diagonal Gaussian, parameterized by mean and log standard deviation.
- :func:`standard_normal_log_density`: the prior :math:`p(h_L) = \mathcal N(0, I)`.
- :func:`bernoulli_log_likelihood`: :math:`\log p(x \mid h_1)` from logits.

All sum over the last axis (the units) and broadcast over the leading ones
(samples ``k`` and examples ``batch``).
"""

from .primitives import bernoulli_logit_log_likelihood, diagonal_gaussian_log_density
from .primitives import standard_normal_log_density as _standard_normal_log_density

__all__ = ["gaussian_log_density", "standard_normal_log_density", "bernoulli_log_likelihood"]

def gaussian_log_density(h, mu, log_sigma):
    r"""Diagonal Gaussian log density, summed over the last axis.

    .. math::
        \log \mathcal N(h; \mu, \sigma) = -\frac12 \sum_j \Big[\log 2\pi + 2\log\sigma_j
            + \Big(\frac{h_j - \mu_j}{\sigma_j}\Big)^2\Big]

    ``log_sigma`` is the log *standard deviation* (the paper's sigma = exp of a linear layer).
    Shapes broadcast: ``h (k, batch, d)`` against ``mu, log_sigma (batch, d)`` or ``(k, batch, d)``;
    the result drops the last axis.

    Computed by the primitive :func:`iwae_np.primitives.diagonal_gaussian_log_density` (this formula
    with ``z = (h - mu) * exp(-log_sigma)``), whose VJP is the closed form
    :math:`\partial h = -z/\sigma`, :math:`\partial \mu = z/\sigma`, :math:`\partial \log\sigma = z^2 - 1`.
    """
    return diagonal_gaussian_log_density(h, mu, log_sigma)


def standard_normal_log_density(h):
    r"""The prior :math:`\log \mathcal N(h; 0, I) = -\frac12 \sum_j [\log 2\pi + h_j^2]`.

    Computed by the primitive :func:`iwae_np.primitives.standard_normal_log_density` (one autograd
    node instead of four), whose VJP is the closed form :math:`\partial h = -h`.
    """
    return _standard_normal_log_density(h)


def bernoulli_log_likelihood(x, logits):
    r"""Bernoulli log-likelihood from logits, summed over the last axis.

    .. math::
        \log p(x \mid h_1) = \sum_j \big[x_j l_j - \operatorname{softplus}(l_j)\big]

    Derivation, with :math:`p = \sigma(l)`::

        x log p + (1 - x) log(1 - p)
          = x log(p / (1 - p)) + log(1 - p)
          = x l + log(1 - sigma(l))            # log(p / (1 - p)) = l
          = x l - log(1 + e^l)                 # 1 - sigma(l) = 1 / (1 + e^l)
          = x l - softplus(l)

    No ``log(sigmoid(l))``, no clipping: finite for every finite logit, with an absolute error of
    at most about one unit in the last place of ``l`` (from the cancellation in ``x l - softplus(l)``). ``softplus`` is the
    stable ``max(l, 0) + log1p(exp(-|l|))`` (not ``np.logaddexp``, a slow scalar loop).
    ``x (batch, D)`` broadcasts against ``logits (k, batch, D)``.

    Computed by the primitive :func:`iwae_np.primitives.bernoulli_logit_log_likelihood` as
    :math:`\sum_j [(x_j l_j - \max(l_j, 0)) - \operatorname{log1p}(e^{-|l_j|})]`, whose VJP is the closed
    form :math:`\partial l = x - \sigma(l)` (the derivative of softplus is the sigmoid).
    """
    return bernoulli_logit_log_likelihood(x, logits)
