import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from iwae_np.bounds import iwae_bound, vae_bound
from iwae_np.model import (PRESETS, Architecture, architecture_of, get_architecture, init_params,
                           log_importance_weights, log_weight_terms, network_names, sample_eps,
                           sample_generative, sample_posterior)
from iwae_np.tree import flatten_tree

from conftest import TINY, small_problem


def test_parameter_names_are_stable():
    # These names go into checkpoints and oracle fixtures: changing them breaks users' files.
    one = list(flatten_tree(init_params("one-layer", np.random.default_rng(0))))
    assert one == [f"{net}/{layer}/{w}" for net, layers in [
        ("q_h1", ["hidden_0", "hidden_1", "mu", "log_sigma"]),
        ("p_x", ["hidden_0", "hidden_1", "logits"])] for layer in layers for w in ["W", "b"]]
    two = init_params("two-layer", np.random.default_rng(0))
    assert list(two) == ["q_h1", "q_h2", "p_h1", "p_x"]
    assert network_names(PRESETS["two-layer"]) == ["q_h1", "q_h2", "p_h1", "p_x"]


@pytest.mark.parametrize("name", ["one-layer", "two-layer"])
def test_paper_architectures_shapes(name):
    arch = PRESETS[name]
    params = init_params(arch, np.random.default_rng(1))
    assert architecture_of(params) == arch
    assert params["q_h1"]["hidden_0"]["W"].shape == (784, 200)
    assert params["p_x"]["logits"]["W"].shape == (200, 784)
    if name == "two-layer":
        assert params["q_h2"]["hidden_0"]["W"].shape == (100, 100)
        assert params["q_h2"]["mu"]["W"].shape == (100, 50)
        assert params["p_h1"]["hidden_0"]["W"].shape == (50, 100)
        assert params["p_h1"]["mu"]["W"].shape == (100, 100)
    n = sum(v.size for v in flatten_tree(params).values())

    def mlp(n_in, hidden, heads):  # weights + biases of a tanh MLP with linear heads
        sizes, total = [n_in, *hidden], 0
        for a, b in zip(sizes, sizes[1:]):
            total += a * b + b
        return total + sum(sizes[-1] * h + h for h in heads)

    expected = {"one-layer": mlp(784, [200, 200], [50, 50]) + mlp(50, [200, 200], [784]),
                "two-layer": mlp(784, [200, 200], [100, 100]) + mlp(100, [100, 100], [50, 50])
                + mlp(50, [100, 100], [100, 100]) + mlp(100, [200, 200], [784])}[name]
    assert n == expected


def test_glorot_init_bounds_zero_biases_and_output_bias(rng):
    arch = PRESETS["one-layer"]
    x_mean = rng.uniform(0, 1, size=784)
    x_mean[:5] = [0.0, 1.0, 0.0005, 0.9995, 0.5]
    params = init_params(arch, rng, x_mean=x_mean)
    for name, v in flatten_tree(params).items():
        if name.endswith("/W"):
            r = math.sqrt(6 / sum(v.shape))
            assert np.max(np.abs(v)) <= r and np.max(np.abs(v)) > 0.9 * r  # uses the range
        elif name != "p_x/logits/b":
            assert np.all(v == 0)
    b = params["p_x"]["logits"]["b"]
    p = np.clip(x_mean, 0.001, 0.999)
    np.testing.assert_allclose(b, np.log(p / (1 - p)), rtol=1e-14)
    assert abs(b[0] - math.log(0.001 / 0.999)) < 1e-12
    # layers differ from each other (no shared seed per layer) and init is reproducible
    W = params["q_h1"]["hidden_1"]["W"]
    assert not np.allclose(W, params["p_x"]["hidden_1"]["W"])
    again = init_params(arch, np.random.default_rng(20160201), x_mean=x_mean)
    for (n1, a), (n2, c) in zip(flatten_tree(init_params(arch, np.random.default_rng(20160201), x_mean=x_mean)).items(),
                                flatten_tree(again).items()):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", ["one-layer", "two-layer"])
def test_log_weight_terms_shapes_and_sum(name):
    params, x, eps = small_problem(TINY[name], k=7, batch=3)
    out = log_weight_terms(params, x, eps)
    L = TINY[name].n_stochastic
    assert [h.shape for h in out["h"]] == [(7, 3, d) for d in TINY[name].latent_dims]
    expected_terms = (["log_p_x_given_h1"] + [f"log_p_h{l}_given_h{l + 1}" for l in range(1, L)]
                      + [f"log_p_h{L}", "log_q_h1_given_x"] + [f"log_q_h{l + 1}_given_h{l}" for l in range(1, L)])
    assert list(out["terms"]) == expected_terms
    for t in out["terms"].values():
        assert t.shape == (7, 3)
    p = sum(v for n, v in out["terms"].items() if n.startswith("log_p"))
    q = sum(v for n, v in out["terms"].items() if n.startswith("log_q"))
    np.testing.assert_allclose(out["log_w"], p - q, rtol=1e-14)


