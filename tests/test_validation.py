"""Bad input gives a ValueError that names the problem."""
import numpy as np
import pytest

from iwae_np.bounds import (ciwae_bound, iwae_bound, iwae_objective, miwae_bound, normalized_weights, renyi_bound,
                            vae_bound)
from iwae_np.bounds import iwae_gradient
from iwae_np.model import architecture_of, get_architecture, init_params, log_importance_weights, sample_eps
from iwae_np.tree import flatten_tree

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


# ---------------------------------------------------------------------------------------------
# the library API cases of issue 11: each a ValueError naming the problem, not a KeyError,
# IndexError, NaN or a silent -inf


@pytest.mark.parametrize("network, layer, key", [("p_x", "logits", "b"), ("q_h2", "hidden_0", "W"),
                                                 ("q_h1", "log_sigma", None), ("p_h1", "mu", None)])
def test_a_missing_leaf_or_head_is_named(problem, network, layer, key):
    # catches: architecture_of / dense reading params[net][layer]["b"] unchecked (KeyError: 'b')
    params, x, eps = problem
    if key is None:
        del params[network][layer]
        message = f"params\\['{network}'\\] has no layer '{layer}'"
    else:
        del params[network][layer][key]
        message = f"params\\['{network}'\\]\\['{layer}'\\] must be a dict with exactly the arrays 'W' and 'b'"
    with pytest.raises(ValueError, match=message):
        log_importance_weights(params, x, eps)
    with pytest.raises(ValueError, match=message):
        architecture_of(params)


@pytest.mark.parametrize("bad", ["scalar", "vector", "wrong input width", "heads disagree"])
def test_a_mis_shaped_weight_is_named(problem, bad):
    # catches: np.shape(W)[1] on a scalar W (IndexError), and shapes that only fail deep inside a matmul
    params, x, eps = problem
    if bad == "scalar":
        params["q_h1"]["mu"]["W"] = np.float64(0.5)
        message = r"params\['q_h1'\]\['mu'\]: W must be a 2-D"
    elif bad == "vector":
        params["p_x"]["hidden_0"]["W"] = params["p_x"]["hidden_0"]["W"][0]
        message = r"params\['p_x'\]\['hidden_0'\]: W must be a 2-D"
    elif bad == "wrong input width":
        params["p_x"]["hidden_0"]["W"] = np.zeros((7, params["p_x"]["hidden_0"]["W"].shape[1]))
        message = r"params\['p_x'\] takes inputs of width 7 but its input h1 has 4 units"
    else:
        params["q_h2"]["log_sigma"]["W"] = params["q_h2"]["log_sigma"]["W"][:, :1]
        params["q_h2"]["log_sigma"]["b"] = params["q_h2"]["log_sigma"]["b"][:1]
        message = r"params\['q_h2'\]\['log_sigma'\] gives 1 units, h2 has 2"
    with pytest.raises(ValueError, match=message):
        log_importance_weights(params, x, eps)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 0.0, -1e-3, None])
def test_train_step_refuses_a_learning_rate_that_is_not_a_positive_number(problem, lr):
    # catches: lr = nan turning every parameter into NaN without a word
    params, x, _ = problem
    from iwae_np.experiments.training import train_step
    from iwae_np.optimizers import adam_init
    before = {n: v.copy() for n, v in flatten_tree(params).items()}
    with pytest.raises(ValueError, match=f"learning rate lr must be a finite number > 0, got {lr!r}"):
        train_step(params, adam_init(params), x, np.random.default_rng(0), k=3, lr=lr)
    assert all(np.array_equal(v, before[n]) for n, v in flatten_tree(params).items())
    with pytest.raises(ValueError, match="Adam's settings must be finite"):
        train_step(params, adam_init(params), x, np.random.default_rng(0), k=3, lr=1e-3,
                   adam={"b1": float("nan"), "b2": 0.999, "eps": 1e-4})


@pytest.mark.parametrize("fn", [vae_bound, iwae_bound, normalized_weights, lambda lw: miwae_bound(lw, 1),
                                lambda lw: ciwae_bound(lw, 0.5), lambda lw: renyi_bound(lw, 0.5),
                                lambda lw: renyi_bound(lw, 1.0)],
                         ids=["vae", "iwae", "normalized_weights", "miwae", "ciwae", "renyi", "renyi-1"])
@pytest.mark.parametrize("shape", [(0, 3), (4,), (4, 3, 2), ()])
def test_bounds_refuse_log_w_that_is_not_k_by_batch(fn, shape):
    # catches: vae_bound of an empty log_w returning NaN; a 1-D log_w reduced to a scalar; a 3-D one to (batch, x)
    with pytest.raises(ValueError, match=r"log_w must have shape \(k, batch\) with k >= 1 samples, got shape"):
        fn(np.zeros(shape))


