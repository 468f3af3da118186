"""The custom primitives: values equal the readable formulas, VJPs equal central differences, dtypes kept."""
import math

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from autograd import grad

from iwae_np.verify.gradcheck import FD_RTOL, compare_gradients, finite_difference_gradient
from iwae_np.fast.primitives import (affine, bernoulli_logit_log_likelihood, diagonal_gaussian_log_density,
                                layer_dict, tanh_affine, unbroadcast)


def assert_gradient_matches_central_differences(f, tree):
    """autograd's gradient of the scalar ``f(tree)`` against central differences, per array, 1e-6 relative."""
    auto = grad(f)(tree)
    fd = finite_difference_gradient(f, tree, step=1e-5)
    for name, (abs_err, rel_err) in compare_gradients(auto, fd).items():
        assert rel_err <= FD_RTOL, f"{name}: relative error {rel_err:.1e} (abs {abs_err:.1e})"
    return auto


def weighted(out, c):
    # a scalar with a non-uniform upstream gradient c, so every VJP entry is exercised
    return anp.sum(out * c)


@pytest.mark.parametrize("lead", [(), (4,), (3, 4)])
def test_affine_and_tanh_affine_values_and_gradients(rng, lead):
    layer = {"W": rng.normal(size=(5, 3)), "b": rng.normal(size=3)}
    x = rng.normal(size=lead + (5,))
    expected = np.reshape(np.reshape(x, (-1, 5)) @ layer["W"] + layer["b"], lead + (3,))
    np.testing.assert_allclose(affine(layer, x), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(tanh_affine(layer, x), np.tanh(expected), rtol=1e-14, atol=1e-15)
    c = rng.normal(size=lead + (3,))
    for fn in (affine, tanh_affine):
        assert_gradient_matches_central_differences(
            lambda t: weighted(fn({"W": t["W"], "b": t["b"]}, t["x"]), c), {**layer, "x": x})
        # the layer dict as one traced value (how the model calls it), and only x traced
        assert_gradient_matches_central_differences(
            lambda t: weighted(fn(t["layer"], t["x"]), c), {"layer": layer, "x": x})
        g_x = grad(lambda x: weighted(fn(layer, x), c))(x)
        g_x_ref = grad(lambda t: weighted(fn(t["layer"], t["x"]), c))({"layer": layer, "x": x})["x"]
        np.testing.assert_allclose(g_x, g_x_ref, rtol=1e-15)


def test_tanh_affine_gradient_uses_one_minus_y_squared_at_saturation():
    # a = +-30: tanh(a) = +-1 in float64, so the exact derivative 1 - tanh^2 ~ 4e-26 rounds to 0: no NaN, no junk
    layer = {"W": np.array([[30.0, -30.0]]), "b": np.zeros(2)}
    g = grad(lambda t: anp.sum(tanh_affine(t, np.ones((1, 1)))))(layer)
    assert np.all(g["W"] == 0) and np.all(g["b"] == 0)


def test_layer_dict_with_extra_keys_gets_zero_gradient_for_them(rng):
    layer = {"W": rng.normal(size=(2, 2)), "b": rng.normal(size=2), "unused": rng.normal(size=3)}
    g = grad(lambda t: anp.sum(affine(t, np.ones((1, 2)))))(layer)
    assert set(g) == {"W", "b", "unused"} and np.all(g["unused"] == 0)


def test_layer_dict_packs_traced_arrays_only_when_needed(rng):
    layer = {"W": rng.normal(size=(2, 2)), "b": rng.normal(size=2)}
    assert layer_dict(layer) is layer  # plain arrays: no copy, no trace
    seen = []
    grad(lambda W: seen.append(type(layer_dict({"W": W, "b": layer["b"]}))) or anp.sum(W))(layer["W"])
    assert "DictBox" in seen[0].__name__


def test_bernoulli_value_matches_scipy_and_exact_extremes(rng):
    l = rng.normal(size=(3, 2, 10)) * 4
    x = (rng.uniform(size=(2, 10)) < 0.5).astype(float)
    expected = np.sum(scipy.special.xlogy(x, scipy.special.expit(l))
                      + scipy.special.xlog1py(1 - x, -scipy.special.expit(l)), axis=-1)
    np.testing.assert_allclose(bernoulli_logit_log_likelihood(x, l), expected, rtol=1e-12)
    # l = +-800 would overflow exp(l); x = 1, l = 40 must give -log1p(e^-40) = -4.2e-18, not 0
    x = np.array([[1.0, 0.0, 1.0, 0.0]])
    for l_j, x_j, exact in [(-800.0, 1.0, -800.0), (-800.0, 0.0, 0.0), (800.0, 1.0, 0.0), (800.0, 0.0, -800.0),
                            (40.0, 1.0, -math.log1p(math.exp(-40.0)))]:
        assert bernoulli_logit_log_likelihood(np.array([[x_j]]), np.array([[l_j]]))[0] == exact


def test_bernoulli_gradients_against_central_differences(rng):
    x = rng.uniform(size=(2, 6))  # not binary, so the x-gradient (l) is a real check as well
    l = rng.normal(size=(3, 2, 6)) * 3
    c = rng.normal(size=(3, 2))
    g = assert_gradient_matches_central_differences(
        lambda t: weighted(bernoulli_logit_log_likelihood(t["x"], t["l"]), c), {"x": x, "l": l})
    # closed forms: d/dl = x - sigmoid(l), d/dx = l (summed over the broadcast k axis)
    np.testing.assert_allclose(g["l"], c[..., None] * (x - scipy.special.expit(l)), rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(g["x"], np.sum(c[..., None] * l, axis=0), rtol=1e-14)


def test_bernoulli_logit_gradient_is_accurate_where_sigmoid_is_tiny():
    # d/dl at x = 0, l = -700: -sigmoid(-700) = -9.86e-305, to full relative precision (no 1 - 1 cancellation)
    l = np.array([[-700.0, -30.0, 0.0, 30.0, 700.0]])
    g = grad(lambda l: anp.sum(bernoulli_logit_log_likelihood(np.zeros((1, 5)), l)))(l)
    np.testing.assert_allclose(g, -scipy.special.expit(l), rtol=4 * np.finfo(float).eps, atol=0)


@pytest.mark.parametrize("mu_shape", [(2, 4), (3, 2, 4), (4,)])
def test_gaussian_value_and_gradients(rng, mu_shape):
    h = rng.normal(size=(3, 2, 4))
    mu = rng.normal(size=mu_shape)
    log_sigma = rng.normal(size=mu_shape) * 0.5
    sigma = np.exp(log_sigma)
    expected = np.sum(-0.5 * math.log(2 * math.pi) - log_sigma - 0.5 * ((h - mu) / sigma) ** 2, axis=-1)
    np.testing.assert_allclose(diagonal_gaussian_log_density(h, mu, log_sigma), expected, rtol=1e-14)
    c = rng.normal(size=(3, 2))
    assert_gradient_matches_central_differences(
        lambda t: weighted(diagonal_gaussian_log_density(t["h"], t["mu"], t["s"]), c),
        {"h": h, "mu": mu, "s": log_sigma})


def test_unbroadcast_sums_added_and_stretched_axes(rng):
    g = rng.normal(size=(3, 2, 4))
    np.testing.assert_allclose(unbroadcast(g, (2, 4)), g.sum(0))
    np.testing.assert_allclose(unbroadcast(g, (2, 1)), g.sum(0).sum(-1, keepdims=True))
    np.testing.assert_allclose(unbroadcast(g, ()), g.sum())
    assert unbroadcast(g, (3, 2, 4)) is g


def test_primitives_keep_float32_in_values_and_gradients(rng):
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)
    layer, x = {"W": f32(5, 3), "b": f32(3)}, f32(4, 2, 5)
    for fn in (affine, tanh_affine):
        assert fn(layer, x).dtype == np.float32
        g = grad(lambda t: anp.sum(fn(t["layer"], t["x"])))({"layer": layer, "x": x})
        assert g["layer"]["W"].dtype == g["layer"]["b"].dtype == g["x"].dtype == np.float32
    xb, l = (f32(2, 5) > 0).astype(np.float32), f32(4, 2, 5)
    assert bernoulli_logit_log_likelihood(xb, l).dtype == np.float32
    assert grad(lambda l: anp.sum(bernoulli_logit_log_likelihood(xb, l)))(l).dtype == np.float32
    h, mu, s = f32(4, 2, 5), f32(2, 5), f32(2, 5)
    assert diagonal_gaussian_log_density(h, mu, s).dtype == np.float32
    g = grad(lambda t: anp.sum(diagonal_gaussian_log_density(*t)))([h, mu, s])
    assert [a.dtype for a in g] == [np.float32] * 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bernoulli_blocks_and_threads_give_the_unblocked_numbers_exactly(rng, monkeypatch, dtype):
    # Small blocks and a low threshold force many blocks on two threads; each block computes the same
    # elementwise formula and the sum over the last axis is per row, so the result is bit for bit the same.
    import iwae_np.fast.primitives as P
    x = (rng.uniform(size=(5, 7)) < 0.5).astype(dtype)
    l = (rng.normal(size=(9, 5, 7)) * 5).astype(dtype)
    g = rng.normal(size=(9, 5)).astype(dtype)
    value = np.sum((x * l - np.maximum(l, 0)) - np.log1p(np.exp(-np.abs(l))), axis=-1)
    grad_l = g[..., None] * (x - 1 / (1 + np.exp(-l)))
    for block, threshold in [(1 << 16, 1 << 18), (35, 70), (1, 2)]:
        monkeypatch.setattr(P, "BLOCK_ELEMENTS", block)
        monkeypatch.setattr(P, "PARALLEL_MIN_ELEMENTS", threshold)
        np.testing.assert_array_equal(bernoulli_logit_log_likelihood(x, l), value)
        np.testing.assert_array_equal(grad(lambda l: anp.sum(bernoulli_logit_log_likelihood(x, l) * g))(l), grad_l)


def test_bernoulli_gradient_when_logits_broadcast_against_x(rng):
    x = rng.uniform(size=(3, 2, 4))
    l = rng.normal(size=(2, 4)) * 2
    c = rng.normal(size=(3, 2))
    assert_gradient_matches_central_differences(
        lambda t: weighted(bernoulli_logit_log_likelihood(t["x"], t["l"]), c), {"x": x, "l": l})
    assert bernoulli_logit_log_likelihood(x[0, 0], l[0]).shape == ()  # one vector: a scalar


def test_float64_cotangent_into_float32_primitives_gives_float32_gradients(rng):
    # autograd's VJP of anp.mean hands float32 arrays a float64 gradient; the primitives cast it back,
    # so no mixed-dtype (slow, float64) products happen below them
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)
    layer, x = {"W": f32(5, 3), "b": f32(3)}, f32(4, 2, 5)
    assert grad(lambda a: anp.mean(a))(f32(3)).dtype == np.float64  # the quirk this guards against
    for fn in (affine, tanh_affine):
        g = grad(lambda t: anp.mean(fn(t["layer"], t["x"])))({"layer": layer, "x": x})
        assert g["layer"]["W"].dtype == g["x"].dtype == np.float32
    xb, l = (f32(2, 5) > 0).astype(np.float32), f32(4, 2, 5)
    assert grad(lambda l: anp.mean(bernoulli_logit_log_likelihood(xb, l)))(l).dtype == np.float32
    g = grad(lambda t: anp.mean(diagonal_gaussian_log_density(*t)))([f32(4, 2, 5), f32(2, 5), f32(2, 5)])
    assert [a.dtype for a in g] == [np.float32] * 3