def reference_log_weight_terms(params, x, eps):
    """``(h, terms)`` of the L-layer model written out here, independently of iwae_np's layers and densities:
    plain numpy for the tanh MLPs and heads, ``scipy.stats`` for every density (``norm.logpdf`` with
    ``scale = exp(log_sigma)``: the head is the log *standard deviation*, paper appendix C)."""
    def mlp(net, a):
        i = 0
        while f"hidden_{i}" in net:
            a = np.tanh(a @ net[f"hidden_{i}"]["W"] + net[f"hidden_{i}"]["b"])
            i += 1
        return a

    def heads(net, a, *names):
        top = mlp(net, a)
        return [top @ net[n]["W"] + net[n]["b"] for n in names]

    L, h, terms, below = len(eps), [], {}, x
    for l in range(1, L + 1):  # h_l = mu + sigma * eps, sampled from q(h_l | h_{l-1}), h_0 = x
        mu, log_sigma = heads(params[f"q_h{l}"], below, "mu", "log_sigma")
        below = mu + np.exp(log_sigma) * eps[l - 1]
        h.append(below)
        given = "x" if l == 1 else f"h{l - 1}"
        terms[f"log_q_h{l}_given_{given}"] = scipy.stats.norm.logpdf(below, mu, np.exp(log_sigma)).sum(-1)
    (logits,) = heads(params["p_x"], h[0], "logits")
    terms["log_p_x_given_h1"] = scipy.stats.bernoulli.logpmf(x, scipy.special.expit(logits)).sum(-1)
    for l in range(1, L):
        mu, log_sigma = heads(params[f"p_h{l}"], h[l], "mu", "log_sigma")
        terms[f"log_p_h{l}_given_h{l + 1}"] = scipy.stats.norm.logpdf(h[l - 1], mu, np.exp(log_sigma)).sum(-1)
    terms[f"log_p_h{L}"] = scipy.stats.norm.logpdf(h[L - 1]).sum(-1)
    return h, terms


@pytest.mark.parametrize("name", ["one-layer", "two-layer"])
def test_log_weights_against_an_independent_reference(name):
    """Every latent and every term of log w against :func:`reference_log_weight_terms` (numpy + scipy.stats).

    Catches: the log_sigma head used as a log variance (sigma = exp(head / 2) in sampling and densities
    alike: internally consistent, so gradient and identity checks pass), x and 1 - x swapped, log 2 pi
    dropped, a wrong prior, a layer wired to the wrong input.
    """
    params, x, eps = small_problem(TINY[name], k=4, batch=3)
    for net in params.values():  # spread log_sigma so that sigma and sigma^2 differ clearly
        if "log_sigma" in net:
            net["log_sigma"]["b"] = net["log_sigma"]["b"] + np.linspace(-1.5, 1.0, net["log_sigma"]["b"].size)
    out = log_weight_terms(params, x, eps)
    h, terms = reference_log_weight_terms(params, x, eps)
    for got, want in zip(out["h"], h):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert sorted(out["terms"]) == sorted(terms)
    for key, want in terms.items():
        np.testing.assert_allclose(out["terms"][key], want, rtol=1e-10, atol=0, err_msg=key)
    log_w = sum(t for n, t in terms.items() if n.startswith("log_p")) - sum(
        t for n, t in terms.items() if n.startswith("log_q"))
    np.testing.assert_allclose(out["log_w"], log_w, rtol=1e-10)


def test_reparameterization_and_recognition_runs_once_per_x():
    params, x, eps = small_problem(TINY["two-layer"], k=4, batch=3)
    h, q_stats = sample_posterior(params, x, eps)
    ref_h, _ = reference_log_weight_terms(params, x, eps)  # sigma from the hand-written network, not from q_stats
    assert q_stats[0][0].shape == (3, 4)  # q(h1|x) computed per example, not per sample
    np.testing.assert_allclose(h[0], ref_h[0], rtol=1e-12, atol=1e-14)
    assert q_stats[1][0].shape == (4, 3, 2)  # q(h2|h1) depends on each sample of h1
    np.testing.assert_allclose(h[1], ref_h[1], rtol=1e-12, atol=1e-14)