@pytest.mark.parametrize("batch", [-2, 0, 1.5, True])
def test_sample_eps_refuses_a_bad_batch(batch):
    # catches: numpy's "negative dimensions are not allowed" for batch = -2, and an empty eps for batch = 0
    with pytest.raises(ValueError, match=f"batch must be an integer >= 1, got {batch!r}"):
        sample_eps(np.random.default_rng(0), "one-layer", 3, batch)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("arch", ["one-layer", "two-layer"])
def test_float32_overflow_of_the_log_weights_is_an_error_not_minus_infinity(arch):
    # log_sigma = +45 in q: sigma = 3.5e19, h ~ 1e19, h^2 overflows float32 (3.4e38): log p(h) = -inf.
    # Unchecked, L = -inf and autograd's gradient is exactly zero (the logsumexp VJP of -inf), which
    # looks like a converged model; the same parameters in float64 are finite.
    from iwae_np.bounds import iwae_objective
    from iwae_np.model import NonFiniteLogWeightError
    params, x, eps = small_problem(TINY[arch], k=5, batch=3, dtype=np.float32)
    params["q_h1"]["log_sigma"]["b"] = params["q_h1"]["log_sigma"]["b"] + np.float32(45)
    with pytest.raises(NonFiniteLogWeightError, match=r"log weights are not finite in float32: log_p_h1.* is -inf"):
        iwae_objective(params, x, eps)
    with pytest.raises(NonFiniteLogWeightError, match="largest log_sigma of q is 4[5-7]"):
        iwae_gradient(params, x, eps)
    p64 = {n: {l: {k: v.astype(np.float64) for k, v in d.items()} for l, d in net.items()} for n, net in params.items()}
    assert np.isfinite(iwae_objective(p64, x.astype(np.float64), [e.astype(np.float64) for e in eps]))


# issue 20, item 5: the library's public functions check what train_step checked for them


@pytest.mark.parametrize("engine", ["definition", "fast"])
@pytest.mark.parametrize("kwargs, message", [
    ({"lr": float("nan")}, "learning rate lr must be a finite number > 0, got nan"),
    ({"lr": float("inf")}, "learning rate lr must be a finite number > 0, got inf"),
    ({"lr": -1.0}, "learning rate lr must be a finite number > 0, got -1.0"),
    ({"eps": 0.0}, "Adam's eps must be a finite number > 0, got 0.0"),
    ({"b1": 1.0}, r"Adam's b1 must be a number in \[0, 1\), got 1.0"),
    ({"b2": float("nan")}, r"Adam's b2 must be a number in \[0, 1\), got nan"),
    ({"t": -1}, "step count t must be an integer >= 0, got -1"),
    ({"t": 1.5}, "step count t must be an integer >= 0, got 1.5"),
])
def test_adam_update_refuses_settings_that_give_nan_or_an_uphill_step(problem, engine, kwargs, message):
    # catches: lr = nan giving NaN parameters, lr = -1 a step uphill, eps = 0 a 0/0 where a gradient is 0,
    # b1 = 1 and t = -1 a ZeroDivisionError, in the function users call directly (train_step checked lr only)
    from iwae_np.engines import get_engine
    params = problem[0]
    update, init = get_engine(engine).adam_update, get_engine(engine).adam_init
    state, kwargs = init(params), dict(kwargs)
    if "t" in kwargs:
        state = dict(state, t=kwargs.pop("t"))
    grads = {n: {l: {k: np.zeros_like(v) for k, v in layer.items()} for l, layer in net.items()}
             for n, net in params.items()}
    with pytest.raises(ValueError, match=message):
        update(params, grads, state, **{"lr": 1e-3, **kwargs})


@pytest.mark.parametrize("bad, message", [
    ({"dtype": np.int64}, "dtype must be float32 or float64"),
    ({"k": float("inf")}, "k must be an integer >= 1, got inf"),
    ({"k": float("nan")}, "k must be an integer >= 1, got nan"),
])
def test_sample_eps_refuses_integer_noise_and_infinite_k(bad, message):
    # catches: integer "noise" (standard normals cast to int64: mostly 0), OverflowError for k = inf
    kwargs = {"k": 3, "batch": 2, **bad}
    with pytest.raises(ValueError, match=message):
        sample_eps(np.random.default_rng(0), "one-layer", **kwargs)


@pytest.mark.parametrize("log_w", [np.array([["a", "b"]]), np.array([[1 + 2j, 0j]]), [[None, 1.0]]])
def test_bounds_refuse_log_weights_that_are_not_real_numbers(log_w):
    # catches: numpy's own "ufunc 'maximum' did not contain a loop" for strings; complex weights silently bounded
    with pytest.raises(ValueError, match="log_w must be an array of real numbers, got dtype"):
        iwae_bound(log_w)
