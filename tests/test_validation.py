"""Bad input gives a ValueError that names the problem."""
import numpy as np
import pytest

from iwae_np.bounds import iwae_objective
from iwae_np.gradients import iwae_gradient
from iwae_np.model import get_architecture, init_params, log_importance_weights, sample_eps

from conftest import TINY, small_problem


@pytest.fixture
def problem():
    return small_problem(TINY["two-layer"], k=3, batch=2)


def test_non_binary_x(problem):
    params, x, eps = problem
    x = x.copy()
    x[0, 0] = 0.5
    with pytest.raises(ValueError, match=r"binary.*0\.5"):
        log_importance_weights(params, x, eps)


def test_nan_x(problem):
    params, x, eps = problem
    x = x.copy()
    x[1, 3] = np.nan
    with pytest.raises(ValueError, match="binary"):
        iwae_objective(params, x, eps)


@pytest.mark.parametrize("shape", [(2, 11), (12,), (2, 12, 1), (0, 12)])
def test_x_of_wrong_shape(problem, shape):
    params, _, eps = problem
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 12\)"):
        log_importance_weights(params, np.zeros(shape), eps)


def test_eps_of_wrong_shape(problem):
    params, x, eps = problem
    with pytest.raises(ValueError, match=r"eps\[1\] \(noise of h2\) must have shape \(k, 2, 2\)"):
        log_importance_weights(params, x, [eps[0], eps[1][:, :, :1]])
    with pytest.raises(ValueError, match="one per stochastic layer"):
        log_importance_weights(params, x, eps[:1])
    with pytest.raises(ValueError, match="eps\\[1\\] has k = 2 samples but eps\\[0\\] has 3"):
        log_importance_weights(params, x, [eps[0], eps[1][:2]])
    with pytest.raises(ValueError, match="batch|shape"):
        log_importance_weights(params, x[:1], eps)


def test_k_less_than_one(problem):
    params, x, eps = problem
    with pytest.raises(ValueError, match="k must be >= 1"):
        log_importance_weights(params, x, [e[:0] for e in eps])
    for bad_k in [0, -1, 1.5]:
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            sample_eps(np.random.default_rng(0), params, bad_k, 2)


def test_eps_dtype_must_match_params(problem):
    params, x, eps = problem
    with pytest.raises(ValueError, match="eps\\[0\\] has dtype float32 but the parameters are float64"):
        log_importance_weights(params, x, [e.astype(np.float32) for e in eps])


def test_non_finite_eps(problem):
    params, x, eps = problem
    bad = eps[0].copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"eps\[0\] has non-finite values"):
        log_importance_weights(params, x, [bad, eps[1]])


def test_non_finite_parameters_named(problem):
    params, x, eps = problem
    params["p_h1"]["mu"]["b"] = params["p_h1"]["mu"]["b"].copy()
    params["p_h1"]["mu"]["b"][0] = np.nan
    with pytest.raises(ValueError, match="parameter 'p_h1/mu/b' has non-finite values"):
        iwae_gradient(params, x, eps)


def test_parameter_tree_of_wrong_structure(problem):
    params, x, eps = problem
    del params["p_h1"]
    with pytest.raises(ValueError, match="expected"):
        log_importance_weights(params, x, eps)
    with pytest.raises(ValueError, match="model parameter tree"):
        log_importance_weights({"W": np.zeros(3)}, x, eps)


def test_mixed_parameter_dtypes(problem):
    params, x, eps = problem
    params["p_x"]["logits"]["b"] = params["p_x"]["logits"]["b"].astype(np.float32)
    with pytest.raises(ValueError, match="mixed dtypes"):
        log_importance_weights(params, x, eps)


def test_bad_architecture_and_init_arguments():
    with pytest.raises(ValueError, match="unknown architecture 'three-layer'"):
        get_architecture("three-layer")
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        init_params("one-layer", 0)
    with pytest.raises(ValueError, match="float32 or float64"):
        init_params("one-layer", np.random.default_rng(0), dtype=np.float16)
    with pytest.raises(ValueError, match="x_mean must have shape"):
        init_params("one-layer", np.random.default_rng(0), x_mean=np.zeros(10))
