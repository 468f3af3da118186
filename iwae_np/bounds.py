r"""Lower bounds on :math:`\log p(x)`: the paper's VAE and IWAE bounds (eq. 3 and 8), and MIWAE, CIWAE and Renyi beyond it.

Per-example estimators take log weights ``log_w (k, batch)`` and return ``(batch,)``;
the ``*_objective`` functions take ``(params, x, eps)`` and return the batch mean, the number
that training ascends (its negative is the loss minimized). Their gradients, at the end of this
module, are autograd's: paper eq. 7 for the VAE, eq. 14 for IWAE (:mod:`iwae_np.gradients` writes
eq. 14 out as a weighted sum and the tests hold the two equal).
"""
import math

import autograd.numpy as anp
import numpy as np
from autograd import grad, value_and_grad
from autograd.tracer import getval

from .model import log_importance_weights
from .special import log_mean_exp, mean, softmax

__all__ = ["vae_bound", "iwae_bound", "normalized_weights", "vae_objective", "iwae_objective",
           "miwae_bound", "ciwae_bound", "renyi_bound", "miwae_objective", "ciwae_objective",
           "renyi_objective", "check_log_w", "vae_gradient", "iwae_gradient", "vae_value_and_gradient",
           "iwae_value_and_gradient", "miwae_gradient", "ciwae_gradient", "renyi_gradient"]


def check_log_w(log_w):
    """``log_w`` must be a ``(k, batch)`` array of real numbers with ``k >= 1`` samples; ``ValueError`` naming the problem.

    (A 1-D or 3-D array would otherwise be reduced over the wrong axis, and ``k = 0`` gives NaN.)
    """
    value = getval(log_w)
    dtype = np.asarray(value).dtype
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise ValueError(f"log_w must be an array of real numbers, got dtype {dtype}")
    shape = np.shape(value)
    if len(shape) != 2 or shape[0] < 1:
        raise ValueError(f"log_w must have shape (k, batch) with k >= 1 samples, got shape {shape}")


def vae_bound(log_w):
    r"""k-sample estimate of the ELBO (paper eq. 3 with k samples): :math:`\frac1k \sum_{i=1}^k \log w_i`.

    ``log_w (k, batch) -> (batch,)``.
    """
    check_log_w(log_w)
    return mean(log_w, axis=0)


def iwae_bound(log_w):
    r"""The importance weighted bound (paper eq. 8), one sample of it per example.

    .. math::
        \mathcal L_k = \log \frac1k \sum_{i=1}^k w_i = \operatorname{logsumexp}_i(\log w_i) - \log k

    with the stable logsumexp of :mod:`iwae_np.special`. ``log_w (k, batch) -> (batch,)``.
    """
    check_log_w(log_w)
    return log_mean_exp(log_w, axis=0)


def normalized_weights(log_w):
    r"""Normalized importance weights (paper eq. 14): :math:`\tilde w_i = w_i / \sum_j w_j = \operatorname{softmax}(\log w)_i`.

    ``log_w (k, batch) -> (k, batch)``, each column sums to 1.
    """
    check_log_w(log_w)
    return softmax(log_w, axis=0)


def vae_objective(params, x, eps):
    """Batch mean of :func:`vae_bound` at the samples given by the noise ``eps``."""
    return mean(vae_bound(log_importance_weights(params, x, eps)))


def iwae_objective(params, x, eps):
    """Batch mean of :func:`iwae_bound` at the samples given by the noise ``eps``."""
    return mean(iwae_bound(log_importance_weights(params, x, eps)))


# ---------------------------------------------------------------------------------------------
# bounds beyond the paper: MIWAE, CIWAE (Rainforth et al. 2018), Renyi alpha (Li & Turner 2016)


def check_groups(k, M):
    """``M`` must be a positive integer that divides the number of samples ``k``; returns ``K = k // M``."""
    if isinstance(M, bool) or int(M) != M or M < 1:
        raise ValueError(f"M (the number of groups) must be a positive integer, got {M!r}")
    if k % int(M):
        raise ValueError(f"M = {M} does not divide the number of samples k = {k} (need k = M * K)")
    return k // int(M)


def check_beta(beta):
    """CIWAE's mixing weight must be a number in [0, 1]; returned as a Python float (keeps float32)."""
    if beta is None or not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta (the CIWAE mixing weight) must be in [0, 1], got {beta!r}")
    return float(beta)


