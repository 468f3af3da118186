r"""Numerically stable special functions, written in ``autograd.numpy``.

- :func:`logsumexp`: the max-shifted form; its custom gradient is the softmax (the docstring says why);
- :func:`log_mean_exp`: logsumexp minus log n;
- :func:`softplus`: ``max(l, 0) + log1p(exp(-|l|))``; its custom gradient is the sigmoid;
- :func:`softmax`: the normalized weights, differentiable;
- :func:`mean`: ``sum / n``, which keeps float32 under autograd;
- :func:`sigmoid`: ``scipy.special.expit`` (not differentiated).

The two custom gradients are the only ones of the definition: everything else in the package's math is
differentiated by autograd op by op.

Each value is stable (no overflow, no NaN from ``inf - inf``), and so is each gradient.
"""
import math

import autograd.numpy as anp
import numpy as np
import scipy.special
from autograd.extend import defvjp, primitive
from autograd.tracer import getval

__all__ = ["logsumexp", "log_mean_exp", "mean", "softplus", "sigmoid", "softmax"]


def _shifted_max(a, axis):
    # scipy's guard: a non-finite max (all -inf, or an +inf entry) must not
    # produce inf - inf = NaN; shift by 0 instead and let exp/log give +-inf.
    a_max = np.max(a, axis=axis, keepdims=True)
    return np.where(np.isfinite(a_max), a_max, 0).astype(a.dtype, copy=False)


@primitive
def logsumexp(a, axis=0, keepdims=False):
    r"""Stable :math:`\log \sum_i \exp(a_i)` along ``axis``.

    .. math::
        m = \max_i a_i, \qquad
        \operatorname{logsumexp}(a) = m + \log \sum_i \exp(a_i - m)

    Every term ``exp(a_i - m)`` is at most 1, so nothing overflows, and the largest
    term is exactly 1, so the sum is at least 1 and its log is never ``-inf`` by underflow.
    When ``m`` is not finite the shift is 0: all ``-inf`` gives ``-inf``, any ``+inf``
    gives ``+inf``, and neither gives NaN. The dtype of ``a`` is kept.

    Why a custom gradient: it is the softmax, :math:`\partial/\partial a_i = \exp(a_i - m) / \sum_j \exp(a_j - m)`,
    computed from the same shifted exponentials. Differentiated op by op, the all ``-inf`` column
    (``0 / 0``) and an ``+inf`` entry (``inf / inf``) would give NaN; here the gradient is defined as 0
    where the value is not finite.
    """
    a = np.asarray(a)
    shift = _shifted_max(a, axis)
    with np.errstate(divide="ignore"):  # log(0) = -inf when every a_i is -inf
        out = np.log(np.sum(np.exp(a - shift), axis=axis, keepdims=True)) + shift
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax_values(a, axis):
    # exp(a_i - m) / sum_j exp(a_j - m): the shift m = max cancels exactly, and dividing by the
    # computed sum (rather than subtracting the rounded logsumexp) keeps full relative precision.
    shift = _shifted_max(a, axis)
    with np.errstate(invalid="ignore"):
        e = np.exp(a - shift)
        total = np.sum(e, axis=axis, keepdims=True)
        w = e / total
    # where the logsumexp is not finite (all -inf, or +inf entries) the gradient is defined as 0
    return np.where(np.isfinite(total) & (total > 0), w, 0).astype(a.dtype, copy=False)


def _logsumexp_vjp(ans, a, axis=0, keepdims=False):
    weights = _softmax_values(a, axis)

    def vjp(g):
        g_k = g if keepdims else np.expand_dims(g, axis)
        return g_k * weights

    return vjp


defvjp(logsumexp, _logsumexp_vjp)


def softmax(a, axis=0):
    r"""Normalized weights :math:`\tilde w_i = \exp(a_i) / \sum_j \exp(a_j)` (paper eq. 14), the gradient of :func:`logsumexp`.

    Computed as :math:`e_i / \sum_j e_j` with :math:`e_i = \exp(a_i - m)`, :math:`m = \max_j a_j`
    held constant (it cancels), so it sums to 1 to rounding for any finite input and autograd can
    differentiate it.
    """
    shift = _shifted_max(np.asarray(getval(a)), axis)
    e = anp.exp(a - shift)
    return e / anp.sum(e, axis=axis, keepdims=True)


def mean(a, axis=None):
    r"""Arithmetic mean :math:`\frac1n \sum_i a_i`, as ``sum / n`` with ``n`` a Python int.

    Not ``anp.mean``: autograd's VJP of ``mean`` returns float64 for a float32 input, which would
    silently turn every float32 gradient downstream into float64. This keeps the input's dtype.
    """
    n = np.size(getval(a)) if axis is None else np.shape(getval(a))[axis]
    return anp.sum(a, axis=axis) / n


def log_mean_exp(a, axis=0, keepdims=False):
    r"""Stable :math:`\log \frac{1}{n} \sum_{i=1}^n \exp(a_i) = \operatorname{logsumexp}(a) - \log n`.

    ``log n`` is a Python float, so a float32 input stays float32.
    """
    n = np.shape(a)[axis]
    return logsumexp(a, axis=axis, keepdims=keepdims) - math.log(n)


@primitive
def softplus(l):
    r"""Stable :math:`\operatorname{softplus}(l) = \log(1 + e^l)`.

    Derivation::

        log(1 + e^l) = log(e^max(l,0) * (e^-max(l,0) + e^(l - max(l,0))))
                     = max(l, 0) + log(e^-max(l,0) + e^(min(l,0)))
                     = max(l, 0) + log1p(e^-|l|)           # one of the two terms is e^0 = 1

    ``e^-|l|`` is in (0, 1], so nothing overflows, and ``log1p`` keeps the digits when
    ``e^-|l|`` is tiny (the same number as ``np.logaddexp(0, l)``, to one rounding).

    Why a custom gradient: it is the sigmoid :math:`\sigma(l)`, computed directly by :func:`sigmoid`
    (correctly rounded, in the dtype of ``l``). Differentiated op by op, autograd would give
    ``exp(l - softplus(l))`` through ``logaddexp``, which loses about ``|l|`` units in the last place
    to the cancellation in ``l - softplus(l)``, or, through ``max`` and ``abs``, a float64 gradient
    for a float32 ``l``.
    """
    l = np.asarray(l)
    return np.maximum(l, 0) + np.log1p(np.exp(-np.abs(l)))


def sigmoid(l):
    r"""Logistic function :math:`\sigma(l) = 1 / (1 + e^{-l})`, the mean of Bernoulli(logits = l).

    ``scipy.special.expit``: correctly rounded, never overflows, keeps float32.
    Not differentiated by autograd (it is the gradient of :func:`softplus`, and used for sampling).
    """
    return scipy.special.expit(np.asarray(l))


defvjp(softplus, lambda ans, l: lambda g: g * sigmoid(l))
