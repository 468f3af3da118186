"""The gradient SNR study (Rainforth et al. 2018): its estimators, statistics, slopes and command."""
import json

import numpy as np
import pytest

from iwae_np.cli import main
from iwae_np.estimators import estimate_gradient
from iwae_np.experiments.snr import (SNR_ESTIMATORS, RunningMoments, effective_sample_size, estimator_gradients,
                         fit_slopes, gradient_snr, load_model_params, snr_study, summarize_snr)
from iwae_np.tree import flatten_tree

from conftest import TINY, small_problem


def group(tree, prefix):
    return np.concatenate([v.ravel() for n, v in flatten_tree(tree).items() if n.startswith(prefix)])


@pytest.mark.parametrize("M", [1, 2])
def test_fused_gradients_equal_the_estimators(M):
    params, x, eps = small_problem(TINY["two-layer"], k=6, batch=2, seed=0)
    fused = estimator_gradients(params, x, eps, M)
    objective, kw = ("iwae", {}) if M == 1 else ("miwae", {"M": M})
    for estimator in SNR_ESTIMATORS:
        reference = estimate_gradient(params, x, eps, objective, estimator, **kw)[1]
        np.testing.assert_allclose(fused[estimator], group(reference, "q_"), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(fused["theta"], group(reference, "p_"), rtol=1e-12, atol=1e-14)


def test_running_moments_match_numpy():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 4))
    m = RunningMoments(4)
    for v in values:
        m.add(v)
    np.testing.assert_allclose(m.mean, values.mean(0), rtol=1e-13)
    np.testing.assert_allclose(m.std(), values.std(0, ddof=1), rtol=1e-12)


def test_gradient_snr_is_mean_over_std_of_the_draws():
    params, x, _ = small_problem(TINY["one-layer"], k=1, batch=1, seed=1)
    snr = gradient_snr(params, x, M=1, K=4, n_draws=10, rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same draws, collected explicitly
    from iwae_np.model import sample_eps
    draws = [estimate_gradient(params, x, sample_eps(rng, params, 4, 1), "iwae", "dreg")[1] for _ in range(10)]
    phi, theta = np.array([group(g, "q_") for g in draws]), np.array([group(g, "p_") for g in draws])
    for name, g in (("dreg", phi), ("theta", theta)):
        std = g.std(0, ddof=1)
        expected = np.where(std > 0, np.abs(g.mean(0)) / np.where(std > 0, std, 1), np.nan)
        np.testing.assert_allclose(snr[name], expected, rtol=1e-9)
    assert np.isnan(snr["dreg"]).sum() > 0  # input weights of pixels that are 0 in x never move
    with pytest.raises(ValueError, match="2 noise draws"):
        gradient_snr(params, x, 1, 4, 1, np.random.default_rng(0))


def test_effective_sample_size_of_even_and_dominated_weights():
    even = np.zeros((6, 2))
    assert effective_sample_size(even) == pytest.approx(6) and effective_sample_size(even, M=3) == pytest.approx(2)
    dominated = np.array([[0.0], [-800.0], [-800.0], [-800.0]])
    assert effective_sample_size(dominated) == pytest.approx(1) and effective_sample_size(dominated, M=2) == pytest.approx(1.5)  # groups: (1, 2)


def test_summary_leaves_out_constant_parameters_and_reports_the_floor():
    s = summarize_snr(np.array([1.0, np.nan, 3.0, 2.0]), n_draws=100)
    assert s == {"median": 2.0, "mean": 2.0, "n_params": 3, "n_constant": 1, "floor": pytest.approx(0.06745, rel=1e-4)}


def test_fit_slopes_recovers_power_laws():
    grid = [{"M": M, "K": K, "theta": {e: {"median": 2.0 * (M * K) ** 0.5} for e in SNR_ESTIMATORS},
             "phi": {e: {"median": 3.0 * (M / K) ** 0.5 if e == "iwae" else K ** 0.25} for e in SNR_ESTIMATORS}}
            for M in (1, 4) for K in (1, 10, 100)]
    slopes = fit_slopes(grid)
    for M in (1, 4):
        assert slopes["K"][f"M={M}"]["theta"]["stl"] == pytest.approx(0.5)
        assert slopes["K"][f"M={M}"]["phi"]["iwae"] == pytest.approx(-0.5)
        assert slopes["K"][f"M={M}"]["phi"]["dreg"] == pytest.approx(0.25)
    assert slopes["M"]["K=10"]["theta"]["iwae"] == pytest.approx(0.5)
    assert slopes["M"]["K=10"]["phi"]["iwae"] == pytest.approx(0.5)


def test_iwae_phi_snr_falls_with_K_while_theta_and_dreg_rise():
    # Rainforth et al.'s result on a tiny model: over K = 1 .. 100, IWAE's phi SNR falls, theta's and
    # DReG's rise (the fitted slopes on this random model and seed: theta +0.40, IWAE phi -0.35, DReG +0.20)
    params, x, _ = small_problem(TINY["one-layer"], k=1, batch=1, seed=5)
    result = snr_study(params, x, ks=(1, 10, 100), Ms=(1,), n_draws=100, seed=0)
    slopes = result["slopes"]["K"]["M=1"]
    assert slopes["theta"]["iwae"] > 0.25 and slopes["phi"]["iwae"] < -0.25 and slopes["phi"]["dreg"] > 0.05, slopes
    assert slopes["theta"]["iwae"] == slopes["theta"]["dreg"]  # theta is the same estimator for all three


def test_snr_command_writes_json_and_plot(tmp_path):
    out = tmp_path / "snr"
    assert main(["snr", "--data", "synthetic", "--latent", "2", "--hidden", "6", "--train-steps", "3",
                 "--k", "1", "4", "--M", "1", "2", "--draws", "4", "--out", str(out)]) == 0
    result = json.loads((out / "snr.json").read_text())
    assert [(g["M"], g["K"]) for g in result["grid"]] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    assert set(result["slopes"]["K"]) == {"M=1", "M=2"} and set(result["slopes"]["M"]) == {"K=1", "K=4"}
    assert (out / "snr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(1 <= g["ess"] <= g["K"] for g in result["grid"])
    assert load_model_params(out / "model.npz")["p_x"]["logits"]["W"].shape == (6, 784)  # the default model, saved


def test_snr_command_reads_a_flat_npz_checkpoint(tmp_path):
    from iwae_np.model import Architecture, init_params
    params = init_params(Architecture(784, (2,), ((5,),), ((5,),)), np.random.default_rng(0))
    path = tmp_path / "model.npz"
    np.savez(path, **flatten_tree(params))
    loaded = load_model_params(path)
    assert all(np.array_equal(a, b) for a, b in zip(flatten_tree(loaded).values(), flatten_tree(params).values()))
    assert main(["snr", "--data", "synthetic", "--checkpoint", str(path), "--k", "1", "2", "--M", "1",
                 "--draws", "3", "--out", str(tmp_path / "o")]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--draws", "1"], "--draws"),
    (["--k", "0"], "--k and --M"),
    (["--checkpoint", "/nonexistent/model.npz"], "does not exist"),
    (["--hidden", "4"], "--hidden needs --latent"),
])
def test_snr_command_rejects_bad_input(argv, message, tmp_path, capsys):
    assert main(["snr", "--data", "synthetic", "--out", str(tmp_path)] + argv) == 2
    assert message in capsys.readouterr().err
