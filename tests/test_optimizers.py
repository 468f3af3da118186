import math

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


def leafwise_adam(params, grads, state, lr, b1=0.9, b2=0.999, eps=1e-4):
    # the update written out array by array, in the same operations, as a reference for the flat one
    t = state["t"] + 1
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    lr_t, eps_t = lr * math.sqrt(c2) / c1, eps * math.sqrt(c2)  # Python floats: float32 stays float32
    m = tree_map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
    v = tree_map(lambda v, g: b2 * v + (g * g) * (1 - b2), state["v"], grads)
    new = tree_map(lambda p, m, v: p - ((m / (np.sqrt(v) + eps_t)) * lr_t), params, m, v)
    return new, {"m": m, "v": v, "t": t}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_adam_equals_leafwise_adam_bit_for_bit(dtype):
    # the fast engine's Adam on the one flat buffer must be the same elementwise operations as leaf by leaf: catches a
    # buffer whose order differs from the names, a half of the two-thread split updated twice or not at all
    from iwae_np.fast import adam_init, adam_update
    from iwae_np.fast.flat import flat_buffer
    target, loss, grad = quadratic_problem()
    rng = np.random.default_rng(1)
    params = tree_map(lambda t: rng.normal(size=np.shape(t)).astype(dtype), target)
    state, ref_params, ref_state = adam_init(params), params, adam_init(params)
    for _ in range(5):
        g = tree_map(lambda a: a.astype(dtype), grad(params))
        before = {name: value.copy() for name, value in flatten_tree(params).items()}
        new, state = adam_update(params, g, state, 0.01)
        ref_params, ref_state = leafwise_adam(ref_params, g, ref_state, 0.01)
        for name, value in flatten_tree(params).items():
            np.testing.assert_array_equal(value, before[name])  # the inputs (packed after step 1) are not modified
        params = new
        for tree, ref in [(params, ref_params), (state["m"], ref_state["m"]), (state["v"], ref_state["v"])]:
            for a, b in zip(flatten_tree(tree).values(), flatten_tree(ref).values()):
                assert a.dtype == dtype
                np.testing.assert_array_equal(a, b)
    assert flat_buffer(params) is not None and flat_buffer(state["m"]) is not None  # packed: no copy next step


def test_adam_two_threads_give_the_one_thread_numbers(monkeypatch):
    import iwae_np.fast.primitives as P
    from iwae_np.fast import adam_init, adam_update
    rng = np.random.default_rng(2)
    params = {"a": {"W": rng.normal(size=(301, 7))}, "b": {"W": rng.normal(size=5)}}
    g = tree_map(lambda p: rng.normal(size=p.shape), params)
    results = []
    for threshold, cpus in [(1 << 40, 1), (2, 2)]:
        monkeypatch.setattr(P, "PARALLEL_MIN_ELEMENTS", threshold)
        monkeypatch.setattr(P, "_usable_cpus", lambda cpus=cpus: cpus)
        results.append(adam_update(params, g, adam_init(params), 0.01)[0])
    for a, b in zip(flatten_tree(results[0]).values(), flatten_tree(results[1]).values()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maximize_takes_the_step_of_descending_minus_g_bit_for_bit(dtype):
    _, _, grad = quadratic_problem()
    rng = np.random.default_rng(3)
    params = {"a": {"W": rng.normal(size=(3, 2)).astype(dtype), "b": rng.normal(size=2).astype(dtype)},
              "c": {"W": rng.normal(size=4).astype(dtype)}}
    state = adam_update(params, tree_map(lambda p: p.astype(dtype), grad(params)), adam_init(params), 0.01)[1]
    g = tree_map(lambda a: a.astype(dtype), grad(params))
    up = adam_update(params, g, state, 0.01, maximize=True)
    down = adam_update(params, tree_map(lambda a: -a, g), state, 0.01)
    for a, b in zip([up[0], up[1]["m"], up[1]["v"]], [down[0], down[1]["m"], down[1]["v"]]):
        for x, y in zip(flatten_tree(a).values(), flatten_tree(b).values()):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(up[0]["c"]["W"], adam_update(params, g, state, 0.01)[0]["c"]["W"])  # the sign matters


def test_adam_on_a_tree_of_mixed_dtypes_updates_leaf_by_leaf():
    params = {"l": {"W": np.ones(3, np.float32), "b": np.ones(2)}}
    g = {"l": {"W": np.full(3, 0.5, np.float32), "b": np.full(2, 0.5)}}
    new, state = adam_update(params, g, adam_init(params), 0.1)
    assert new["l"]["W"].dtype == np.float32 and new["l"]["b"].dtype == np.float64
    np.testing.assert_allclose(new["l"]["b"], 1 - 0.1 * 0.5 / (0.5 + 1e-4), rtol=1e-15)
