r"""The fast engine's log weights: the definition's :mod:`iwae_np.model`, computed by :mod:`iwae_np.fast.primitives`.

The same functions with the same outputs (every latent, term, ``log p``, ``log q`` and ``log w``), equal
to the definition's to rounding (``tests/test_fast_engine.py``). What differs is only how they are
computed: one autograd node per network (:func:`iwae_np.fast.primitives.mlp`), the reparameterized
sample and each density a primitive with a closed-form VJP, and the parameters' structure checked once
per structure rather than at every call (their values, ``x`` and ``eps`` are still checked every call).
"""
import numpy as np
from autograd.tracer import getval

from ..model import Architecture
from ..validation import (check_log_weights_finite, concrete, model_structure, validate_eps, validate_params,
                          validate_x)
from .flat import all_finite
from .primitives import (bernoulli_logit_log_likelihood, diagonal_gaussian_log_density, mlp, reparameterize,
                         standard_normal_log_density)

__all__ = ["log_weight_terms", "log_importance_weights", "sample_posterior", "recognition_log_density",
           "checked_structure", "validate_inputs"]


def _named_arrays(tree, prefix="", out=None):
    # [(name, array)] of a parameter tree, unboxed, in one walk (no checks: validate_params does those)
    out = [] if out is None else out
    for key, value in getval(tree).items():
        value = getval(value)
        if isinstance(value, dict):
            _named_arrays(value, f"{prefix}{key}/", out)
        else:
            out.append((f"{prefix}{key}", value))
    return out


#: (names, shapes, dtypes) of a parameter tree -> (dtype, Architecture): the structure of a tree is
#: checked once, not at every step. A cache of results only: a structure it has not seen is checked in full.
_CHECKED_STRUCTURES = {}


def checked_structure(params):
    """``(dtype, Architecture, arrays)`` of a parameter tree: its structure checked once per structure.

    Raises what :func:`iwae_np.validation.validate_params` raises for a tree that is not a model's parameters.
    """
    named = None
    if isinstance(getval(params), dict):
        try:
            named = _named_arrays(params)
            key = (tuple(n for n, _ in named), tuple(np.shape(v) for _, v in named),
                   tuple(np.result_type(v) for _, v in named))
        except (TypeError, ValueError, AttributeError):
            named = None
    found = _CHECKED_STRUCTURES.get(key) if named is not None else None
    if found is None:
        arrays = concrete(params)
        dtype, sizes = model_structure(arrays, check_values=False)  # every shape checked
        found = (dtype, Architecture(*sizes))
        if named is not None:
            _CHECKED_STRUCTURES[key] = found
        named = _named_arrays(arrays)
    return found[0], found[1], [v for _, v in named]


def validate_inputs(params, x, eps):
    """:func:`iwae_np.validation.validate_inputs` with the structure checked once per structure; returns ``x``."""
    dtype, arch, arrays = checked_structure(params)
    if not all_finite(arrays):
        validate_params(concrete(params))  # names the parameter
    x = validate_x(x, arch.x_dim, dtype)
    validate_eps(eps, arch.latent_dims, x.shape[0], dtype)
    return x


def _gaussian_layer(net, a):
    return mlp(net, a, ("mu", "log_sigma"))  # one autograd node: tanh_mlp, then dense per head


def sample_posterior(params, x, eps):
    """:func:`iwae_np.model.sample_posterior`: ``(h, q_stats)``."""
    h, q_stats, below = [], [], x
    for l in range(1, len(eps) + 1):
        mu, log_sigma = _gaussian_layer(params[f"q_h{l}"], below)
        below = reparameterize(mu, log_sigma, eps[l - 1])  # mu + sigma * eps, (k, batch, d_l)
        h.append(below)
        q_stats.append((mu, log_sigma))
    return h, q_stats


def _recognition_stats(params, x, h):
    below, stats = x, []
    for l in range(1, len(h) + 1):
        stats.append(_gaussian_layer(params[f"q_h{l}"], below))
        below = h[l - 1]
    return stats


def _generative_terms(params, x, h):
    L = len(h)
    (logits,) = mlp(params["p_x"], h[0], ("logits",))
    terms = {"log_p_x_given_h1": bernoulli_logit_log_likelihood(x, logits)}
    for l in range(1, L):
        mu, log_sigma = _gaussian_layer(params[f"p_h{l}"], h[l])
        terms[f"log_p_h{l}_given_h{l + 1}"] = diagonal_gaussian_log_density(h[l - 1], mu, log_sigma)
    terms[f"log_p_h{L}"] = standard_normal_log_density(h[L - 1])
    return terms


def _recognition_terms(h, q_stats):
    return {f"log_q_h{l}_given_{'x' if l == 1 else f'h{l - 1}'}": diagonal_gaussian_log_density(h[l - 1], mu, ls)
            for l, (mu, ls) in enumerate(q_stats, start=1)}


def _total(terms):
    first, *rest = terms.values()
    for term in rest:
        first = first + term
    return first


def recognition_log_density(params, x, h):
    """:func:`iwae_np.model.recognition_log_density`, ``(k, batch)``."""
    return _total(_recognition_terms(h, _recognition_stats(params, x, h)))


def log_weight_terms(params, x, eps, log_q_params=None, validate=True):
    """:func:`iwae_np.model.log_weight_terms`: ``{"h", "terms", "log_p", "log_q", "log_w"}``."""
    if validate:
        x = validate_inputs(params, x, eps)
    h, q_stats = sample_posterior(params, x, eps)
    if log_q_params is not None:
        q_stats = _recognition_stats(log_q_params, x, h)
    p_terms = _generative_terms(params, x, h)
    q_terms = _recognition_terms(h, q_stats)
    log_p, log_q = _total(p_terms), _total(q_terms)
    log_w = log_p - log_q
    if validate:
        check_log_weights_finite(log_w, {**p_terms, **q_terms}, q_stats)
    return {"h": h, "terms": {**p_terms, **q_terms}, "log_p": log_p, "log_q": log_q, "log_w": log_w}


def log_importance_weights(params, x, eps, log_q_params=None, validate=True):
    """:func:`iwae_np.model.log_importance_weights`, ``(k, batch)``."""
    return log_weight_terms(params, x, eps, log_q_params, validate)["log_w"]
