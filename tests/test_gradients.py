import autograd.numpy as anp
import numpy as np
import pytest

from iwae_np.bounds import iwae_gradient, iwae_objective, vae_gradient, vae_objective
from iwae_np.verify.gradcheck import FD_RTOL, IDENTITY_RTOL, compare_gradients, finite_difference_gradient
from iwae_np.gradients import average_gradient, importance_weighted_gradient, log_weight_gradients
from iwae_np.tree import flatten_tree, tree_map

from conftest import TINY, small_problem

OBJECTIVES = {"vae": (vae_objective, vae_gradient), "iwae": (iwae_objective, iwae_gradient)}


def test_finite_difference_checker_is_accurate_and_can_fail():
    # a function with a known gradient: f(p) = sum(a * p^3) + sum(sin(q)), df = 3 a p^2, cos(q)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 2))
    tree = {"net": {"p": rng.normal(size=(3, 2)), "q": rng.normal(size=4)}}
    f = lambda t: np.sum(a * t["net"]["p"] ** 3) + np.sum(np.sin(t["net"]["q"]))
    exact = {"net": {"p": 3 * a * tree["net"]["p"] ** 2, "q": np.cos(tree["net"]["q"])}}
    fd = finite_difference_gradient(f, tree)
    for name, (abs_err, rel) in compare_gradients(exact, fd).items():
        assert rel < 1e-9, name
    wrong = tree_map(lambda g: g * (1 + 1e-5), exact)
    assert all(rel > FD_RTOL for _, rel in compare_gradients(wrong, fd).values())


@pytest.mark.parametrize("arch", ["one-layer", "two-layer"])
@pytest.mark.parametrize("objective", ["vae", "iwae"])
def test_autograd_matches_central_differences_for_every_parameter(arch, objective):
    params, x, eps = small_problem(TINY[arch], k=5, batch=3, seed=1)
    f, df = OBJECTIVES[objective]
    auto = df(params, x, eps)
    fd = finite_difference_gradient(lambda p: f(p, x, eps), params)
    errors = compare_gradients(auto, fd)
    assert list(errors) == list(flatten_tree(params))  # every parameter array is checked
    worst = max(rel for _, rel in errors.values())
    assert worst <= FD_RTOL, {n: e for n, e in errors.items() if e[1] > FD_RTOL}


@pytest.mark.parametrize("arch", ["one-layer", "two-layer"])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_iwae_gradient_equals_normalized_weight_identity(arch, k):
    # paper eq. 14: grad L_k = sum_i w~_i grad log w_i, with w~ held constant
    params, x, eps = small_problem(TINY[arch], k=k, batch=3, seed=2)
    auto = iwae_gradient(params, x, eps)
    log_w, per_sample = log_weight_gradients(params, x, eps)
    identity = importance_weighted_gradient(per_sample, log_w)
    for name, (abs_err, rel) in compare_gradients(auto, identity).items():
        assert rel <= IDENTITY_RTOL, (name, abs_err, rel)


@pytest.mark.parametrize("arch", ["one-layer", "two-layer"])
def test_vae_gradient_equals_mean_of_per_sample_gradients(arch):
    # paper eq. 7: (1/k) sum_i grad log w_i
    params, x, eps = small_problem(TINY[arch], k=5, batch=2, seed=3)
    log_w, per_sample = log_weight_gradients(params, x, eps)
    for name, (abs_err, rel) in compare_gradients(vae_gradient(params, x, eps),
                                                  average_gradient(per_sample, log_w)).items():
        assert rel <= IDENTITY_RTOL, (name, rel)


def test_identity_detects_uniform_weights_in_place_of_normalized_weights():
    # the identity test can fail: with weights 1/k in place of w~ (the VAE gradient) it is far off
    params, x, eps = small_problem(TINY["one-layer"], k=5, batch=3, seed=2)
    log_w, per_sample = log_weight_gradients(params, x, eps)
    errors = compare_gradients(iwae_gradient(params, x, eps), average_gradient(per_sample, log_w))
    assert max(rel for _, rel in errors.values()) > 1e-2


def test_per_sample_gradients_sum_to_gradient_of_sum():
    params, x, eps = small_problem(TINY["two-layer"], k=4, batch=2, seed=4)
    log_w, per_sample = log_weight_gradients(params, x, eps)
    from autograd import grad
    from iwae_np.model import log_importance_weights
    total = grad(lambda p: anp.sum(log_importance_weights(p, x, eps)))(params)
    for name, g in flatten_tree(per_sample).items():
        np.testing.assert_allclose(g.sum(axis=(0, 1)), flatten_tree(total)[name], rtol=1e-12, atol=1e-14)


def test_float32_gradients_stay_float32():
    params, x, eps = small_problem(TINY["two-layer"], k=5, batch=3, dtype=np.float32)
    for g in flatten_tree(iwae_gradient(params, x, eps)).values():
        assert g.dtype == np.float32
    for g in flatten_tree(vae_gradient(params, x, eps)).values():
        assert g.dtype == np.float32


@pytest.mark.parametrize("arch", ["one-layer", "two-layer"])
@pytest.mark.parametrize("objective", ["vae", "iwae"])
def test_fast_gradient_through_the_flat_buffer_equals_autograd_on_the_tree(arch, objective):
    # The fast engine differentiates one flat buffer behind the tree (one node per network); its
    # log weights differentiated on the nested dict itself are the reference: the same numbers bit for bit.
    from autograd import value_and_grad
    from iwae_np.fast import log_importance_weights
    from iwae_np.fast.flat import flat_buffer
    from iwae_np.fast.gradients import tree_value_and_grad
    from iwae_np.bounds import iwae_bound, vae_bound
    from iwae_np.special import mean
    params, x, eps = small_problem(TINY[arch], k=5, batch=3, seed=2)
    bound = {"vae": vae_bound, "iwae": iwae_bound}[objective]
    f = lambda p: mean(bound(log_importance_weights(p, x, eps)))  # noqa: E731
    value, grads = tree_value_and_grad(f)(params)
    ref_value, ref_grads = value_and_grad(f)(params)
    assert value == ref_value
    assert list(flatten_tree(grads)) == list(flatten_tree(params))
    for name, g in flatten_tree(ref_grads).items():
        np.testing.assert_array_equal(flatten_tree(grads)[name], g, err_msg=name)
    assert flat_buffer(grads) is not None  # one buffer: Adam takes no copy


def test_a_reused_gradient_buffer_starts_from_zero(monkeypatch):
    # the flat gradient buffer comes from a cache of work arrays: a layer a function does not use must get
    # zeros, not what the previous gradient left there
    from iwae_np.fast.gradients import tree_grad
    params, x, eps = small_problem(TINY["one-layer"], k=2, batch=2, seed=3)
    big = tree_map(lambda p: np.tile(p, (1,) * (np.ndim(p) - 1) + (1,)), params)
    everything = tree_grad(lambda p: iwae_objective(p, x, eps))
    only_p = tree_grad(lambda p: anp.sum(p["p_x"]["logits"]["b"] ** 2))
    for _ in range(3):
        assert any(np.any(g != 0) for g in flatten_tree(everything(big)["q_h1"]).values())
        assert all(np.all(g == 0) for g in flatten_tree(only_p(big)["q_h1"]).values())
