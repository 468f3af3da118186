import numpy as np
import pytest

from iwae_np.optimizers import adam_init, adam_update
from iwae_np.experiments.training import train_step
from iwae_np.tree import flatten_tree, tree_map

from conftest import TINY, small_problem


def quadratic_problem():
    rng = np.random.default_rng(0)
    target = {"a": {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}, "c": {"W": rng.normal(size=4)}}
    scale = {"a": {"W": rng.uniform(0.5, 5, (3, 2)), "b": rng.uniform(0.5, 5, 2)}, "c": {"W": rng.uniform(0.5, 5, 4)}}
    loss = lambda p: sum(np.sum(s * (v - t) ** 2) for v, t, s in
                         zip(flatten_tree(p).values(), flatten_tree(target).values(), flatten_tree(scale).values()))
    grad = lambda p: tree_map(lambda v, t, s: 2 * s * (v - t), p, target, scale)
    return target, loss, grad


def test_adam_minimizes_a_quadratic_and_keeps_structure():
    target, loss, grad = quadratic_problem()
    params = tree_map(np.zeros_like, target)
    state = adam_init(params)
    start = loss(params)
    for t in range(3000):
        lr = 0.05 * 0.998 ** t
        params, state = adam_update(params, grad(params), state, lr)
    assert list(flatten_tree(params)) == list(flatten_tree(target))
    assert state["t"] == 3000
    assert loss(params) < 1e-10 * start
    for v, t in zip(flatten_tree(params).values(), flatten_tree(target).values()):
        np.testing.assert_allclose(v, t, atol=1e-5)


def test_first_adam_step_by_hand():
    # after one step m_hat = g and v_hat = g^2, so the step is lr * g / (|g| + eps)
    params = {"l": {"W": np.array([1.0, -2.0, 3.0])}}
    g = {"l": {"W": np.array([0.5, -1e-4, 0.0])}}
    new, state = adam_update(params, g, adam_init(params), lr=0.1)
    expected = params["l"]["W"] - 0.1 * g["l"]["W"] / (np.abs(g["l"]["W"]) + 1e-4)
    np.testing.assert_allclose(new["l"]["W"], expected, rtol=1e-12)
    np.testing.assert_array_equal(params["l"]["W"], [1.0, -2.0, 3.0])  # not modified in place


def test_adam_rejects_a_gradient_tree_that_does_not_match():
    params = {"l": {"W": np.zeros((2, 2)), "b": np.zeros(2)}}
    state = adam_init(params)
    with pytest.raises(ValueError, match="missing \\['l/b'\\]"):
        adam_update(params, {"l": {"W": np.zeros((2, 2))}}, state, 0.1)
    with pytest.raises(ValueError, match="'l/W' has shape \\(2, 3\\)"):
        adam_update(params, {"l": {"W": np.zeros((2, 3)), "b": np.zeros(2)}}, state, 0.1)
    with pytest.raises(ValueError, match="gradient of 'l/b' is not finite"):
        adam_update(params, {"l": {"W": np.zeros((2, 2)), "b": np.array([0.0, np.nan])}}, state, 0.1)


def test_adam_keeps_float32():
    params = {"l": {"W": np.ones(3, np.float32)}}
    new, state = adam_update(params, {"l": {"W": np.full(3, 0.3, np.float32)}}, adam_init(params), 1e-3)
    assert new["l"]["W"].dtype == np.float32
    assert state["m"]["l"]["W"].dtype == np.float32 and state["v"]["l"]["W"].dtype == np.float32


@pytest.mark.parametrize("objective", ["vae", "iwae"])
def test_train_step_increases_the_bound_on_a_fixed_batch(objective):
    params, x, _ = small_problem(TINY["two-layer"], k=1, batch=8, seed=5)
    state = adam_init(params)
    rng = np.random.default_rng(6)
    bounds = []
    for _ in range(200):
        params, state, b = train_step(params, state, x, rng, k=5, lr=3e-3, objective=objective)
        bounds.append(b)
    assert np.mean(bounds[-20:]) > np.mean(bounds[:20]) + 1.0
    with pytest.raises(ValueError, match="unknown objective"):
        train_step(params, state, x, rng, k=5, lr=1e-3, objective="elbo")


def test_train_step_float32_reproducible():
    params, x, _ = small_problem(TINY["one-layer"], k=1, batch=4, seed=7, dtype=np.float32)
    runs = []
    for _ in range(2):
        p, s, rng = params, adam_init(params), np.random.default_rng(8)
        for _ in range(5):
            p, s, _ = train_step(p, s, x, rng, k=3, lr=1e-3)
        runs.append(p)
    for a, b in zip(flatten_tree(runs[0]).values(), flatten_tree(runs[1]).values()):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def textbook_adam(theta, grads, lr, b1=0.9, b2=0.999, eps=1e-4):
    """Kingma & Ba (2015), Algorithm 1, line by line, on one array: the trajectory of theta."""
    m, v, out = np.zeros_like(theta), np.zeros_like(theta), []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta)
    return out


def test_adam_follows_kingma_and_ba_step_by_step():
    # catches: dropping the bias corrections (steps ~3x too large at first, and off for the first
    # thousand or so steps), eps inside the square root, the corrections applied to m or v only
    rng = np.random.default_rng(3)
    theta0 = rng.normal(size=(4, 3))
    grads = [rng.normal(scale=10.0 ** rng.uniform(-5, 1), size=(4, 3)) for _ in range(60)]
    expected = textbook_adam(theta0, grads, lr=1e-3)
    params, state = {"l": {"W": theta0}}, adam_init({"l": {"W": theta0}})
    for t, g in enumerate(grads):
        params, state = adam_update(params, {"l": {"W": g}}, state, 1e-3)
        np.testing.assert_allclose(params["l"]["W"], expected[t], rtol=1e-13, atol=1e-15, err_msg=f"step {t + 1}")

