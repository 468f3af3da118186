"""Replay and statistical modes and the diagnosis of known mistakes, on candidates made with iwae_np itself
(the real clients, Pyro, NumPyro and PyTorch, are in test_oracle_clients.py)."""
import numpy as np
import pytest
import scipy.stats

from iwae_np import oracle
from iwae_np.cli import main
from iwae_np.model import log_weight_terms, sample_eps
from iwae_np.oracle import variants as V
from iwae_np.oracle.diagnosis import diagnose_exact
from iwae_np.oracle.replay import EPS_ALPHA, noise_statistics, replay_check
from iwae_np.oracle.statistical import MIN_DRAWS, POWER, statistical_check, welch_z
from iwae_np.tree import flatten_tree


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("modes") / "two"
    oracle.export_fixture(path, "small-two-layer", k=5, batch=3, seed=21)
    return path


def _key(name):
    return "grad.iwae." + name.replace("/", ".")


def candidate_replay(fixture, variant="iwae", seed=1, k=None):
    """What an implementation with the variant's mistake writes in replay mode, with its own noise."""
    v = V.get_variant(variant)
    params, x, _ = fixture.model_inputs()
    eps = sample_eps(np.random.default_rng(seed), params, k or fixture.manifest["k"], x.shape[0])
    h = log_weight_terms(V.transform_params(v, params), x, eps)["h"]
    values, g = V.evaluate_with_gradient(v, params, x, eps)
    out = {f"h.h{l}": np.asarray(hl) for l, hl in enumerate(h, start=1)}
    out.update({"log_w": values["log_w"][:, 0], "bound_mean.iwae": values["batch"][0]})
    if values["bound"] is not None:
        out["bound.iwae"] = values["bound"][0]
    out.update({_key(p): a for p, a in flatten_tree(g).items()})
    return out


def test_replay_recovers_the_noise_and_agrees_exactly(two_layer, tmp_path, capsys):
    # catches: eps recovered with the wrong layer's statistics (q(h2|h1) at a recomputed h1), sigma vs
    # log sigma in the recovery, and comparing without recomputing (any quantity off would show)
    fixture = oracle.load_fixture(two_layer)
    cand = candidate_replay(fixture)
    params, x, _ = fixture.model_inputs()
    eps = V.recover_eps(params, x, [cand["h.h1"], cand["h.h2"]])
    truth = sample_eps(np.random.default_rng(1), params, 5, 3)
    for e, t in zip(eps, truth):
        np.testing.assert_allclose(e, t, rtol=0, atol=1e-13)
    np.savez(tmp_path / "r.npz", **cand)
    assert main(["oracle", "replay", str(two_layer), str(tmp_path / "r.npz")]) == 0
    out = capsys.readouterr().out
    assert "0 disagree, 0 problem(s)" in out and "| grad.iwae.q_h2.mu.W |" in out
    report = replay_check(fixture, cand)
    assert report.passed and max(r.max_rel_error for r in report.rows) < 1e-13


@pytest.mark.parametrize("variant", ["vae", "sum-over-batch", "sign", "joint-batch-bound", "not-detached",
                                     "log-variance", "transposed-W", "stl", "renyi-0.5", "k-1", "k+1"])
def test_replay_names_each_mistake(two_layer, variant):
    # catches: a diagnosis that names the wrong variant, or several (each must match only itself here)
    fixture = oracle.load_fixture(two_layer)
    report = replay_check(fixture, candidate_replay(fixture, variant))
    assert not report.passed
    matches = [m.name for m in report.diagnosis if m.matches]
    assert matches == [variant], [(m.name, m.worst, m.note) for m in report.diagnosis[:3]]


def test_replay_of_analytic_kl_and_thresholded_softplus(tmp_path):
    # analytic KL is defined for one stochastic layer; a thresholded softplus shows only where logits exceed 20
    path = tmp_path / "one"
    oracle.export_fixture(path, "small-one-layer", k=5, batch=3, seed=3)
    report = replay_check(oracle.load_fixture(path), candidate_replay(oracle.load_fixture(path), "analytic-kl"))
    assert [m.name for m in report.diagnosis if m.matches] == ["analytic-kl"]
    fixture = oracle.make_fixture("small-one-layer", k=5, batch=3, seed=3, case="softplus-threshold")
    report = replay_check(fixture, candidate_replay(fixture, "thresholded-softplus"))
    assert not report.passed and [m.name for m in report.diagnosis if m.matches] == ["thresholded-softplus"]
    # on an ordinary fixture it cannot be told from IWAE, and the diagnosis says so rather than naming it
    ordinary = oracle.load_fixture(path)
    cand = candidate_replay(ordinary, "vae")
    names = {m.name: m for m in replay_check(ordinary, cand).diagnosis}
    assert names["thresholded-softplus"].note == "indistinguishable from iwae on this input"


