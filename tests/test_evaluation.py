"""Evaluation: the streaming L_k estimate (chunk-size invariance, bounded memory, convergence to an
exact log p(x)) and active units against covariances computed in closed form."""
import math
import tracemalloc

import numpy as np
import pytest
import scipy.special

from iwae_np.experiments.evaluation import (MAX_CHUNK_ELEMENTS, active_units, iwae_log_likelihood, sample_chunk_size,
                                streaming_logsumexp_update)
from iwae_np.model import PRESETS, Architecture, init_params
from iwae_np.tree import tree_map

from test_exact_likelihood import exact_log_px, tiny_model


def streaming(a, chunk):
    m, s = np.full(a.shape[1], -np.inf), np.zeros(a.shape[1])
    for i in range(0, a.shape[0], chunk):
        m, s = streaming_logsumexp_update(m, s, a[i:i + chunk])
    with np.errstate(divide="ignore"):
        return np.where(np.isfinite(m), m, 0) + np.log(s)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_streaming_logsumexp_matches_scipy(chunk):
    rng = np.random.default_rng(0)
    a = rng.normal(scale=50, size=(20, 4)) - 300
    a[:, 1] += 2000  # large values must not overflow
    np.testing.assert_allclose(streaming(a, chunk), scipy.special.logsumexp(a, axis=0), rtol=1e-14, atol=0)


def test_streaming_logsumexp_special_values():
    inf = np.inf
    a = np.array([[-inf, 1000.0, -inf, 5.0], [-inf, 1000.0, 3.0, -inf], [-inf, -inf, -inf, -inf]])
    for chunk in (1, 2, 3):
        out = streaming(a, chunk)
        assert out[0] == -inf
        assert out[1] == 1000 + math.log(2)
        assert out[2] == 3.0 and out[3] == 5.0
    with np.errstate(invalid="raise"):  # no inf - inf on the way
        streaming(a, 1)


def small_model(arch, seed=0):
    rng = np.random.default_rng(seed)
    params = tree_map(lambda p: p + 0.3 * rng.standard_normal(p.shape), init_params(arch, rng))
    x = (rng.uniform(size=(9, arch.x_dim)) < 0.4).astype(np.float64)
    return params, x


@pytest.mark.parametrize("arch", [Architecture(12, (3,), ((6,),), ((6,),)),
                                  Architecture(12, (4, 2), ((6,), (5,)), ((5,), (6,)))], ids=["L1", "L2"])
def test_estimate_does_not_depend_on_the_chunk_size(arch):
    params, x = small_model(arch)
    ref = iwae_log_likelihood(params, x, np.random.default_rng(5), k=200, batch_size=4, chunk_size=200)
    for chunk in (1, 7, 64, None):
        out = iwae_log_likelihood(params, x, np.random.default_rng(5), k=200, batch_size=4, chunk_size=chunk)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=0)
    other_seed = iwae_log_likelihood(params, x, np.random.default_rng(6), k=200, batch_size=4)
    assert not np.allclose(other_seed, ref, rtol=1e-6)  # the noise does come from the generator


def test_float32_model_is_evaluated_in_float64_by_default():
    arch = Architecture(12, (3,), ((6,),), ((6,),))
    params, x = small_model(arch)
    p32 = tree_map(lambda p: p.astype(np.float32), params)
    ref = iwae_log_likelihood(tree_map(lambda p: p.astype(np.float64), p32), x, np.random.default_rng(1), k=50)
    out = iwae_log_likelihood(p32, x, np.random.default_rng(1), k=50)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, ref)
    kept = iwae_log_likelihood(p32, x, np.random.default_rng(1), k=50, dtype=None)
    assert not np.array_equal(kept, ref)  # float32 arithmetic rounds differently
    np.testing.assert_allclose(kept, ref, rtol=1e-5)


def test_estimate_converges_to_the_exact_log_likelihood():
    """L_5000 against Gauss-Hermite log p(x) (the core's exact-likelihood model), over 16 replicates.

    One draw of L_5000 may lie above log p(x) (it is a bound in expectation); the mean of the
    replicates must be within a few standard errors of it (the bias, ~Var[w/p(x)]/2k, is tiny).
    """
    params, x = tiny_model(1, seed=1)  # the core's model whose quadrature is checked converged
    exact = exact_log_px(params, x, 100)
    reps = 16
    est = iwae_log_likelihood(params, np.tile(x, (reps, 1)), np.random.default_rng(0), k=5000, batch_size=16,
                              chunk_size=700).reshape(reps, -1)
    mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(reps)
    assert np.all(se < 0.01)
    assert np.all(np.abs(mean - exact) <= 4 * se + 1e-4), (mean - exact, se)


