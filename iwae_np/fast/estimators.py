r"""The fast engine's gradients: one forward pass of ``log w``, then vector-Jacobian products with constant weights.

Every estimator of :mod:`iwae_np.estimators` is :math:`\sum_i c_i \nabla \log w_i` with constant weights
:math:`c_i` (for the paper's estimator :math:`c_i = \partial \mathcal L / \partial \log w_i`, e.g.
:math:`\tilde w_i` for IWAE, eq. 14). The definition differentiates the bound with autograd; here the
gradient is the VJP of ``log w`` (:mod:`iwae_np.fast.model`, through the flat buffer) with the closed-form
weights of :func:`iwae_np.estimators.bound_and_weights`: no autograd node above ``log w``. Equal to
the definition to rounding (``tests/test_fast_engine.py``).

Weights smaller in magnitude than :math:`\varepsilon_{\mathrm{mach}}^2` of the dtype (:func:`negligible_weight`) are set to
zero first (:func:`drop_negligible`): they change the gradient by at most :math:`k \varepsilon_{\mathrm{mach}}^2 \max_i
\|\nabla \log w_i\|`, below one rounding step of the sum's largest term (not of the gradient, whose
terms can cancel), and kept they turn the backward pass into arrays of subnormal numbers, which some CPUs (Intel's) process ~100 times slower (measured on a
Xeon: an IWAE k = 50 float32 step of a trained model took 33 ms with them, 18 ms without).
"""
import autograd.numpy as anp
import numpy as np
from autograd.tracer import getval

from ..estimators import (bound_and_weights, check_estimator, get_objective as _get_objective,
                          merge_gradients, stop_gradient)
from ..special import mean
from .gradients import tree_grad, tree_make_vjp
from .model import log_importance_weights, recognition_log_density, sample_posterior

__all__ = ["estimate_gradient", "weighted_gradients", "path_log_weights", "get_objective", "negligible_weight",
           "drop_negligible"]


def negligible_weight(dtype):
    r"""The weight below which this engine drops a sample's term: :math:`\varepsilon_{\mathrm{mach}}^2` of the dtype.

    1.4e-14 in float32, 4.9e-32 in float64. The dropped terms move :math:`\sum_i c_i \nabla \log w_i` by at
    most :math:`k \varepsilon_{\mathrm{mach}}^2 \max_i \|\nabla \log w_i\|`, below one rounding step of the sum's largest
    term (the largest weight is at least 1/k), not of the gradient, whose terms can cancel.
    """
    return np.finfo(dtype).eps ** 2


def drop_negligible(c):
    """The weights ``c`` with every entry smaller in magnitude than :func:`negligible_weight` set to 0 (sign kept otherwise)."""
    c = np.asarray(c)
    return np.where(np.abs(c) < negligible_weight(c.dtype), 0, c).astype(c.dtype, copy=False)


def weighted_gradients(log_w_fn, params, weights_fn, *which):
    r""":func:`iwae_np.estimators.weighted_gradients`: one forward pass, one VJP per distinct weight array."""
    vjp, log_w = tree_make_vjp(log_w_fn)(params)  # log_w (k, batch)
    weights = weights_fn(log_w)
    batch = np.shape(log_w)[1]
    cache = {}
    for field in which:  # theta and phi share one backward pass when their weights are the same array
        c = getattr(weights, field)
        if id(c) not in cache:
            cache[id(c)] = vjp(drop_negligible(c) / batch)
    return log_w, weights, [cache[id(getattr(weights, field))] for field in which]


def path_log_weights(params, x, eps):
    """:func:`iwae_np.estimators.path_log_weights`: ``log w`` with every ``log q`` term at a stopped phi."""
    phi_stopped = {net: value for net, value in stop_gradient(params).items() if net.startswith("q_")}
    return log_importance_weights(params, x, eps, log_q_params=phi_stopped)


def estimate_gradient(params, x, eps, objective="iwae", estimator="iwae", M=1, beta=None, alpha=None):
    """:func:`iwae_np.estimators.estimate_gradient`: ``(batch-mean bound, ascent-gradient tree)``."""
    estimator = check_estimator(estimator)
    bound_fn, weights_fn = bound_and_weights(objective, M, beta, alpha)
    if estimator in ("stl", "dreg"):  # the path derivative, weighted by c or by the DReG weights d
        log_w_fn, phi_field = (lambda p: path_log_weights(p, x, eps)), ("phi" if estimator == "stl" else "dreg")
    else:
        log_w_fn, phi_field = (lambda p: log_importance_weights(p, x, eps)), "phi"
    log_w, weights, (g_theta, g_phi) = weighted_gradients(log_w_fn, params, weights_fn, "theta", phi_field)
    if estimator == "rws":  # phi ascends sum_i c_i log q_phi(stop(h_i) | x)
        x = np.asarray(getval(x), dtype=log_w.dtype)  # already validated by the forward pass
        h = [getval(h_l) for h_l in sample_posterior(stop_gradient(params), x, eps)[0]]  # stopped
        batch = np.shape(log_w)[1]
        g_phi = tree_grad(lambda p: anp.sum(weights.phi * recognition_log_density(p, x, h)) / batch)(params)
    return mean(bound_fn(log_w)), merge_gradients(g_theta, g_phi)


def get_objective(name, k=None):
    """:func:`iwae_np.estimators.get_objective` computed by this engine."""
    return _get_objective(name, k, estimate=estimate_gradient)
