r"""Gradients of the bounds (paper section 3, eq. 7 and 14).

- :func:`vae_gradient`, :func:`iwae_gradient`: autograd's gradients of the batch-mean objectives
  on fixed noise ``eps`` (paper eq. 7 and eq. 14), through the reparameterized latents.
- :func:`log_weight_gradients`: the per-sample gradients :math:`\nabla \log w_i`, one
  backward pass per sample and example.
- :func:`importance_weighted_gradient`: the paper's eq. 14 written out,
  :math:`\sum_i \tilde w_i \nabla \log w_i`, from those per-sample gradients. The tests hold it
  against :func:`iwae_gradient`: the two must agree to rounding.
"""
import functools

import numpy as np
from autograd import make_vjp, value_and_grad

from .bounds import iwae_objective, normalized_weights, vae_objective
from .model import log_importance_weights
from .primitives import tree_views
from .buffers import new_buffer
from .tree import pack_tree, tree_map

__all__ = ["vae_gradient", "iwae_gradient", "vae_value_and_gradient", "iwae_value_and_gradient",
           "log_weight_gradients", "importance_weighted_gradient", "average_gradient",
           "tree_value_and_grad", "tree_grad", "tree_make_vjp"]


def _flat(params):
    """``(flat, layout)`` of a parameter tree that can be differentiated through one buffer, else None."""
    packed = pack_tree(params)
    if packed is None or packed[1].units is None:
        return None
    return packed[0], packed[1]


def tree_make_vjp(fun):
    r"""autograd's ``make_vjp`` of ``fun(params, *args)`` with respect to the parameter tree ``params``.

    ``tree_make_vjp(fun)(params, *args)`` returns ``(vjp, value)``; ``vjp(c)`` is the gradient tree of
    :math:`\sum c \cdot` ``fun``, named like ``params``. The tree is differentiated as one flat buffer
    (:func:`iwae_np.primitives.tree_views`: one node per layer), and the gradient tree is views into
    one flat gradient buffer, which :func:`iwae_np.optimizers.adam_update` then updates in one pass.
    Trees that share no buffer (arrays of several dtypes) are differentiated as they are.
    """
    @functools.wraps(fun)
    def vjp_and_value(params, *args, **kwargs):
        found = _flat(params)
        if found is None:
            return make_vjp(lambda p: fun(p, *args, **kwargs))(params)
        flat, layout = found
        vjp, value = make_vjp(lambda f: fun(tree_views(f, layout), *args, **kwargs))(flat)
        return (lambda c: layout.views(vjp(c))), value  # several vjp calls: each its own fresh buffer
    return vjp_and_value


def tree_value_and_grad(fun):
    """``(value, gradient tree)`` of a scalar ``fun(params, *args)``, as autograd's ``value_and_grad`` (see :func:`tree_make_vjp`)."""
    @functools.wraps(fun)
    def value_and_gradient(params, *args, **kwargs):
        found = _flat(params)
        if found is None:
            return value_and_grad(fun)(params, *args, **kwargs)
        flat, layout = found
        grad_out = new_buffer(layout.size, layout.dtype, zero=True)
        value, g = value_and_grad(lambda f: fun(tree_views(f, layout, grad_out), *args, **kwargs))(flat)
        return value, layout.views(g)
    return value_and_gradient


def tree_grad(fun):
    """The gradient tree of a scalar ``fun(params, *args)``, as autograd's ``grad`` (see :func:`tree_make_vjp`)."""
    value_and_gradient = tree_value_and_grad(fun)

    @functools.wraps(fun)
    def gradient(params, *args, **kwargs):
        return value_and_gradient(params, *args, **kwargs)[1]
    return gradient


#: Paper eq. 7: :math:`\nabla_{\theta,\phi} \frac1k \sum_i \log w_i` (batch mean), a tree like ``params``.
vae_gradient = tree_grad(vae_objective)
#: Paper eq. 14: :math:`\nabla_{\theta,\phi} \mathcal L_k` (batch mean) by automatic differentiation.
iwae_gradient = tree_grad(iwae_objective)
vae_value_and_gradient = tree_value_and_grad(vae_objective)
iwae_value_and_gradient = tree_value_and_grad(iwae_objective)


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