def test_memory_stays_bounded_for_the_paper_model_at_k_5000():
    arch = PRESETS["one-layer"]
    assert sample_chunk_size(arch, 5000, 20) * 20 * 784 <= MAX_CHUNK_ELEMENTS
    assert sample_chunk_size(arch, 10 ** 9, 1) * 784 <= MAX_CHUNK_ELEMENTS
    assert sample_chunk_size(arch, 3, 20) == 3
    rng = np.random.default_rng(0)
    params = init_params(arch, rng)
    x = (rng.uniform(size=(4, 784)) < 0.2).astype(np.float64)
    tracemalloc.start()
    try:
        iwae_log_likelihood(params, x, rng, k=5000, batch_size=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # an unchunked pass would hold 4 * 5000 * 784 * 8 B = 125 MB per array and several of them
    assert peak < 1 << 30
    assert peak < 6 * MAX_CHUNK_ELEMENTS * 8


def test_bad_evaluation_input():
    params, x = small_model(Architecture(12, (3,), ((6,),), ((6,),)))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k must"):
        iwae_log_likelihood(params, x, rng, k=0)
    with pytest.raises(ValueError, match="binary"):
        iwae_log_likelihood(params, x * 0.5, rng, k=3)
    with pytest.raises(ValueError, match="Generator"):
        iwae_log_likelihood(params, x, 0, k=3)
    with pytest.raises(ValueError, match="at least 2"):
        active_units(params, x[:1], rng)


# ---------------------------------------------------------------------------------------------
# active units: encoders without hidden layers make the posterior means linear, so
# Cov_x(mu) has a closed form in terms of the data covariance


def linear_encoder_model(seed=0):
    arch = Architecture(12, (4, 3), ((), ()), ((5,), (5,)))
    rng = np.random.default_rng(seed)
    params = init_params(arch, rng)
    params = tree_map(lambda p: p + 0.5 * rng.standard_normal(p.shape), params)
    # binary data with correlated pixels: each row copies one of two prototypes, noisily
    protos = rng.uniform(size=(2, 12)) < 0.5
    z = rng.integers(2, size=3000)
    x = (rng.uniform(size=(3000, 12)) < np.where(protos[z], 0.8, 0.2)).astype(np.float64)
    return params, x


def test_active_units_of_linear_posterior_means_match_the_closed_form():
    params, x = linear_encoder_model()
    # sigma_1 = exp(-1000) = 0 exactly: the sampled h1 is the mean, so layer 2 is linear in x too
    params["q_h1"]["log_sigma"]["W"] = np.zeros_like(params["q_h1"]["log_sigma"]["W"])
    params["q_h1"]["log_sigma"]["b"] = np.full(4, -1000.0)
    S = np.cov(x.T)  # (12, 12), ddof = 1
    W1, W2 = params["q_h1"]["mu"]["W"], params["q_h2"]["mu"]["W"]
    expected1 = np.diag(W1.T @ S @ W1)
    expected2 = np.diag(W2.T @ W1.T @ S @ W1 @ W2)
    out = active_units(params, x, np.random.default_rng(0), batch_size=700)
    np.testing.assert_allclose(out["values"][0], expected1, rtol=1e-10)
    np.testing.assert_allclose(out["values"][1], expected2, rtol=1e-10)
    assert out["counts"] == [int(np.sum(expected1 > 0.01)), int(np.sum(expected2 > 0.01))]
    # shrink some columns so the threshold separates active from inactive units
    params["q_h1"]["mu"]["W"][:, :2] *= 1e-3
    out = active_units(params, x, np.random.default_rng(0))
    assert np.all(out["values"][0][:2] < 1e-5) and np.all(out["values"][0][2:] > 0.01)
    assert out["counts"][0] == 2 and out["threshold"] == 0.01


def test_active_units_of_layer_two_use_a_sampled_h1():
    """With sigma_1 = 1 the sample adds W2^T W2 to layer 2's covariance (in expectation)."""
    params, x = linear_encoder_model(seed=1)
    params["q_h1"]["log_sigma"]["W"] = np.zeros_like(params["q_h1"]["log_sigma"]["W"])
    params["q_h1"]["log_sigma"]["b"] = np.zeros(4)
    S = np.cov(x.T)
    W1, W2 = params["q_h1"]["mu"]["W"], params["q_h2"]["mu"]["W"]
    expected2 = np.diag(W2.T @ (W1.T @ S @ W1 + np.eye(4)) @ W2)
    without_noise = np.diag(W2.T @ W1.T @ S @ W1 @ W2)
    assert np.all(expected2 - without_noise > 0.1 * expected2)  # the noise term is not negligible
    out = active_units(params, x, np.random.default_rng(0))
    # sample variance over 3000 examples: relative standard error about sqrt(2 / 3000) = 2.6 %
    np.testing.assert_allclose(out["values"][1], expected2, rtol=0.12)