def test_latents_no_noise_can_produce_get_a_clear_message(two_layer, tmp_path, capsys):
    # catches: a replay that only compares values, so latents drawn with the wrong sigma convention or W
    # layout are "explained" by some eps without saying that eps is not standard normal
    fixture = oracle.load_fixture(two_layer)
    cand = candidate_replay(fixture, "transposed-W", k=50)  # (k = 50: 750 and 450 noise values to test)
    report = replay_check(fixture, cand)
    assert report.k_candidate == 50 and any("k off by one" not in p and "does not look N(0, 1)" in p
                                            for p in report.problems)
    np.savez(tmp_path / "r.npz", **cand)
    assert main(["oracle", "replay", str(two_layer), str(tmp_path / "r.npz")]) == 1
    captured = capsys.readouterr()
    assert "check the sigma convention (log_sigma is a log standard deviation) and the dense layer" in captured.out
    assert captured.err.startswith("DISAGREE: h.h1")
    assert "diagnosis: the candidate matches transposed-W" in captured.out


def test_noise_statistics_flag_shifted_or_scaled_noise_only():
    rng = np.random.default_rng(0)
    alpha = EPS_ALPHA
    assert noise_statistics(rng.standard_normal(2000), alpha)["normal"]
    assert not noise_statistics(rng.standard_normal(2000) + 0.3, alpha)["normal"]  # z = 13
    assert not noise_statistics(1.3 * rng.standard_normal(2000), alpha)["normal"]
    assert not noise_statistics(rng.uniform(-1.7, 1.7, 2000), alpha)["normal"]  # variance 0.96, wrong shape
    assert not noise_statistics(np.array([np.nan, 0.0]), alpha)["normal"]


def test_replay_k_off_by_one_is_named(two_layer):
    fixture = oracle.load_fixture(two_layer)
    report = replay_check(fixture, candidate_replay(fixture, "iwae", k=4))
    assert report.failed_keys == ["h.h1"] and "k off by one: num_particles one too small?" in report.problems[0]
    assert [m.name for m in report.diagnosis if m.matches] == ["iwae"]  # right at its own k = 4


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("h.h2"), "replay results lack the latents 'h.h2'"),
    (lambda r: r.update({"h.h1": r["h.h1"][:, :2]}), "shape mismatch for 'h.h1'"),
    (lambda r: r.update({"bound.iwea": np.zeros(3)}), "keys that are not replay quantities: ['bound.iwea']"),
    (lambda r: r.pop("log_w"), "replay results lack 'log_w'"),
    (lambda r: [r.pop(k) for k in list(r) if k.startswith(("bound", "grad."))],
     "replay results hold no bound and no gradient"),  # gradients alone are enough (tests/test_oracle_surrogates.py)
    (lambda r: r.pop("grad.iwae.p_x.logits.b"), "missing key 'grad.iwae.p_x.logits.b'"),
    (lambda r: r["h.h1"].__setitem__((0, 0, 0), np.nan), "'h.h1' has non-finite values"),
])
def test_replay_rejects_bad_results(two_layer, tmp_path, capsys, edit, message):
    cand = candidate_replay(oracle.load_fixture(two_layer))
    edit(cand)
    np.savez(tmp_path / "r.npz", **cand)
    assert main(["oracle", "replay", str(two_layer), str(tmp_path / "r.npz")]) == 2
    assert message in capsys.readouterr().err


def test_fixture_check_diagnoses_on_the_fixtures_noise(two_layer):
    # the exact diagnosis of `oracle check`: the candidate took the fixture's eps
    fixture = oracle.load_fixture(two_layer)
    params, x, eps = fixture.model_inputs()
    for variant in ("not-detached", "log-variance", "sum-over-batch"):
        values, g = V.evaluate_with_gradient(V.get_variant(variant), params, x, eps)
        results = {"bound_mean.iwae": values["batch"][0], **{_key(p): a for p, a in flatten_tree(g).items()}}
        assert [m.name for m in diagnose_exact(params, x, results, eps=eps) if m.matches] == [variant]


# ---------------------------------------------------------------------------------------------
# statistical mode


def test_welch_z_is_scipys_welch_test():
    # against scipy.stats.ttest_ind(equal_var=False), converted to a two-sided normal z-score
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.1, 1.0, 300), rng.normal(0.0, 2.0, 120)
    p = scipy.stats.ttest_ind(a, b, equal_var=False).pvalue
    z = welch_z(a.mean(), a.var(ddof=1) / 300, 299, b.mean(), b.var(ddof=1) / 120, 119)
    assert abs(float(z) - scipy.stats.norm.isf(p / 2)) < 1e-9
    assert welch_z(1.0, 0.0, 10, 1.0, 0.0, 10) == 0 and welch_z(1.0, 0.0, 10, 2.0, 0.0, 10) == np.inf


