"""Regression tests for the oracle defects of issues 19 (section 3) and 20 (items 3, 4, 12 and 15), each named
after the wrong behaviour it catches; every one failed before its fix. Imports at the top are the oracle's
public API of before the fix, so that running this file against the old code shows each test failing on its
own rather than all of them on an import."""
import json

import numpy as np
import pytest

from iwae_np import oracle
from iwae_np.cli import main
from iwae_np.model import log_weight_terms, sample_eps
from iwae_np.oracle import variants as V
from iwae_np.oracle.replay import replay_check
from iwae_np.oracle.statistical import statistical_check
from iwae_np.tree import flatten_tree


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    path = tmp_path_factory.mktemp("v3") / "two"
    oracle.export_fixture(path, "small-two-layer", k=5, batch=3, seed=21)
    return path


@pytest.fixture(scope="module")
def stat_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("v3stat") / "f"
    oracle.export_fixture(path, "small-one-layer", k=3, batch=4, seed=11)
    return path


def _key(name, objective="iwae"):
    return f"grad.{objective}." + name.replace("/", ".")


def candidate_replay(fixture, variant="iwae", seed=1, k=None, settings=None):
    """An honest (or mistaken) replay candidate with its own noise: latents, log w, every bound, IWAE's gradient."""
    v = V.get_variant(variant)
    params, x, _ = fixture.model_inputs()
    eps = sample_eps(np.random.default_rng(seed), params, k or fixture.manifest["k"], x.shape[0])
    h = log_weight_terms(V.transform_params(v, params), x, eps)["h"]
    values, g = V.evaluate_with_gradient(v, params, x, eps)
    out = {f"h.h{l}": np.asarray(hl) for l, hl in enumerate(h, start=1)}
    out.update({"log_w": values["log_w"][:, 0], "bound_mean.iwae": values["batch"][0]})
    if settings is not None:
        every = oracle.compute_outputs(params, x, eps, settings, gradients=[])
        out.update({key: every[key] for key in every if key.startswith("bound")})
    out.update({_key(p): a for p, a in flatten_tree(g).items()})
    return out


def candidate_draws(fixture, N=40, seed=7, k=None):
    """N honest draws of the batch-mean bound and IWAE's gradient."""
    v = V.get_variant("iwae")
    params, x, _ = fixture.model_inputs()
    B = x.shape[0]
    eps = sample_eps(np.random.default_rng(seed), params, k or fixture.manifest["k"], N * B)
    out = {"bound_mean.iwae": V.evaluate(v, params, x, eps, N)["batch"]}
    grads = {_key(p): [] for p in flatten_tree(params)}
    for n in range(N):
        g = V.mean_gradient(v, params, x, [e[:, n * B:(n + 1) * B] for e in eps])
        for p, a in flatten_tree(g).items():
            grads[_key(p)].append(a)
    out.update({key: np.stack(a) for key, a in grads.items()})
    return out


