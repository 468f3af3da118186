r"""Surrogate values: what a library reports when it exposes a training loss instead of the bound.

A library that optimizes the IWAE bound often writes the loss whose *gradient* is the bound's and
whose *value* is not the bound (paper eq. 14; pythae 0.1.2, the AntixK/PyTorch-VAE family):

.. math::
    S_k = \sum_i \operatorname{stop}(\tilde w_i) \log w_i \quad\ne\quad
    \mathcal L_k = \log \frac1k \sum_i w_i,
    \qquad \nabla S_k = \sum_i \tilde w_i \nabla \log w_i = \nabla \mathcal L_k .

Reporting ``-loss`` as the bound is then a convention, not a mistake in the bound: replay and
statistical mode compare such a value with the surrogate of the same objective and, when it agrees,
say so (the gradients still have to agree with the bound's). Each surrogate is per example, ascent
sign (``-loss``), like the bounds of :data:`~iwae_np.oracle.quantities.BOUNDS`:

- ``iwae``: :math:`\sum_i \tilde w_i \log w_i`;
- ``miwae``: :math:`\frac1M \sum_m \sum_j \tilde w_{mj} \log w_{mj}`, weights normalized within group m
  (sample ``i = m K + j``), whose gradient is MIWAE's (Rainforth et al. 2018);
- ``ciwae``: :math:`\beta \frac1k \sum_i \log w_i + (1 - \beta) S_k`, whose gradient is CIWAE's.
"""
import numpy as np

from ..bounds import normalized_weights, vae_bound
from ..model import log_importance_weights, sample_eps
from .variants import tile_batch

__all__ = ["SURROGATES", "surrogate_value", "surrogate_key_name", "surrogate_reference"]


def _iwae(log_w, settings):
    return np.sum(np.asarray(normalized_weights(log_w)) * log_w, axis=0)


def _miwae(log_w, settings):
    M = settings["miwae_M"]
    k, B = np.shape(log_w)
    groups = np.reshape(log_w, (M, k // M, B))  # sample i = m K + j is in group m
    return np.mean([_iwae(g, settings) for g in groups], axis=0)


def _ciwae(log_w, settings):
    beta = settings["ciwae_beta"]
    return beta * np.asarray(vae_bound(log_w)) + (1 - beta) * _iwae(log_w, settings)


#: Bound name -> (function (log_w (k, B), settings) -> (B,), what it is), for the bounds a surrogate is common for.
SURROGATES = {
    "iwae": (_iwae, "the surrogate sum_i stop(w~_i) log w_i, whose gradient is IWAE's (paper eq. 14) but whose "
                    "value is not L_k"),
    "miwae": (_miwae, "the surrogate (1/M) sum_m sum_j stop(w~_mj) log w_mj (weights normalized within each "
                      "group), whose gradient is MIWAE's but whose value is not the bound"),
    "ciwae": (_ciwae, "the surrogate beta (1/k) sum_i log w_i + (1 - beta) sum_i stop(w~_i) log w_i, whose "
                      "gradient is CIWAE's but whose value is not the bound"),
}


def surrogate_key_name(key):
    """The bound name of ``bound.<name>`` / ``bound_mean.<name>`` when it has a surrogate, else None."""
    kind, _, name = key.partition(".")
    return name if kind in ("bound", "bound_mean") and name in SURROGATES else None


def surrogate_value(key, log_w, settings):
    """The surrogate's value for ``key`` (``bound.<name>`` (B,) or ``bound_mean.<name>`` ()) from ``log_w``."""
    per_example = SURROGATES[surrogate_key_name(key)][0](np.asarray(log_w, np.float64), settings)
    return per_example if key.startswith("bound.") else np.mean(per_example)


def surrogate_reference(params, x, settings, key, k, n_ref, rng):
    """iwae-np's own draws of the surrogate for ``key``: ``(mean, variance of the mean, degrees of freedom)``."""
    B = np.shape(x)[0]
    parts = []
    for start in range(0, n_ref, 200):  # 200 draws of the batch at a time
        n = min(200, n_ref - start)
        eps = sample_eps(rng, params, k, n * B)
        with np.errstate(all="ignore"):
            log_w = np.asarray(log_importance_weights(params, tile_batch(x, n), eps))  # (k, n B)
        parts.append(SURROGATES[surrogate_key_name(key)][0](log_w, settings).reshape(n, B))
    per_example = np.concatenate(parts)  # (n_ref, B)
    a = per_example if key.startswith("bound.") else per_example.mean(axis=1)
    return a.mean(axis=0), a.var(axis=0, ddof=1) / n_ref, n_ref - 1
