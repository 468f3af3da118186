r"""The paper's gradient estimators written out (section 3, eq. 7 and 14), from per-sample gradients.

- :func:`log_weight_gradients`: the per-sample gradients :math:`\nabla \log w_i` by autograd, one
  backward pass per sample and example.
- :func:`importance_weighted_gradient`: eq. 14, :math:`\sum_i \tilde w_i \nabla \log w_i`.
- :func:`average_gradient`: eq. 7, :math:`\frac1k \sum_i \nabla \log w_i`.

The gradients themselves, autograd's of the bounds, are :func:`iwae_np.bounds.iwae_gradient` and
:func:`iwae_np.bounds.vae_gradient`; the tests hold them equal to these sums, parameter by parameter.
Meant for checking, not for training (``k * batch`` backward passes).
"""
import numpy as np
from autograd import make_vjp

from .bounds import normalized_weights
from .model import log_importance_weights
from .tree import tree_map

__all__ = ["log_weight_gradients", "importance_weighted_gradient", "average_gradient"]


def log_weight_gradients(params, x, eps):
    r"""Per-sample gradients :math:`\nabla \log w_{i,b}` for every sample i and example b.

    Returns ``(log_w, grads)``: ``log_w (k, batch)`` and a tree like ``params`` whose leaves have
    shape ``(k, batch) + leaf.shape``. One forward pass, then ``k * batch`` backward passes
    (one per basis vector of the output).
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