def candidate_draws(fixture, variant="iwae", N=300, seed=7, scale=1.0):
    """N draws of a candidate's batch-mean bound and gradient, each with its own noise."""
    v = V.get_variant(variant).statistical_form()
    params, x, _ = fixture.model_inputs()
    eps = sample_eps(np.random.default_rng(seed), params, v.samples(fixture.manifest["k"]), N * x.shape[0])
    values = V.evaluate(v, params, x, eps, N)
    out = {"bound.iwae": scale * values["bound"], "bound_mean.iwae": scale * values["batch"]}
    grads = {_key(p): [] for p in flatten_tree(params)}
    B = x.shape[0]
    for n in range(N):  # one gradient per draw
        g = V.mean_gradient(v, params, x, [e[:, n * B:(n + 1) * B] for e in eps])
        for p, a in flatten_tree(g).items():
            grads[_key(p)].append(scale * a)
    out.update({key: np.stack(a) for key, a in grads.items()})
    return out


@pytest.fixture(scope="module")
def stat_fixture(tmp_path_factory):
    path = tmp_path_factory.mktemp("stat") / "f"
    oracle.export_fixture(path, "small-one-layer", k=3, batch=8, seed=11)
    return oracle.load_fixture(path)


def test_statistical_agrees_with_independent_draws_and_states_its_power(stat_fixture):
    # catches: a test that compares the candidate with itself, a Bonferroni count that ignores coordinates,
    # and a power statement that is not the formula's
    report = statistical_check(stat_fixture, candidate_draws(stat_fixture))
    assert report.passed, [(t.key, t.max_abs_z) for t in report.tests]
    n_parameters = sum(np.size(a) for a in flatten_tree(stat_fixture.model_inputs()[0]).values())
    assert report.coordinates == 1 + 8 + n_parameters  # bound_mean, bound per example, every gradient entry
    assert report.threshold == pytest.approx(scipy.stats.norm.isf(0.01 / (2 * report.coordinates)))
    for t in report.tests:
        assert t.min_detectable_bias == pytest.approx((report.threshold + scipy.stats.norm.isf(1 - POWER))
                                                      * t.noise_floor)
        assert 0 < t.noise_floor < 0.05 and t.recommended_draws > 0


def test_statistical_detects_a_bias_the_power_statement_promises(stat_fixture):
    # a candidate scaled by (1 + 2 rho_min) is caught: rho_min is a promise, not decoration
    ok = statistical_check(stat_fixture, candidate_draws(stat_fixture), diagnose=False)
    rho = min(t.min_detectable_bias for t in ok.tests)
    report = statistical_check(stat_fixture, candidate_draws(stat_fixture, scale=1 + 2 * rho), diagnose=False)
    assert not report.passed


@pytest.mark.parametrize("variant", ["vae", "stl", "k-1"])
def test_statistical_names_the_mistake(stat_fixture, variant):
    report = statistical_check(stat_fixture, candidate_draws(stat_fixture, variant, N=400))
    assert not report.passed
    assert [m.name for m in report.diagnosis if m.matches] == [variant], \
        [(m.name, round(m.worst, 1)) for m in report.diagnosis[:3]]


def test_statistical_rejects_bad_input(stat_fixture, tmp_path, capsys):
    draws = candidate_draws(stat_fixture, N=MIN_DRAWS)
    path = tmp_path / "f1"
    oracle.export_fixture(path, "small-one-layer", k=1, batch=8, seed=11)
    np.savez(tmp_path / "s.npz", **draws)
    assert main(["oracle", "statistical", str(path), str(tmp_path / "s.npz")]) == 2
    assert "needs a fixture with k > 1" in capsys.readouterr().err
    short = {key: a[:MIN_DRAWS - 1] for key, a in draws.items()}
    with pytest.raises(oracle.OracleInputError, match="at least 20 draws"):
        statistical_check(stat_fixture, short)
    with pytest.raises(oracle.OracleInputError, match="has 19 draws, other keys have 20"):
        statistical_check(stat_fixture, {**draws, "bound_mean.iwae": draws["bound_mean.iwae"][:-1]})
    with pytest.raises(oracle.OracleInputError, match="shape mismatch for 'bound.iwae'"):
        statistical_check(stat_fixture, {**draws, "bound.iwae": draws["bound.iwae"][:, :3]})
    with pytest.raises(oracle.OracleInputError, match="not per-draw quantities"):
        statistical_check(stat_fixture, {**draws, "log_w": np.zeros((20, 3, 8))})
    grads = sorted(key for key in draws if key.startswith("grad.iwae."))
    assert grads, "the candidate's draws should include gradients"
    with pytest.raises(oracle.OracleInputError, match=f"statistical results give some grad.iwae.. but not all: "
                                                      f"missing key '{grads[0]}'"):
        statistical_check(stat_fixture, {key: a for key, a in draws.items() if key != grads[0]})


@pytest.mark.parametrize("mode", ["replay", "statistical"])
def test_each_mode_has_help_with_examples(mode, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["oracle", mode, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "examples:" in out and f"iwae-np oracle {mode} f/" in out