def _exit_2(capsys, argv, *needles):
    """The command exits 2 with one ``error:`` line (no traceback) holding every needle."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "error: " in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _edited_copy(src, dst, edit):
    dst.mkdir()
    manifest = json.loads((src / "manifest.json").read_text())
    edit(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    (dst / "arrays.npz").write_bytes((src / "arrays.npz").read_bytes())
    return dst


# ---------------------------------------------------------------------------------------------
# issue 20, item 3: every manifest field a verdict depends on is covered by the checksums


def test_editing_k_in_the_manifest_does_not_let_a_candidate_with_another_k_pass(two_layer, tmp_path, capsys):
    # catches: replay and statistical mode following the manifest's k, which no checksum covered: k edited 5 -> 6
    # made a candidate drawing 6 samples pass both modes
    edited = _edited_copy(two_layer, tmp_path / "k6", lambda m: m.update(k=6))
    cand = candidate_replay(oracle.load_fixture(two_layer), k=6)
    np.savez(tmp_path / "r.npz", **cand)
    _exit_2(capsys, ["oracle", "replay", str(edited), str(tmp_path / "r.npz")], "k = 6", "manifest was edited")
    np.savez(tmp_path / "s.npz", **candidate_draws(oracle.load_fixture(two_layer), N=20, k=6))
    _exit_2(capsys, ["oracle", "statistical", str(edited), str(tmp_path / "s.npz")], "manifest was edited")
    for field, value in (("batch", 4), ("architecture", None)):
        def edit(m, field=field, value=value):
            if field == "architecture":
                m["architecture"]["latent_dims"] = [5, 4]
            else:
                m[field] = value
        path = _edited_copy(two_layer, tmp_path / f"edit-{field}", edit)
        _exit_2(capsys, ["oracle", "replay", str(path), str(tmp_path / "r.npz")], "manifest")


@pytest.mark.parametrize("setting, value", [("ciwae_beta", 0.7), ("renyi_alpha", 0.8), ("miwae_M", 5), ("piwae_M", 5)])
def test_editing_the_settings_does_not_let_a_port_with_those_settings_pass(two_layer, tmp_path, capsys, setting, value):
    # catches: replay reading settings.ciwae_beta from the manifest unchecked, so a port computing CIWAE with
    # 1 - beta passed once the manifest said 0.7 (its checksums stayed valid)
    fixture = oracle.load_fixture(two_layer)
    settings = {**fixture.manifest["settings"], setting: value}
    edited = _edited_copy(two_layer, tmp_path / "edited", lambda m: m["settings"].update({setting: value}))
    np.savez(tmp_path / "r.npz", **candidate_replay(fixture, settings=settings))
    _exit_2(capsys, ["oracle", "replay", str(edited), str(tmp_path / "r.npz")], "settings were edited")
    # and the untouched fixture with the honest settings still agrees
    np.savez(tmp_path / "ok.npz", **candidate_replay(fixture, settings=fixture.manifest["settings"]))
    assert main(["oracle", "replay", str(two_layer), str(tmp_path / "ok.npz")]) == 0


# ---------------------------------------------------------------------------------------------
# issue 20, item 4: comparisons that passed what they should not


@pytest.mark.parametrize("flag", ["--atol", "--rtol"])
def test_an_infinite_tolerance_never_makes_a_nan_agree(two_layer, tmp_path, capsys, flag):
    # catches: `oracle replay --atol inf` with an all-NaN log_w saying "18 agree" (inf <= inf), and the same in
    # `oracle check`
    fixture = oracle.load_fixture(two_layer)
    cand = candidate_replay(fixture)
    cand["log_w"] = np.full_like(cand["log_w"], np.nan)
    np.savez(tmp_path / "r.npz", **cand)
    assert main(["oracle", "replay", str(two_layer), str(tmp_path / "r.npz"), flag, "inf", "--no-diagnosis"]) == 1
    assert "log_w" in capsys.readouterr().err
    outputs = {key: fixture.arrays[key] for key in fixture.outputs}
    outputs["log_w"] = np.full_like(outputs["log_w"], np.nan)
    np.savez(tmp_path / "c.npz", **outputs)
    assert main(["oracle", "check", str(two_layer), str(tmp_path / "c.npz"), flag, "inf", "--no-diagnosis"]) == 1
    assert "DISAGREE: log_w" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "-1"])
@pytest.mark.parametrize("mode", ["check", "replay"])
def test_a_nan_or_negative_tolerance_exits_2(two_layer, tmp_path, capsys, mode, value):
    # catches: `--rtol nan` or `-1` giving exit 1 with every array DISAGREE instead of a usage error
    fixture = oracle.load_fixture(two_layer)
    results = ({key: fixture.arrays[key] for key in fixture.outputs} if mode == "check" else candidate_replay(fixture))
    np.savez(tmp_path / "r.npz", **results)
    for flag in ("--rtol", "--atol"):
        _exit_2(capsys, ["oracle", mode, str(two_layer), str(tmp_path / "r.npz"), flag, value], flag)
    with pytest.raises(oracle.OracleInputError, match="rtol must be a number >= 0"):
        replay_check(fixture, candidate_replay(fixture), rtol=float(value))


@pytest.mark.parametrize("what", ["complex", "strings", "structured", "bytes"])
def test_replay_and_statistical_refuse_arrays_that_are_not_real_numbers(two_layer, stat_path, tmp_path, capsys, what):
    # catches: replay and statistical accepting complex arrays and numbers given as strings (oracle check refuses
    # them), and their TypeError tracebacks on latents, bounds or draws of strings or a structured dtype
    def convert(a):
        a = np.asarray(a)
        if what == "complex":
            return a.astype(np.complex128)
        if what == "strings":
            return a.astype(str)
        if what == "bytes":
            return a.astype("S32")
        out = np.zeros(a.shape, dtype=[("value", "f8"), ("other", "f8")])
        out["value"] = a
        return out

    cand = candidate_replay(oracle.load_fixture(two_layer))
    for key in ("h.h1", "log_w", "bound_mean.iwae"):
        np.savez(tmp_path / "r.npz", **{**cand, key: convert(cand[key])})
        _exit_2(capsys, ["oracle", "replay", str(two_layer), str(tmp_path / "r.npz")], repr(key), "real numbers")
    draws = candidate_draws(oracle.load_fixture(stat_path), N=20)
    for key in ("bound_mean.iwae", "grad.iwae.p_x.logits.b"):
        np.savez(tmp_path / "s.npz", **{**draws, key: convert(draws[key])})
        _exit_2(capsys, ["oracle", "statistical", str(stat_path), str(tmp_path / "s.npz")], repr(key), "real numbers")


# ---------------------------------------------------------------------------------------------
# issue 20, items 12 and 15: one-line errors that name the flag, estimates before work


@pytest.mark.parametrize("argv, flag", [
    (["export", "{d}", "--miwae-M", "0"], "--miwae-M"),
    (["export", "{d}", "--seed", "-1"], "--seed"),
    (["export", "{d}", "--k", "0"], "--k"),
    (["export", "{d}", "--ciwae-beta", "nan"], "--ciwae-beta"),
    (["statistical", "{f}", "{s}", "--seed", "-1"], "--seed"),
    (["statistical", "{f}", "{s}", "--groups", "0"], "--groups"),
    (["statistical", "{f}", "{s}", "--groups", "1"], "--groups"),
    (["statistical", "{f}", "{s}", "--target", "inf"], "--target"),
    (["statistical", "{f}", "{s}", "--target", "0"], "--target"),
    (["statistical", "{f}", "{s}", "--alpha", "1"], "--alpha"),
    (["statistical", "{f}", "{s}", "--reference-draws", "5"], "--reference-draws"),
])
def test_a_bad_flag_is_refused_naming_it(stat_path, tmp_path, capsys, argv, flag):
    # catches: `--seed -1` failing deep in numpy without naming the flag, `--miwae-M 0` a ZeroDivisionError,
    # `--groups 0` silently becoming 2, `--target inf` accepted (a recommended N of 0)
    np.savez(tmp_path / "s.npz", **candidate_draws(oracle.load_fixture(stat_path), N=20))
    argv = [a.format(d=tmp_path / "new", f=stat_path, s=tmp_path / "s.npz") for a in argv]
    _exit_2(capsys, ["oracle", *argv], f"argument {flag}")
    assert not (tmp_path / "new").exists()


def test_the_library_refuses_the_same_values(stat_path):
    # the library entry points check what the command line checks (a script does not go through argparse)
    fixture = oracle.load_fixture(stat_path)
    draws = candidate_draws(fixture, N=20)
    for kwargs, message in (({"groups": 0}, "groups must be an integer >= 2"), ({"groups": 1}, "groups must be"),
                            ({"target": float("inf")}, "finite number > 0"), ({"seed": -1}, "seed")):
        with pytest.raises(oracle.OracleInputError, match=message):
            statistical_check(fixture, draws, **kwargs)
    for settings in ({"miwae_M": 0}, {"piwae_M": 0}, {"ciwae_beta": float("nan")}, {"miwae_M": 2.5}):
        with pytest.raises(ValueError, match="miwae_M|piwae_M|ciwae_beta"):
            oracle.make_fixture("small-one-layer", 5, 3, 0, settings=settings)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        oracle.make_fixture("small-one-layer", 5, 3, -1)


def test_a_fixture_or_reference_too_large_for_the_machine_is_refused_before_any_work(stat_path, tmp_path, capsys,
                                                                                       monkeypatch):
    # catches: `oracle export --k 3000000` computing for 27 s and ending in MemoryError, and `oracle statistical
    # --reference-draws 1000000000` trying to allocate 8.9 GiB: the estimate comes first, in one line
    from iwae_np.oracle import budget
    monkeypatch.setattr(budget, "available_memory", lambda: 8 * 2 ** 30)  # an 8 GiB machine, whatever this one is
    err = _exit_2(capsys, ["oracle", "export", str(tmp_path / "big"), "--k", "3000000"], "of memory", "refused")
    assert "8 GiB available" in err and not (tmp_path / "big").exists()
    np.savez(tmp_path / "s.npz", **candidate_draws(oracle.load_fixture(stat_path), N=20))
    _exit_2(capsys, ["oracle", "statistical", str(stat_path), str(tmp_path / "s.npz"), "--reference-draws",
                     "1000000000"], "--reference-draws", "refused")
    # the estimates are not too eager: the suite's largest fixture and the default reference draws fit easily
    monkeypatch.setattr(budget, "available_memory", lambda: 2 * 2 ** 30)
    assert oracle.make_fixture("two-layer", 5, 2, 0).manifest["k"] == 5
    assert statistical_check(oracle.load_fixture(stat_path), str(tmp_path / "s.npz"), diagnose=False).draws == 20


def test_latents_far_too_large_give_no_training_advice(two_layer, tmp_path, capsys):
    # catches: replay of latents 1e300 times too large answering with the model's training advice ("use a
    # smaller learning rate"), which means nothing to a candidate that only wrote latents
    cand = candidate_replay(oracle.load_fixture(two_layer))
    cand["h.h1"] = cand["h.h1"] * 1e300
    np.savez(tmp_path / "r.npz", **cand)
    err = _exit_2(capsys, ["oracle", "replay", str(two_layer), str(tmp_path / "r.npz")], "h.h", "overflow")
    assert "learning rate" not in err


# ---------------------------------------------------------------------------------------------
# issue 19, section 3: false alarms and defects found trying the oracle as a user would


@pytest.fixture(scope="module")
def log_w_1e4():
    """The suite's small one-layer fixture with log weights near -1e4."""
    spec = next(s for s in oracle.SUITE if s.get("case") == "log-w-1e4" and s["arch"] == "small-one-layer")
    return oracle.make_fixture(spec["arch"], spec["k"], spec["batch"], spec["seed"], case=spec["case"])


