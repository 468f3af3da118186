"""Gradients without a bound, and surrogate values recognised as conventions (replay and statistical mode).

Libraries often expose only a training loss: for IWAE the surrogate -sum_i stop(w~_i) log w_i, whose
gradient is the bound's and whose value is not (pythae); PIWAE has two losses and no single bound. Replay
and statistical mode accept gradients with no bound, and a bound key holding a common surrogate's value is
compared with that surrogate and reported as a convention, never silently accepted as the bound.
"""
import autograd
import numpy as np
import pytest

from iwae_np import oracle
from iwae_np.bounds import iwae_bound, normalized_weights
from iwae_np.model import log_importance_weights, sample_eps
from iwae_np.oracle.format import OracleInputError
from iwae_np.oracle.quantities import GRADIENTS
from iwae_np.oracle.replay import replay_check
from iwae_np.oracle.statistical import statistical_check
from iwae_np.oracle.surrogates import SURROGATES, surrogate_value
from iwae_np.tree import flatten_tree


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    path = tmp_path_factory.mktemp("surrogates") / "f"
    oracle.export_fixture(path, "small-one-layer", k=6, batch=3, seed=4)  # M = 2, K = 3
    return oracle.load_fixture(path)


def _replay_results(fixture, gradient=None, bounds=()):
    """A correct replay candidate built from the fixture's own arrays: latents, log_w, the given keys."""
    a = fixture.arrays
    out = {"h.h1": a["h.h1"], "log_w": a["log_w"]}
    out.update({key: a[key] for key in bounds})
    if gradient:
        out.update({key: a[key] for key in a if key.startswith(f"grad.{gradient}.")})
    return out


def test_surrogate_values_against_closed_forms():
    rng = np.random.default_rng(0)
    s = {"miwae_M": 2, "ciwae_beta": 0.3}
    # equal weights: w~ = 1/k, so every surrogate is log w itself (= L_k, the VAE bound, MIWAE and CIWAE)
    log_w = np.full((6, 2), -3.25)
    for name in SURROGATES:
        np.testing.assert_allclose(surrogate_value(f"bound.{name}", log_w, s), [-3.25, -3.25], rtol=1e-15)
    # one sample: the surrogate is log w_1
    one = rng.normal(size=(1, 4))
    np.testing.assert_allclose(surrogate_value("bound.iwae", one, s), one[0], rtol=1e-15)
    # MIWAE's groups are consecutive samples (i = m K + j): swapping two samples across groups changes it
    log_w = rng.normal(size=(6, 3)) * 3
    swapped = log_w[[0, 1, 3, 2, 4, 5]]
    assert not np.allclose(surrogate_value("bound.miwae", log_w, s), surrogate_value("bound.miwae", swapped, s))
    np.testing.assert_allclose(surrogate_value("bound.iwae", log_w, s), surrogate_value("bound.iwae", swapped, s),
                               rtol=1e-14)
    # the batch mean is the mean of the per-example values
    np.testing.assert_allclose(surrogate_value("bound_mean.ciwae", log_w, s),
                               np.mean(surrogate_value("bound.ciwae", log_w, s)), rtol=1e-15)


def test_the_iwae_surrogate_has_the_bound_gradient_and_not_its_value(fixture):
    # why it is a convention: autograd of sum_i stop(w~_i) log w_i equals the fixture's grad.iwae (paper eq. 14)
    params, x, eps = fixture.model_inputs()
    w = np.asarray(normalized_weights(np.asarray(log_importance_weights(params, x, eps))))  # a constant
    g = flatten_tree(autograd.grad(lambda p: np.mean(np.sum(w * log_importance_weights(p, x, eps), 0)))(params))
    for name, value in g.items():
        ref = fixture.arrays["grad.iwae." + name.replace("/", ".")]
        assert np.max(np.abs(value - ref)) <= 1e-12 * np.max(np.abs(ref)), name
    log_w = fixture.arrays["log_w"]
    gap = np.abs(surrogate_value("bound.iwae", log_w, {}) - np.asarray(iwae_bound(log_w)))
    assert np.all(gap > 1e-3)  # the value is not L_k


