import math
import warnings

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special
from autograd import grad
from autograd.test_util import check_grads

from iwae_np.bounds import iwae_bound, vae_bound
from iwae_np.special import log_mean_exp, logsumexp, mean, sigmoid, softmax, softplus


def test_logsumexp_of_equal_large_values_is_exact():
    assert logsumexp(np.array([1000.0, 1000.0])) == 1000.0 + math.log(2.0)


def test_logsumexp_all_minus_inf_is_minus_inf_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = logsumexp(np.full((4, 3), -np.inf), axis=0)
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("a, expected", [
    ([np.inf, 1.0], np.inf),
    ([np.inf, -np.inf], np.inf),
    ([np.inf, np.inf], np.inf),
    ([-np.inf, 3.0], 3.0),
])
def test_logsumexp_with_infinite_entries_never_nan(a, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert logsumexp(np.array(a)) == expected


def test_logsumexp_shift_invariance(rng):
    a = rng.normal(size=(50, 7)) * 30
    for c in [-1e3, -3.5, 0.0, 7.25, 1e3]:
        np.testing.assert_allclose(logsumexp(a + c, axis=0), logsumexp(a, axis=0) + c, rtol=1e-14, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_logsumexp_agrees_with_scipy(rng, axis):
    a = rng.normal(size=(6, 9, 4)) * 100
    np.testing.assert_allclose(logsumexp(a, axis=axis), scipy.special.logsumexp(a, axis=axis), rtol=1e-14)
    np.testing.assert_allclose(logsumexp(a, axis=axis, keepdims=True),
                               scipy.special.logsumexp(a, axis=axis, keepdims=True), rtol=1e-14)


def test_logsumexp_against_naive_long_double(rng):
    # For |a| < 50 the naive formula cannot overflow in long double (80-bit on x86), and its
    # extra precision makes it a trustworthy reference for the float64 result.
    a = rng.uniform(-50, 50, size=(20, 5))
    naive = np.log(np.sum(np.exp(a.astype(np.longdouble)), axis=0))
    np.testing.assert_allclose(logsumexp(a, axis=0), naive.astype(np.float64), rtol=1e-15, atol=0)


@pytest.mark.parametrize("center", [1e4, -1e4])
def test_logsumexp_float32_near_1e4_no_nan_and_keeps_dtype(rng, center):
    a32 = (center + rng.normal(size=(5000, 3)) * 3).astype(np.float32)
    out = logsumexp(a32, axis=0)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    reference = scipy.special.logsumexp(a32.astype(np.float64), axis=0)
    # float32 rounding of a value near 1e4 is ~5e-4; the sum of 5000 terms adds ~1e-3.
    np.testing.assert_allclose(out, reference, rtol=2e-7 * 10)
    lme = log_mean_exp(a32, axis=0)
    assert lme.dtype == np.float32


def test_logsumexp_gradient_is_softmax(rng):
    a = rng.normal(size=(7, 3)) * 5
    c = rng.normal(size=3)
    g = grad(lambda a: anp.sum(c * logsumexp(a, axis=0)))(a)
    expected = c * scipy.special.softmax(a, axis=0)
    np.testing.assert_allclose(g, expected, rtol=1e-14, atol=1e-16)
    check_grads(lambda a: logsumexp(a, axis=1), modes=["rev"], order=1)(a)


def test_logsumexp_gradient_finite_for_all_minus_inf_and_large_values():
    a = np.array([[-np.inf, 1000.0], [-np.inf, 1000.0]])
    g = grad(lambda a: anp.sum(logsumexp(a, axis=0)))(a)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g[:, 0], 0.0)
    np.testing.assert_array_equal(g[:, 1], 0.5)


def test_softmax_sums_to_one_and_handles_large_values(rng):
    a = rng.normal(size=(50, 4)) * 1e3
    w = softmax(a, axis=0)
    np.testing.assert_allclose(np.sum(w, axis=0), 1.0, rtol=1e-14)
    assert np.all(np.isfinite(w))


def test_log_mean_exp_is_logsumexp_minus_log_n(rng):
    a = rng.normal(size=(13, 2))
    np.testing.assert_allclose(log_mean_exp(a, axis=0), np.log(np.mean(np.exp(a), axis=0)), rtol=1e-14)


def test_softplus_matches_logaddexp_over_a_wide_range():
    l = np.concatenate([np.linspace(-800, 800, 3201), [0.0, 1e-300, -1e-300, 36.0, -36.0]])
    # two different roundings of the same number: at most one unit in the last place apart
    np.testing.assert_allclose(softplus(l), np.logaddexp(0.0, l), rtol=np.finfo(float).eps, atol=0)
    assert np.all(np.isfinite(softplus(l)))


def test_softplus_gradient_is_sigmoid_and_float32_kept(rng):
    l = rng.normal(size=20) * 10
    g = grad(lambda l: anp.sum(softplus(l)))(l)
    np.testing.assert_allclose(g, scipy.special.expit(l), rtol=1e-15)
    check_grads(softplus, modes=["rev"], order=1)(l)
    l32 = l.astype(np.float32)
    assert softplus(l32).dtype == np.float32
    assert grad(lambda l: anp.sum(softplus(l)))(l32).dtype == np.float32
    assert sigmoid(l32).dtype == np.float32


def test_mean_keeps_float32_gradients_float32(rng):
    # regression: autograd's VJP of anp.mean returns float64 for float32 input, which silently
    # turned float32 models' gradients float64 downstream of the bounds
    lw = rng.normal(size=(5, 3)).astype(np.float32)
    assert grad(lambda a: anp.sum(mean(a, axis=0)))(lw).dtype == np.float32
    assert grad(lambda a: mean(a))(lw).dtype == np.float32
    np.testing.assert_allclose(mean(lw, axis=0), np.mean(lw, axis=0), rtol=1e-6)
    for bound in (vae_bound, iwae_bound):
        assert grad(lambda a: mean(bound(a)))(lw).dtype == np.float32


def test_logsumexp_gradient_is_the_exact_softmax_even_for_tiny_weights():
    # the definition keeps every weight (the fast engine drops those below eps^2: tests/test_fast_engine.py)
    a = np.array([0.0, -40.0, -150.0])
    g64 = grad(lambda v: logsumexp(v))(a)
    total = 1 + np.exp(-40.0) + np.exp(-150.0)
    np.testing.assert_allclose(g64, np.exp(a) / total, rtol=1e-15)
    assert g64[2] > 0