def test_a_rounding_difference_on_a_coordinate_that_barely_varies_is_not_a_bias(log_w_1e4):
    # catches: Welch's test calling a 1e-13 difference a bias where a coordinate varies by 1e-16 between draws
    # (p_x/logits/b on this fixture): Pyro's and NumPyro's correct RenyiELBO were rejected at z = 20 for it
    draws = candidate_draws(log_w_1e4, N=60)
    key = "grad.iwae.p_x.logits.b"
    spread = np.std(draws[key], axis=0)
    assert np.min(spread) < 1e-12 * np.max(np.abs(draws[key]))  # (the premise: some coordinate barely varies)
    rounded = {**draws, key: draws[key] + 1e-13 * np.max(np.abs(draws[key]))}  # another framework's rounding
    report = statistical_check(log_w_1e4, rounded, diagnose=False)
    assert report.passed, [(t.key, t.max_abs_z, t.worst) for t in report.tests]
    # the floor is rounding, not a tolerance that hides a bias: 1e-6 relative on those coordinates is caught
    biased = {**draws, key: draws[key] * (1 + 1e-6)}
    report = statistical_check(log_w_1e4, biased, diagnose=False)
    assert not report.passed and report.tests[-1].worst.startswith(key), [(t.key, t.worst) for t in report.tests]


