import math

import numpy as np
import scipy.special
import scipy.stats
from autograd.test_util import check_grads

from iwae_np.densities import bernoulli_log_likelihood, gaussian_log_density, standard_normal_log_density


def test_gaussian_log_density_matches_scipy(rng):
    h = rng.normal(size=(4, 3, 5))
    mu = rng.normal(size=(3, 5))
    log_sigma = rng.normal(size=(3, 5)) * 0.5
    expected = np.sum(scipy.stats.norm.logpdf(h, loc=mu, scale=np.exp(log_sigma)), axis=-1)
    np.testing.assert_allclose(gaussian_log_density(h, mu, log_sigma), expected, rtol=1e-14)


def test_standard_normal_is_gaussian_with_zero_mean_unit_sigma(rng):
    h = rng.normal(size=(2, 3, 4))
    np.testing.assert_allclose(standard_normal_log_density(h),
                               gaussian_log_density(h, np.zeros(4), np.zeros(4)), rtol=1e-15)
    np.testing.assert_allclose(standard_normal_log_density(np.zeros((1, 2))), -math.log(2 * math.pi), rtol=1e-15)


def test_bernoulli_matches_scipy_for_moderate_logits(rng):
    l = rng.normal(size=(3, 2, 10)) * 4
    x = (rng.uniform(size=(2, 10)) < 0.5).astype(float)
    expected = np.sum(scipy.stats.bernoulli.logpmf(x, scipy.special.expit(l)), axis=-1)
    np.testing.assert_allclose(bernoulli_log_likelihood(x, l), expected, rtol=1e-12)


def test_bernoulli_exact_at_extreme_logits():
    # x = 1, l = -800: log sigmoid(-800) = -800 - log1p(e^-800) = -800 exactly in float64;
    # x = 0, l = -800: log(1 - sigmoid(-800)) = -log1p(e^-800) = -0.0 (a clipped log(sigmoid) gives -inf or junk).
    l = np.array([[-800.0, -800.0, 800.0, 800.0, 40.0]])
    x = np.array([[1.0, 0.0, 1.0, 0.0, 1.0]])
    per_pixel = [bernoulli_log_likelihood(x[:, j:j + 1], l[:, j:j + 1])[0] for j in range(5)]
    assert per_pixel[0] == -800.0
    assert per_pixel[1] == 0.0
    assert per_pixel[2] == 0.0
    assert per_pixel[3] == -800.0
    # x = 1, l = 40: the exact value is -log1p(e^-40) = -4.2e-18; x*l - softplus(l) cancels to within
    # one unit in the last place of l (7e-15), which is the accuracy the formula promises.
    assert abs(per_pixel[4] - (-math.log1p(math.exp(-40.0)))) <= np.spacing(40.0)


def test_density_gradients_against_finite_differences(rng):
    h = rng.normal(size=(3, 2, 4))
    mu = rng.normal(size=(2, 4))
    log_sigma = rng.normal(size=(2, 4)) * 0.3
    check_grads(gaussian_log_density, modes=["rev"], order=1)(h, mu, log_sigma)
    x = (rng.uniform(size=(2, 4)) < 0.5).astype(float)
    check_grads(lambda l: bernoulli_log_likelihood(x, l), modes=["rev"], order=1)(rng.normal(size=(3, 2, 4)) * 3)


def test_densities_keep_float32(rng):
    h = rng.normal(size=(3, 2, 4)).astype(np.float32)
    mu = np.zeros((2, 4), np.float32)
    assert gaussian_log_density(h, mu, mu).dtype == np.float32
    assert standard_normal_log_density(h).dtype == np.float32
    assert bernoulli_log_likelihood(np.ones((2, 4), np.float32), h).dtype == np.float32
