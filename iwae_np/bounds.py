r"""The VAE and IWAE lower bounds on :math:`\log p(x)` (SPEC section 3).

Per-example estimators take log weights ``log_w (k, batch)`` and return ``(batch,)``;
the ``*_objective`` functions take ``(params, x, eps)`` and return the batch mean, the number
that training ascends (its negative is the loss minimized) and autograd differentiates.
"""
import autograd.numpy as anp

from .model import log_importance_weights
from .special import log_mean_exp, softmax

__all__ = ["vae_bound", "iwae_bound", "normalized_weights", "vae_objective", "iwae_objective"]


def vae_bound(log_w):
    r"""k-sample estimate of the ELBO (paper eq. 3 with k samples): :math:`\frac1k \sum_{i=1}^k \log w_i`.

    ``log_w (k, batch) -> (batch,)``.
    """
    return anp.mean(log_w, axis=0)


def iwae_bound(log_w):
    r"""The importance weighted bound (paper eq. 8), one sample of it per example.

    .. math::
        \mathcal L_k = \log \frac1k \sum_{i=1}^k w_i = \operatorname{logsumexp}_i(\log w_i) - \log k

    with the stable logsumexp of :mod:`iwae_np.special`. ``log_w (k, batch) -> (batch,)``.
    """
    return log_mean_exp(log_w, axis=0)


def normalized_weights(log_w):
    r"""Normalized importance weights (paper eq. 14): :math:`\tilde w_i = w_i / \sum_j w_j = \operatorname{softmax}(\log w)_i`.

    ``log_w (k, batch) -> (k, batch)``, each column sums to 1.
    """
    return softmax(log_w, axis=0)


def vae_objective(params, x, eps):
    """Batch mean of :func:`vae_bound` at the samples given by the noise ``eps``."""
    return anp.mean(vae_bound(log_importance_weights(params, x, eps)))


def iwae_objective(params, x, eps):
    """Batch mean of :func:`iwae_bound` at the samples given by the noise ``eps``."""
    return anp.mean(iwae_bound(log_importance_weights(params, x, eps)))