def test_the_power_line_is_made_from_coordinates_that_vary_and_from_iwae_nps_spread(log_w_1e4, stat_path):
    # catches: "N for a 1% bias: 1" from a coordinate that varies by rounding only, and "N: 6.6e9" for a scaled
    # candidate (the power of a test of an honest candidate was computed from the candidate's own spread)
    report = statistical_check(log_w_1e4, candidate_draws(log_w_1e4, N=60), diagnose=False)
    grad = next(t for t in report.tests if t.key == "grad.iwae")
    assert grad.noise_floor > 1e-6 and grad.recommended_draws >= 20, grad
    assert "vary by less than their rounding floor and are left out of the power" in grad.power_note
    fixture = oracle.load_fixture(stat_path)
    honest = candidate_draws(fixture, N=40)
    scaled = {key: 1000 * a for key, a in honest.items()}
    a = statistical_check(fixture, honest, diagnose=False)
    b = statistical_check(fixture, scaled, diagnose=False)
    assert not b.passed
    assert [t.recommended_draws for t in a.tests] == [t.recommended_draws for t in b.tests]
    assert [t.noise_floor for t in a.tests] == [t.noise_floor for t in b.tests]


def _shared_noise_candidate(fixture, seed):
    """An honest candidate that draws one noise per sample index and shares it across the batch."""
    params, x, _ = fixture.model_inputs()
    k, B = fixture.manifest["k"], fixture.manifest["batch"]
    e = np.random.default_rng(seed).standard_normal((k, 1, 4))
    eps = [np.repeat(e, B, axis=1)]
    h = log_weight_terms(params, x, eps)["h"]
    values, g = V.evaluate_with_gradient(V.REFERENCE, params, x, eps)
    return {"h.h1": h[0], "log_w": values["log_w"][:, 0], "bound_mean.iwae": values["batch"][0],
            **{_key(p): a for p, a in flatten_tree(g).items()}}