def check_alpha(alpha):
    """The Renyi order must be a finite number; returned as a Python float (keeps float32)."""
    if alpha is None or not math.isfinite(float(alpha)):
        raise ValueError(f"alpha (the Renyi order) must be a finite number, got {alpha!r}")
    return float(alpha)


def miwae_bound(log_w, M):
    r"""MIWAE(M, K): the mean of M independent IWAE bounds of K samples each (Rainforth et al. 2018, eq. 5).

    .. math::
        \mathcal L_{M,K} = \frac1M \sum_{m=1}^M \Big[ \operatorname{logsumexp}_{j=1}^K \log w_{m,j} - \log K \Big]

    Sample ``i = m * K + j`` of ``log_w (M * K, batch)`` is ``w_{m,j}``, i.e. ``log_w.reshape(M, K, batch)``.
    MIWAE(1, K) is IWAE(K); MIWAE(M, 1) is the M-sample VAE estimate. ``-> (batch,)``.
    """
    check_log_w(log_w)
    k, batch = anp.shape(log_w)
    K = check_groups(k, M)
    groups = anp.reshape(log_w, (int(M), K, batch))  # (M, K, batch)
    return mean(log_mean_exp(groups, axis=1), axis=0)


def ciwae_bound(log_w, beta):
    r"""CIWAE(beta): a convex combination of the VAE and IWAE bounds on the same k samples (Rainforth et al. 2018).

    .. math::
        \mathcal L_\beta = \beta\, \frac1k \sum_i \log w_i + (1 - \beta) \Big[\operatorname{logsumexp}_i \log w_i - \log k\Big]

    CIWAE(1) is the VAE estimate, CIWAE(0) is IWAE. ``log_w (k, batch) -> (batch,)``.
    """
    beta = check_beta(beta)
    return beta * vae_bound(log_w) + (1.0 - beta) * iwae_bound(log_w)


def renyi_bound(log_w, alpha):
    r"""The Renyi variational bound of order alpha, its k-sample estimate (Li & Turner 2016, eq. 12).

    .. math::
        \mathcal L_\alpha = \frac{1}{1-\alpha} \Big[ \operatorname{logsumexp}_i \big((1-\alpha) \log w_i\big) - \log k \Big]

    alpha = 0 is IWAE; as alpha -> 1 it tends to the VAE estimate
    (:math:`\mathcal L_\alpha = \frac1k\sum_i \log w_i + \frac{1-\alpha}{2} \operatorname{Var}_i \log w_i + O((1-\alpha)^2)`),
    and alpha = 1 is defined as that limit, :func:`vae_bound`. ``log_w (k, batch) -> (batch,)``.
    """
    alpha = check_alpha(alpha)
    check_log_w(log_w)
    if alpha == 1.0:
        return vae_bound(log_w)
    t = 1.0 - alpha
    return log_mean_exp(t * log_w, axis=0) / t


def miwae_objective(params, x, eps, M):
    """Batch mean of :func:`miwae_bound` at the samples given by ``eps`` (``k = M * K`` of them)."""
    return mean(miwae_bound(log_importance_weights(params, x, eps), M))


def ciwae_objective(params, x, eps, beta):
    """Batch mean of :func:`ciwae_bound` at the samples given by ``eps``."""
    return mean(ciwae_bound(log_importance_weights(params, x, eps), beta))


def renyi_objective(params, x, eps, alpha):
    """Batch mean of :func:`renyi_bound` at the samples given by ``eps``."""
    return mean(renyi_bound(log_importance_weights(params, x, eps), alpha))


# ---------------------------------------------------------------------------------------------
# the gradients: autograd differentiates the objectives through log w, the reparameterized latents
# h(eps, x, phi) and every network (paper section 3); each is a tree shaped like ``params``

#: Paper eq. 7: :math:`\nabla_{\theta,\phi} \frac1k \sum_i \log w_i` (batch mean).
vae_gradient = grad(vae_objective)
#: Paper eq. 14: :math:`\nabla_{\theta,\phi} \mathcal L_k` (batch mean).
iwae_gradient = grad(iwae_objective)
vae_value_and_gradient = value_and_grad(vae_objective)
iwae_value_and_gradient = value_and_grad(iwae_objective)
miwae_gradient = grad(miwae_objective)
ciwae_gradient = grad(ciwae_objective)
renyi_gradient = grad(renyi_objective)
