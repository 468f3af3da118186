r"""The bounds against an exact log p(x) on models small enough to integrate.

A one-stochastic-layer model with latent dimension 1 or 2 and six Bernoulli pixels has

    p(x) = \int N(h; 0, I) p(x | h) dh,

which Gauss-Hermite quadrature computes to ~1e-12 (the integrand is smooth). The test computes
the decoder with plain numpy and scipy, independently of iwae_np, then checks with Monte Carlo
standard errors that E[L_1] < E[L_5] < E[L_50] <= log p(x) and that L_5000 is close to log p(x).
"""
import itertools

import numpy as np
import pytest
import scipy.special

from iwae_np.bounds import iwae_bound
from iwae_np.model import Architecture, init_params, log_importance_weights, sample_eps
from iwae_np.tree import tree_map

D = 6


def exact_log_px(params, x, n_nodes):
    """log p(x) by a tensor-product Gauss-Hermite rule; x (batch, D)."""
    d = params["p_x"]["hidden_0"]["W"].shape[0]
    t, w = np.polynomial.hermite.hermgauss(n_nodes)
    nodes = np.array(list(itertools.product(t, repeat=d))) * np.sqrt(2.0)  # (n^d, d): h = sqrt(2) t
    log_weights = np.sum(np.log(np.array(list(itertools.product(w, repeat=d)))), axis=1) - d / 2 * np.log(np.pi)
    net = params["p_x"]
    a = np.tanh(nodes @ net["hidden_0"]["W"] + net["hidden_0"]["b"])
    logits = a @ net["logits"]["W"] + net["logits"]["b"]  # (n^d, D)
    # log Bernoulli(x | sigmoid(l)) = x log_expit(l) + (1 - x) log_expit(-l)
    log_px_given_h = (x[:, None, :] * scipy.special.log_expit(logits)
                      + (1 - x[:, None, :]) * scipy.special.log_expit(-logits)).sum(-1)  # (batch, n^d)
    return scipy.special.logsumexp(log_weights + log_px_given_h, axis=1)


def tiny_model(d, seed):
    arch = Architecture(D, (d,), ((5,),), ((4,),))
    rng = np.random.default_rng(seed)
    params = init_params(arch, rng)
    # a decoder with some structure (weights gentle enough for the quadrature to converge to
    # ~1e-12), and a recognition model that is deliberately imperfect
    params = tree_map(lambda p: p + 0.5 * rng.standard_normal(p.shape), params)
    params["q_h1"] = tree_map(lambda p: p + 0.5 * rng.standard_normal(p.shape), params["q_h1"])
    # q a little wider than the prior, so the importance weights have finite variance and L_k
    # converges at the O(1/k) rate the test relies on; its means stay off the posterior's
    params["q_h1"]["log_sigma"]["W"] *= 0.0
    params["q_h1"]["log_sigma"]["b"] = np.full(d, 0.2)
    x = np.array(list(itertools.product([0.0, 1.0], repeat=D)))[rng.choice(2 ** D, size=4, replace=False)]
    return params, x


def replicated_log_weights(params, x, k, replicates, rng):
    """log w for `replicates` independent sets of k samples for each x: (k, replicates, batch)."""
    batch = x.shape[0]
    xr = np.tile(x, (replicates, 1))  # independent draws live in the batch axis
    eps = sample_eps(rng, params, k, replicates * batch)
    return log_importance_weights(params, xr, eps).reshape(k, replicates, batch)


@pytest.mark.parametrize("d, n_nodes", [(1, 100), (2, 180)])
def test_quadrature_converged(d, n_nodes):
    params, x = tiny_model(d, seed=d)
    np.testing.assert_allclose(exact_log_px(params, x, n_nodes), exact_log_px(params, x, int(n_nodes * 1.5)),
                               rtol=0, atol=1e-10)


def mean_and_se(values):
    return values.mean(0), values.std(0, ddof=1) / np.sqrt(values.shape[0])


@pytest.mark.parametrize("d, n_nodes", [(1, 100), (2, 180)])
def test_bounds_increase_with_k_and_approach_exact_log_likelihood(d, n_nodes):
    params, x = tiny_model(d, seed=d)
    log_px = exact_log_px(params, x, n_nodes)
    rng = np.random.default_rng(100 + d)
    # L_1, L_5 and L_50 from nested subsets of the same 50 samples: each is still an unbiased draw
    # of its own bound, and the paired differences have small standard errors.
    log_w = replicated_log_weights(params, x, 50, 10000, rng)  # (50, replicates, batch)
    L = {k: iwae_bound(log_w[:k].reshape(k, -1)).reshape(log_w.shape[1:]) for k in (1, 5, 50)}
    for small, large in [(1, 5), (5, 50)]:
        gap, se = mean_and_se(L[large] - L[small])
        assert np.all(gap > 4 * se), (small, large, gap, se)  # E[L_k] strictly increases, significantly
    mean50, se50 = mean_and_se(L[50])
    assert np.all(mean50 <= log_px + 4 * se50), (mean50, log_px, se50)  # never significantly above log p(x)
    # L_5000: within a few standard errors of log p(x) (its bias, ~Var[w/p(x)]/2k, is ~1e-5 here)
    lw = replicated_log_weights(params, x, 5000, 16, rng)
    mean5000, se5000 = mean_and_se(iwae_bound(lw.reshape(5000, -1)).reshape(16, -1))
    assert np.all(np.abs(mean5000 - log_px) <= 4 * se5000 + 1e-4), (mean5000 - log_px, se5000)
    # and far closer to it than the VAE bound is
    mean1, _ = mean_and_se(L[1])
    assert np.all(log_px - mean1 > 20 * np.abs(mean5000 - log_px))