def test_noise_shared_across_examples_passes_replay():
    # catches: the N(0, 1) tests pooling every example as if independent, so one noise draw per sample index
    # shared by the batch (each example's estimate unbiased) was rejected, blaming the sigma convention
    fixture = oracle.make_fixture("small-one-layer", 50, 20, 3)
    report = replay_check(fixture, _shared_noise_candidate(fixture, seed=1))
    assert report.passed, report.problems
    assert all(st["examples"] == 20 and st["n"] == 50 * 4 for st in report.noise)


def test_a_convention_is_not_blamed_when_every_value_agrees(two_layer):
    # catches: "check the sigma convention ... and the dense layer" for latents whose values all agree (iwae-np's
    # conventions reproduce the candidate's own log w there, so the conventions are right): here the noise is
    # +-1 (mean 0, variance 1, not normal), the values exact
    fixture = oracle.make_fixture("small-one-layer", 50, 3, 3)
    params, x, _ = fixture.model_inputs()
    eps = [np.random.default_rng(0).choice([-1.0, 1.0], (50, 3, 4))]
    values, g = V.evaluate_with_gradient(V.REFERENCE, params, x, eps)
    cand = {"h.h1": log_weight_terms(params, x, eps)["h"][0], "log_w": values["log_w"][:, 0],
            "bound_mean.iwae": values["batch"][0]}
    report = replay_check(fixture, cand)
    assert not report.passed and all(r.passed for r in report.rows)
    assert "conventions are iwae-np's" in report.problems[0] and "sigma convention" not in report.problems[0]
    # and with a wrong convention the values disagree, so the convention is named
    wrong = replay_check(oracle.load_fixture(two_layer), candidate_replay(oracle.load_fixture(two_layer),
                                                                         "transposed-W", k=50))
    assert any("check the sigma convention" in p for p in wrong.problems)


@pytest.mark.parametrize("mode", ["check", "replay"])
def test_failures_only_prints_no_empty_table(two_layer, tmp_path, capsys, mode):
    # catches: `--failures-only` printing a table header with no rows when every array agrees
    fixture = oracle.load_fixture(two_layer)
    results = ({key: fixture.arrays[key] for key in fixture.outputs} if mode == "check" else candidate_replay(fixture))
    np.savez(tmp_path / "r.npz", **results)
    assert main(["oracle", mode, str(two_layer), str(tmp_path / "r.npz"), "--failures-only"]) == 0
    out = capsys.readouterr().out
    assert "| quantity |" not in out and "none of the" in out and "arrays disagrees" in out