@pytest.mark.parametrize("mu_shape", [(2, 3), (4, 2, 3)])
def test_reparameterize_value_and_gradients(rng, mu_shape):
    from iwae_np.fast.primitives import reparameterize
    mu, s, eps = rng.normal(size=mu_shape), rng.normal(size=mu_shape) * 0.5, rng.normal(size=(4, 2, 3))
    np.testing.assert_array_equal(reparameterize(mu, s, eps), mu + np.exp(s) * eps)  # the formula, exactly
    c = rng.normal(size=(4, 2, 3))
    assert_gradient_matches_central_differences(lambda t: weighted(reparameterize(t["mu"], t["s"], t["eps"]), c),
                                                {"mu": mu, "s": s, "eps": eps})


def test_standard_normal_log_density_value_and_gradient(rng):
    from iwae_np.fast.primitives import standard_normal_log_density
    h = rng.normal(size=(3, 2, 5)) * 2
    np.testing.assert_allclose(standard_normal_log_density(h), scipy.stats.norm.logpdf(h).sum(-1), rtol=1e-14)
    c = rng.normal(size=(3, 2))
    assert_gradient_matches_central_differences(lambda t: weighted(standard_normal_log_density(t["h"]), c), {"h": h})


def test_tree_views_differentiate_the_flat_buffer_like_the_tree(rng):
    # a function of the tree, differentiated through the views of one buffer, gives the tree's gradient in the
    # buffer's order; a layer the function does not use gets exactly zero (even from a reused, dirty buffer)
    from autograd import grad as agrad
    from iwae_np.fast.primitives import tree_views
    from iwae_np.fast.flat import pack_tree
    from iwae_np.tree import flatten_tree
    tree = {"a": {"l0": {"W": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}},
            "z": {"l1": {"W": rng.normal(size=(2, 4)), "b": rng.normal(size=4)}, "unused": {"W": rng.normal(size=2)}}}
    x = rng.normal(size=(5, 3))
    f = lambda t: anp.sum(tanh_affine(t["z"]["l1"], tanh_affine(t["a"]["l0"], x)) ** 2)
    flat, layout, _ = pack_tree(tree)
    dirty = np.full_like(flat, np.nan)
    dirty[:] = 0.0  # grad_out must arrive zeroed; the primitive adds into it
    g_flat = agrad(lambda v: f(tree_views(v, layout, dirty)))(flat)
    expected = agrad(f)(tree)
    got = dict(zip(layout.names, np.split(g_flat, np.cumsum(layout.sizes)[:-1])))
    for name, value in flatten_tree(expected).items():
        np.testing.assert_array_equal(got[name].reshape(value.shape), value)  # same ops, same numbers
    assert np.all(got["z/unused/W"] == 0)
    assert_gradient_matches_central_differences(lambda t: f(tree_views(t["flat"], layout)), {"flat": flat})