def test_log_q_terms_at_the_mean_noise_are_the_gaussian_normalizer():
    params, x, eps = small_problem(TINY["one-layer"], k=2, batch=3)
    eps = [np.zeros_like(e) for e in eps]
    out = log_weight_terms(params, x, eps)
    _, q_stats = sample_posterior(params, x, eps)
    log_sigma = q_stats[0][1]
    expected = -0.5 * np.sum(math.log(2 * math.pi) + 2 * log_sigma, axis=-1)
    np.testing.assert_allclose(out["terms"]["log_q_h1_given_x"], np.broadcast_to(expected, (2, 3)), rtol=1e-14)


def test_log_q_params_equal_to_params_changes_nothing():
    params, x, eps = small_problem(TINY["two-layer"], k=3, batch=2)
    np.testing.assert_array_equal(log_importance_weights(params, x, eps, log_q_params=params),
                                  log_importance_weights(params, x, eps))


def test_any_number_of_stochastic_layers():
    arch = Architecture(10, (5, 4, 3), ((8,), (6,), (5,)), ((8,), (6, 6), (5,)))
    params, x, eps = small_problem(arch, k=6, batch=2)
    assert list(params) == ["q_h1", "q_h2", "q_h3", "p_h2", "p_h1", "p_x"]
    out = log_weight_terms(params, x, eps)
    assert "log_p_h2_given_h3" in out["terms"] and "log_q_h3_given_h2" in out["terms"]
    assert out["log_w"].shape == (6, 2)
    assert architecture_of(params) == arch


def test_samples_are_independent_across_the_k_axis():
    # permuting the noise over samples permutes log w the same way: no cross-sample mixing
    params, x, eps = small_problem(TINY["two-layer"], k=5, batch=3)
    perm = np.array([3, 0, 4, 1, 2])
    lw = log_importance_weights(params, x, eps)
    np.testing.assert_allclose(log_importance_weights(params, x, [e[perm] for e in eps]), lw[perm], rtol=1e-14)


def test_l1_equals_vae_with_k1():
    params, x, eps = small_problem(TINY["two-layer"], k=1, batch=4)
    lw = log_importance_weights(params, x, eps)
    np.testing.assert_allclose(iwae_bound(lw), vae_bound(lw), rtol=1e-15, atol=0)


def test_float32_end_to_end_keeps_dtype():
    params, x, eps = small_problem(TINY["two-layer"], k=5, batch=3, dtype=np.float32)
    assert all(e.dtype == np.float32 for e in eps)
    out = log_weight_terms(params, x, eps)
    assert out["log_w"].dtype == np.float32
    assert all(t.dtype == np.float32 for t in out["terms"].values())
    assert iwae_bound(out["log_w"]).dtype == np.float32


def test_sample_generative():
    params = init_params("two-layer", np.random.default_rng(3), dtype=np.float32)
    s = sample_generative(params, np.random.default_rng(4), 6)
    assert [h.shape for h in s["h"]] == [(6, 100), (6, 50)]
    assert s["x"].shape == s["x_mean"].shape == (6, 784)
    assert s["x_mean"].dtype == np.float32
    assert np.all((s["x"] == 0) | (s["x"] == 1))
    assert np.all((s["x_mean"] > 0) & (s["x_mean"] < 1))
    again = sample_generative(params, np.random.default_rng(4), 6)
    np.testing.assert_array_equal(s["x"], again["x"])


def test_sample_eps_shapes_and_reproducible():
    e1 = sample_eps(np.random.default_rng(5), "two-layer", 3, 2)
    e2 = sample_eps(np.random.default_rng(5), PRESETS["two-layer"], 3, 2)
    assert [e.shape for e in e1] == [(3, 2, 100), (3, 2, 50)]
    for a, b in zip(e1, e2):
        np.testing.assert_array_equal(a, b)
    assert get_architecture(2) == PRESETS["two-layer"]


def test_the_structure_is_checked_once_but_values_every_time():
    # validation is cached per structure (names, shapes, dtypes); the values (finite parameters, binary x,
    # finite noise) are checked at every call: a NaN after many good calls is still named
    from iwae_np.tree import tree_map
    params, x, eps = small_problem(TINY["one-layer"], k=2, batch=3, seed=4)
    for _ in range(3):
        log_importance_weights(params, x, eps)
    bad = tree_map(np.copy, params)
    bad["p_x"]["logits"]["W"][0, 0] = np.nan
    with pytest.raises(ValueError, match="'p_x/logits/W' has non-finite"):
        log_importance_weights(bad, x, eps)
    wrong = tree_map(np.copy, params)
    wrong["q_h1"]["mu"]["b"] = np.zeros(7)  # same names, another shape: a structure not seen before
    with pytest.raises(ValueError):
        log_importance_weights(wrong, x, eps)
    with pytest.raises(ValueError, match="binary"):
        log_importance_weights(params, x * 0.5, eps)