def test_no_stray_runtime_warning_on_the_log_w_1e4_fixture(log_w_1e4, recwarn):
    # catches: "invalid value encountered in subtract" from the spread of a variant whose bound is -inf there
    # (no max shift), printed while diagnosing a failing candidate
    draws = {key: 1.5 * a for key, a in candidate_draws(log_w_1e4, N=20).items()}
    report = statistical_check(log_w_1e4, draws)
    assert not report.passed and report.diagnosis
    cand = candidate_replay(log_w_1e4, "vae")
    assert not replay_check(log_w_1e4, cand).passed
    assert [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)] == []


def test_statistical_clients_choose_n_and_size_the_file_before_drawing(capsys):
    # catches: no default N (each client drew 1000), so the guide's paper-sized example wrote 1.67 GB and needed
    # 5 GB of memory without a word; now N defaults to 400, or fewer for a file under 256 MiB, with a warning
    # when asked for more, and iwae-np's default_draws says the same
    import importlib.util
    from pathlib import Path
    from iwae_np.oracle.statistical import MAX_RESULTS_BYTES, default_draws, results_bytes
    small = oracle.make_fixture("small-one-layer", 5, 3, 0).manifest
    paper = oracle.make_fixture("two-layer", 5, 4, 0).manifest
    assert default_draws(small) == 400
    assert 20 <= default_draws(paper) < 400 and results_bytes(paper, default_draws(paper)) <= MAX_RESULTS_BYTES
    assert results_bytes(paper, 400) > 1.5e9  # the 1.67 GB
    root = Path(__file__).resolve().parents[1] / "examples"
    for name in ("pyro_client", "torch_iwae_client"):
        spec = importlib.util.spec_from_file_location(f"{name}_plan", root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.plan_draws(small, None) == default_draws(small)
        assert module.plan_draws(paper, None) == default_draws(paper)
        assert capsys.readouterr().err == ""
        assert module.plan_draws(paper, 400) == 400
        assert "warning: 400 draws" in capsys.readouterr().err
    numpyro_source = (root / "numpyro_client.py").read_text()
    assert "plan_draws(manifest, args.draws)" in numpyro_source and "default=None" in numpyro_source


# ---------------------------------------------------------------------------------------------
# issue 19, section 2: where it disagrees, and a diagnosis that knows its limits


def _fixture_outputs(fixture):
    return {key: np.array(fixture.arrays[key]) for key in fixture.outputs}


def test_a_check_leads_with_the_network_layer_and_term_that_differ(two_layer, tmp_path, capsys):
    # catches: a report that says only which arrays differ ("grad.iwae.p_x.logits.W, ...") and leaves the reader
    # to work out that the generative network's output layer and log p(x|h1) are the culprits
    fixture = oracle.load_fixture(two_layer)
    results = _fixture_outputs(fixture)
    results["term.log_p_x_given_h1"] += 1e-3
    results["log_w"] += 1e-3
    for key in ("grad.iwae.p_x.logits.W", "grad.iwae.p_x.logits.b"):
        results[key] = results[key] * 1.01
    np.savez(tmp_path / "r.npz", **results)
    assert main(["oracle", "check", str(two_layer), str(tmp_path / "r.npz"), "--no-diagnosis"]) == 1
    out = capsys.readouterr().out
    lead = out.split("\n\n")[0]
    assert lead.startswith("where: "), out[:500]
    assert ("the term log p(x|h1) of log w differs; log p(h1|h2), log p(h2), log q(h1|x), log q(h2|h1) agree"
            in lead), lead
    assert ("grad.iwae differs in the generative network (theta): p_x/logits "
            "(the recognition network (phi) agrees)") in lead, lead
    from iwae_np.oracle.localise import localise
    where = localise(oracle.check_results(fixture, results))
    assert where.gradients == {"iwae": {"theta": ["p_x/logits"]}} and where.log_w is True


def _second_pass_candidate(fixture, seed=1):
    """A replay candidate with an unknown bug: right latents, log w and bound, but its gradient weights each
    sample by the normalized weights of a second, independent pass (another noise draw)."""
    from autograd import grad
    from iwae_np.bounds import normalized_weights
    from iwae_np.model import log_importance_weights
    params, x, _ = fixture.model_inputs()
    k, B = fixture.manifest["k"], x.shape[0]
    rng = np.random.default_rng(seed)
    eps, eps2 = sample_eps(rng, params, k, B), sample_eps(rng, params, k, B)
    out = candidate_replay(fixture, seed=seed)
    h = log_weight_terms(params, x, eps)["h"]
    w2 = np.asarray(normalized_weights(log_importance_weights(params, x, eps2)))  # (k, B), from the second pass
    g = grad(lambda p: np.sum(w2 * log_importance_weights(p, x, eps)) / B)(params)
    out.update({f"h.h{l}": np.asarray(hl) for l, hl in enumerate(h, start=1)})
    out.update({_key(p): a for p, a in flatten_tree(g).items()})
    return out


def test_an_unknown_mistake_is_not_given_a_closest_known_one(two_layer, tmp_path, capsys):
    # catches: a weights-from-a-second-pass bug reported as "closest: vae, k-1" (unrelated mistakes ranked by
    # distance); a mistake is named only when it explains every number to the tolerance
    fixture = oracle.load_fixture(two_layer)
    cand = _second_pass_candidate(fixture)
    np.savez(tmp_path / "r.npz", **cand)
    assert main(["oracle", "replay", str(two_layer), str(tmp_path / "r.npz")]) == 1
    out = capsys.readouterr().out
    first = out.split("\n")[0]
    assert first.startswith("where: grad.iwae differs in the recognition network (phi): q_h1/hidden_0") and \
        "the generative network (theta): p_h1/hidden_0" in first and "while log w and the bounds agree" in first, first
    diagnosis = out[out.index("diagnosis:"):]
    assert "match no known mistake" in diagnosis and "closest" not in diagnosis
    for name in ("vae", "k-1", "k+1", "renyi-0.5", "not-detached"):
        assert f"{name}:" not in diagnosis and f"matches {name}" not in diagnosis
    assert "grad.iwae, generative network (theta) matches no known gradient" in diagnosis
    # a known mistake is still named, with its numbers
    np.savez(tmp_path / "v.npz", **candidate_replay(fixture, "vae"))
    assert main(["oracle", "replay", str(two_layer), str(tmp_path / "v.npz")]) == 1
    out = capsys.readouterr().out
    assert "diagnosis: the candidate matches vae\n  vae: " in out and "match: <= 1e-10" in out


@pytest.fixture(scope="module")
def k50():
    return oracle.make_fixture("small-two-layer", 50, 3, 5)


@pytest.mark.parametrize("objective, role, known", [
    ("dreg", "phi", "stl"),                  # DReG's phi without squaring the weights is STL's
    ("ciwae", "phi", "ciwae(1-beta)"),       # CIWAE with 1 - beta
    ("ciwae", "theta", "ciwae(1-beta)"),
    ("miwae", "phi", "miwae(M<->K)"),        # M groups of K swapped: 10 groups of 5 for 5 groups of 10
    ("piwae", "phi", "iwae"),                # PIWAE's phi as IWAE's (all k samples in one group)
    ("piwae", "theta", "miwae"),             # PIWAE's theta as MIWAE's
    ("rws", "phi", "iwae"),                  # wake-phi replaced by the reparameterized IWAE gradient
    ("miwae", "theta", "iwae"),              # MIWAE computed as IWAE (M = 1)
])
def test_the_gradients_of_every_objective_are_diagnosed_for_theta_and_phi_separately(k50, objective, role, known):
    # catches: a diagnosis that knew only IWAE's mistakes, so a port's wrong DReG, CIWAE, MIWAE, PIWAE or RWS
    # gradient was "disagree" with nothing to say, and one that could not say which half (theta, phi) is wrong
    from iwae_np.oracle.diagnosis import diagnose_gradients, known_gradients
    from iwae_np.oracle.keys import role_of
    params, x, eps = k50.model_inputs()
    settings = k50.manifest["settings"]
    known_trees = {name: flatten_tree(g) for name, (_, g) in known_gradients(params, x, eps, settings).items()}
    results = _fixture_outputs(k50)
    for p, value in known_trees[known].items():
        if role_of(p.split("/")[0]) == role:
            results[_key(p, objective)] = value
    rows = oracle.check_results(k50, results)
    assert {r.key.split(".")[1] for r in rows if not r.passed} == {objective}
    parts = {(m.objective, m.role): m for m in diagnose_gradients(params, x, results, eps, settings)}
    assert all(m.agrees for key, m in parts.items() if key != (objective, role))
    assert not parts[objective, role].agrees and known in parts[objective, role].matches, parts[objective, role]


def test_statistical_split_by_network_is_in_the_report_and_the_api(stat_path, tmp_path, capsys):
    # catches: z-scores given only per quantity (grad.iwae: max |z| 9), the split by network computed by private
    # functions only; now QuantityTest.by_network / by_layer / by_role and split_by_network are public, and the
    # report leads with the network and layer that differ
    from iwae_np.oracle.statistical import SplitZ, split_by_network
    fixture = oracle.load_fixture(stat_path)
    draws = candidate_draws(fixture, N=60)
    for key in draws:
        if key.startswith("grad.iwae.p_x.logits."):
            draws[key] = draws[key] * 1.3
    report = statistical_check(fixture, draws, diagnose=False)
    grad = next(t for t in report.tests if t.key == "grad.iwae")
    assert grad.by_role["theta"].rejected > 0 and grad.by_role["phi"].rejected == 0, grad.by_role
    assert [layer for layer, s in grad.by_layer.items() if s.rejected] == ["p_x/logits"]
    assert set(grad.by_network) == {"q_h1", "p_x"} and isinstance(grad.by_network["p_x"], SplitZ)
    assert sum(s.coordinates for s in grad.by_layer.values()) == grad.n_coordinates
    by_net, by_layer = split_by_network(["grad.iwae.q_h1.mu.W[0, 0]", "grad.iwae.p_x.logits.b[1]"],
                                        np.array([1.0, 7.0]), 4.0)
    assert by_net["p_x"].rejected == 1 and by_net["q_h1"].rejected == 0 and by_layer["p_x/logits"].max_abs_z == 7.0
    np.savez(tmp_path / "s.npz", **draws)
    assert main(["oracle", "statistical", str(stat_path), str(tmp_path / "s.npz"), "--no-diagnosis"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("where: grad.iwae differs in the generative network (theta): p_x/logits ("), out[:300]
    assert "grad.iwae by network: phi (q_h1) max |z|" in out


def test_statistical_mode_diagnoses_each_part_of_any_objectives_gradient():
    # catches: a statistical diagnosis that knew only IWAE's mistakes: a port's CIWAE gradient with 1 - beta was
    # "disagree" with nothing to say; now each rejected part (theta, phi) is tested against the draws of every
    # known gradient and the ones consistent with it are named
    from iwae_np.oracle.diagnosis import known_gradient_functions
    fixture = oracle.make_fixture("small-one-layer", 5, 4, 11)
    params, x, _ = fixture.model_inputs()
    fn = known_gradient_functions(fixture.manifest["settings"], 5, 4)["ciwae(1-beta)"][1]
    rng, draws = np.random.default_rng(3), {}
    for _ in range(100):
        for p, a in flatten_tree(fn(params, x, sample_eps(rng, params, 5, 4))).items():
            draws.setdefault(_key(p, "ciwae"), []).append(a)
    report = statistical_check(fixture, {key: np.stack(a) for key, a in draws.items()})
    assert not report.passed
    parts = {m.role: m for m in report.gradient_diagnosis}
    assert set(parts) == {"theta", "phi"} and not parts["theta"].agrees and not parts["phi"].agrees
    assert "ciwae(1-beta)" in parts["theta"].matches and parts["phi"].matches == ["ciwae(1-beta)"], parts