def test_a_child_forked_after_the_helper_thread_ran_computes_without_hanging(rng, monkeypatch):
    # Regression: the helper thread was a module-level executor; a child forked after it had run
    # inherited the executor but not its thread, and hung waiting for it. The wait here is certain:
    # the parent reads the pipe to its end, which comes when the child has written its result and
    # exited, or has died (a hang ends in SIGALRM after HANG_GUARD_S: no result, the test fails).
    import os
    import signal
    import iwae_np.fast.primitives as P
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    HANG_GUARD_S = 300
    monkeypatch.setattr(P, "_usable_cpus", lambda: 2)  # the helper runs even on a one-CPU machine
    x = (rng.uniform(size=(8, 784)) < 0.4).astype(np.float64)
    l = rng.normal(size=(50, 8, 784))  # 313,600 elements: split over the two threads
    assert l.size >= P.PARALLEL_MIN_ELEMENTS
    expected = bernoulli_logit_log_likelihood(x, l)
    assert P._helper is not None and P._helper[0] == os.getpid()  # the helper thread has run
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, write, exit; never return into pytest
        try:
            os.close(read_end)
            signal.alarm(HANG_GUARD_S)
            data = bernoulli_logit_log_likelihood(x, l).tobytes()
            while data:
                data = data[os.write(write_end, data):]
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), "the child hung (killed by its alarm) or crashed"
    np.testing.assert_array_equal(np.frombuffer(b"".join(chunks), dtype=expected.dtype), expected.ravel())