def test_replay_accepts_gradients_without_a_bound(fixture):
    # PIWAE: two objectives and no single bound; the gradients alone are checked
    report = replay_check(fixture, _replay_results(fixture, "piwae"))
    assert report.passed and {r.key for r in report.rows} >= {"log_w", "grad.piwae.q_h1.mu.W", "grad.piwae.p_x.logits.b"}
    assert not any(r.key.startswith("bound") for r in report.rows)
    # a wrong phi gradient is still caught, and only phi's arrays fail
    bad = _replay_results(fixture, "piwae")
    for key in [k for k in bad if k.startswith("grad.piwae.q_h1.")]:
        bad[key] = 2 * bad[key]
    report = replay_check(fixture, bad, diagnose=False)
    assert not report.passed and {k.split(".")[2] for k in report.failed_keys} == {"q_h1"}
    # neither a bound nor a gradient: nothing to check beyond log_w, refused with a message naming both
    with pytest.raises(OracleInputError, match="no bound and no gradient"):
        replay_check(fixture, _replay_results(fixture))


@pytest.mark.parametrize("name", ["iwae", "miwae", "ciwae"])
def test_replay_recognises_a_surrogate_value_as_a_convention(fixture, name):
    s = fixture.manifest["settings"]
    assert s["miwae_M"] == 2  # so MIWAE's surrogate is not IWAE's
    results = _replay_results(fixture, name)
    results[f"bound_mean.{name}"] = surrogate_value(f"bound_mean.{name}", fixture.arrays["log_w"], s)
    results[f"bound.{name}"] = surrogate_value(f"bound.{name}", fixture.arrays["log_w"], s)
    report = replay_check(fixture, results)
    assert report.passed, report.failed_keys
    assert len(report.conventions) == 2 and all("surrogate" in c for c in report.conventions)
    assert any(c.startswith(f"convention: bound_mean.{name} is the surrogate") for c in report.conventions)
    # the bound itself gives no convention; a value that is neither the bound nor a surrogate still fails
    report = replay_check(fixture, _replay_results(fixture, name, [f"bound_mean.{name}"]))
    assert report.passed and not report.conventions
    results = _replay_results(fixture, name)
    results[f"bound_mean.{name}"] = surrogate_value(f"bound_mean.{name}", fixture.arrays["log_w"], s) + 1e-6
    report = replay_check(fixture, results, diagnose=False)
    assert report.failed_keys == [f"bound_mean.{name}"] and not report.conventions


def test_replay_does_not_take_another_objectives_surrogate(fixture):
    # IWAE's surrogate reported as the MIWAE bound (M = 2) is not MIWAE's surrogate: it fails
    s = fixture.manifest["settings"]
    results = _replay_results(fixture, "miwae")
    results["bound_mean.miwae"] = surrogate_value("bound_mean.iwae", fixture.arrays["log_w"], s)
    report = replay_check(fixture, results, diagnose=False)
    assert report.failed_keys == ["bound_mean.miwae"] and not report.conventions


def _draws(fixture, n, gradient, surrogate=None, scale=1.0, seed=1):
    """N draws of an honest candidate from iwae-np's own functions: grad.<gradient>.* and, with
    ``surrogate``, bound_mean.<surrogate> holding the surrogate's value (times ``scale``)."""
    params, x, _ = fixture.model_inputs()
    s, k = fixture.manifest["settings"], fixture.manifest["k"]
    rng = np.random.default_rng(seed)
    out = {}
    for _ in range(n):
        eps = sample_eps(rng, params, k, x.shape[0])
        for name, v in flatten_tree(GRADIENTS[gradient](params, x, eps, s)).items():
            out.setdefault(f"grad.{gradient}." + name.replace("/", "."), []).append(np.asarray(v))
        if surrogate:
            log_w = np.asarray(log_importance_weights(params, x, eps))
            out.setdefault(f"bound_mean.{surrogate}", []).append(scale * surrogate_value(f"bound_mean.{surrogate}", log_w, s))
    return {key: np.stack(v) for key, v in out.items()}


def test_statistical_accepts_gradients_without_a_bound_and_recognises_a_surrogate(fixture):
    report = statistical_check(fixture, _draws(fixture, 60, "piwae"), diagnose=False)
    assert report.passed and [t.key for t in report.tests] == ["grad.piwae"] and not report.conventions
    report = statistical_check(fixture, _draws(fixture, 60, "iwae", surrogate="iwae"), diagnose=False)
    assert report.passed, [(t.key, t.max_abs_z) for t in report.tests]
    assert len(report.conventions) == 1 and report.conventions[0].startswith("convention: bound_mean.iwae is the "
                                                                            "surrogate")
    # 5% above the surrogate (which lies above L_k: S - L_k = log k - H(w~) >= 0) is neither: rejected
    report = statistical_check(fixture, _draws(fixture, 60, "iwae", surrogate="iwae", scale=0.95), diagnose=False)
    assert not report.passed and not report.conventions
    assert [t.key for t in report.tests if t.rejected] == ["bound_mean.iwae"]
