r"""Gradients of the bounds (paper section 3, eq. 7 and 14).

- :func:`vae_gradient`, :func:`iwae_gradient`: autograd's gradients of the batch-mean objectives
  on fixed noise ``eps`` (paper eq. 7 and eq. 14), through the reparameterized latents.
- :func:`log_weight_gradients`: the per-sample gradients :math:`\nabla \log w_i`, one
  backward pass per sample and example.
- :func:`importance_weighted_gradient`: the paper's eq. 14 written out,
  :math:`\sum_i \tilde w_i \nabla \log w_i`, from those per-sample gradients. The tests hold it
  against :func:`iwae_gradient`: the two must agree to rounding.
"""
import numpy as np
from autograd import grad, make_vjp, value_and_grad

from .bounds import iwae_objective, normalized_weights, vae_objective
from .model import log_importance_weights
from .tree import tree_map

__all__ = ["vae_gradient", "iwae_gradient", "vae_value_and_gradient", "iwae_value_and_gradient",
           "log_weight_gradients", "importance_weighted_gradient", "average_gradient"]

#: Paper eq. 7: :math:`\nabla_{\theta,\phi} \frac1k \sum_i \log w_i` (batch mean), a tree like ``params``.
vae_gradient = grad(vae_objective)
#: Paper eq. 14: :math:`\nabla_{\theta,\phi} \mathcal L_k` (batch mean) by automatic differentiation.
iwae_gradient = grad(iwae_objective)
vae_value_and_gradient = value_and_grad(vae_objective)
iwae_value_and_gradient = value_and_grad(iwae_objective)


def log_weight_gradients(params, x, eps):
    r"""Per-sample gradients :math:`\nabla \log w_{i,b}` for every sample i and example b.

    Returns ``(log_w, grads)``: ``log_w (k, batch)`` and a tree like ``params`` whose leaves have
    shape ``(k, batch) + leaf.shape``. One forward pass, then ``k * batch`` backward passes
    (one per basis vector of the output): meant for checking, not for training.
    """
    vjp, log_w = make_vjp(lambda p: log_importance_weights(p, x, eps))(params)
    k, batch = log_w.shape
    rows = []
    for i in range(k):
        for b in range(batch):
            basis = np.zeros_like(log_w)
            basis[i, b] = 1
            rows.append(vjp(basis))
    grads = tree_map(lambda *leaves: np.stack(leaves).reshape((k, batch) + leaves[0].shape), *rows)
    return log_w, grads


def _weighted_sum(per_sample_grads, weights):
    # sum over samples i and mean over examples b of weights[i, b] * g[i, b]
    batch = weights.shape[1]
    return tree_map(lambda g: np.tensordot(weights, g, axes=([0, 1], [0, 1])) / batch, per_sample_grads)


def importance_weighted_gradient(per_sample_grads, log_w):
    r"""Paper eq. 14 written out: :math:`\frac1B \sum_b \sum_i \tilde w_{i,b} \nabla \log w_{i,b}`.

    ``per_sample_grads`` as returned by :func:`log_weight_gradients`; the normalized weights
    :math:`\tilde w = \operatorname{softmax}(\log w)` are constants here.
    """
    return _weighted_sum(per_sample_grads, np.asarray(normalized_weights(log_w)))


def average_gradient(per_sample_grads, log_w):
    r"""Paper eq. 7 written out: :math:`\frac1B \sum_b \frac1k \sum_i \nabla \log w_{i,b}`."""
    k = log_w.shape[0]
    return _weighted_sum(per_sample_grads, np.full(log_w.shape, 1.0 / k, dtype=log_w.dtype))