@pytest.mark.parametrize("n_hidden", [0, 1, 2])
def test_mlp_equals_its_layers_and_its_vjp_central_differences(rng, n_hidden):
    # one node per network: the forward must be tanh_mlp then dense per head (bit for bit), and the
    # hand-written backpropagation must match central differences for every layer, head and the input
    from iwae_np.networks import dense, init_mlp, tanh_mlp
    from iwae_np.fast.primitives import mlp
    net = init_mlp(rng, 3, [4, 5][:n_hidden], {"mu": 2, "log_sigma": 2}, np.float64)
    net = {name: {key: value + 0.3 * rng.normal(size=value.shape) for key, value in layer.items()}
           for name, layer in net.items()}
    x = rng.normal(size=(2, 3, 3))
    mu, log_sigma = mlp(net, x, ("mu", "log_sigma"))
    top = tanh_mlp(net, x)
    np.testing.assert_array_equal(mu, dense(net["mu"], top))
    np.testing.assert_array_equal(log_sigma, dense(net["log_sigma"], top))
    c1, c2 = rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 3, 2))
    f = lambda t: weighted(mlp(t["net"], t["x"], ("mu", "log_sigma"))[0], c1) + \
        weighted(mlp(t["net"], t["x"], ("mu", "log_sigma"))[1] ** 2, c2)
    assert_gradient_matches_central_differences(f, {"net": net, "x": x})
    only_mu = grad(lambda n: weighted(mlp(n, x, ("mu",))[0], c1))(net)  # a head not asked for gets zeros
    assert np.all(only_mu["log_sigma"]["W"] == 0) and np.any(only_mu["mu"]["W"] != 0)
    f32 = {name: {key: v.astype(np.float32) for key, v in layer.items()} for name, layer in net.items()}
    g32 = grad(lambda t: anp.mean(mlp(t, x.astype(np.float32), ("mu",))[0]))(f32)
    assert all(v.dtype == np.float32 for layer in g32.values() for v in layer.values())
