"""The oracle's fixture format v1, its export and its check (iwae-np oracle); the adapters are in test_adapters.py."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from iwae_np import oracle
from iwae_np.bounds import iwae_bound, miwae_bound, normalized_weights
from iwae_np.cli import main
from iwae_np.bounds import miwae_gradient, renyi_gradient
from iwae_np.estimators import dreg_gradient
from iwae_np.model import log_weight_terms
from iwae_np.tree import flatten_tree


def _inputs(fixture):
    return fixture.model_inputs()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A two-layer fixture with k = 6 (M = 2 groups of K = 3), written and read back."""
    path = tmp_path_factory.mktemp("oracle") / "small"
    oracle.export_fixture(path, "small-two-layer", k=6, batch=3, seed=7)
    return path


def _outputs(fixture):
    return {key: fixture.arrays[key] for key in fixture.outputs}


def test_manifest_describes_every_array_and_the_conventions(small):
    fixture = oracle.load_fixture(small)
    m = fixture.manifest
    assert (m["format"], m["format_version"], m["dtype"], m["k"], m["batch"], m["seed"]) == (
        "iwae-np-oracle", 1, "float64", 6, 3, 7)
    assert m["settings"] == {"miwae_M": 2, "piwae_M": 2, "ciwae_beta": 0.3, "renyi_alpha": 0.2}
    with np.load(small / "arrays.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(m["arrays"])
    for key, meta in m["arrays"].items():
        assert list(fixture.arrays[key].shape) == meta["shape"] and meta["dtype"] == "float64"
    params, x, eps = _inputs(fixture)
    # parameter order is flatten_tree's, names map '/' -> '.'
    assert [p["name"] for p in m["parameters"]] == list(flatten_tree(params))
    assert m["parameters"][0] == {"name": "q_h1/hidden_0/W", "key": "param.q_h1.hidden_0.W", "shape": [20, 8]}
    assert [e["shape"] for e in m["eps"]] == [[6, 3, 5], [6, 3, 3]]
    assert [n["name"] for n in m["architecture"]["networks"]] == ["q_h1", "q_h2", "p_h1", "p_x"]
    grads = {k for k in fixture.outputs if k.startswith("grad.")}
    assert len(grads) == len(m["gradients"]) * len(m["parameters"])
    assert set(m["gradients"]) == {"vae", "iwae", "miwae", "ciwae", "renyi", "stl", "dreg", "rws", "piwae"}
    assert set(m["bounds"]) == {"vae", "iwae", "miwae", "ciwae", "renyi"}
    assert {k for k in fixture.inputs} == {"x", "eps.h1", "eps.h2"} | {p["key"] for p in m["parameters"]}


def test_fixture_values_are_the_library_values_on_its_inputs(small):
    fixture = oracle.load_fixture(small)
    a, s = fixture.arrays, fixture.manifest["settings"]
    params, x, eps = _inputs(fixture)
    out = log_weight_terms(params, x, eps)
    assert np.array_equal(a["log_w"], out["log_w"])
    assert np.array_equal(a["term.log_q_h2_given_h1"], out["terms"]["log_q_h2_given_h1"])
    assert np.array_equal(a["h.h2"], out["h"][1])
    assert np.array_equal(a["normalized_weights"], normalized_weights(out["log_w"]))
    assert np.array_equal(a["bound.miwae"], miwae_bound(out["log_w"], 2))
    assert a["bound_mean.iwae"] == np.mean(iwae_bound(out["log_w"]))
    for name, g in [("dreg", dreg_gradient(params, x, eps)), ("miwae", miwae_gradient(params, x, eps, 2)),
                    ("renyi", renyi_gradient(params, x, eps, s["renyi_alpha"]))]:
        for pname, value in flatten_tree(g).items():
            assert np.array_equal(a[f"grad.{name}." + pname.replace("/", ".")], value), (name, pname)


def test_fixture_identities_between_quantities(small):
    # PIWAE: theta from IWAE over all k, phi from MIWAE(M, K) with the same M; CIWAE(beta) = beta VAE + (1 - beta) IWAE
    # (beta = 0.3: a port that swaps beta and 1 - beta fails this and the fixture)
    # (equal to rounding: the estimators module computes PIWAE by weighted vector-Jacobian products)
    a = oracle.load_fixture(small).arrays

    def close(test, ref):  # relative to the array's largest entry, as oracle check measures
        return np.max(np.abs(test - ref)) <= 1e-12 * np.max(np.abs(ref))

    names = [k[len("grad.iwae."):] for k in a if k.startswith("grad.iwae.")]
    for n in names:
        source = "miwae" if n.startswith("q_") else "iwae"
        assert close(a[f"grad.piwae.{n}"], a[f"grad.{source}.{n}"]), n
        assert close(a[f"grad.ciwae.{n}"], 0.3 * a[f"grad.vae.{n}"] + 0.7 * a[f"grad.iwae.{n}"]), n
    np.testing.assert_allclose(a["bound.ciwae"], 0.3 * a["bound.vae"] + 0.7 * a["bound.iwae"], rtol=1e-14)
    assert np.all(a["bound.vae"] <= a["bound.miwae"]) and np.all(a["bound.miwae"] <= a["bound.iwae"])
    np.testing.assert_allclose(np.sum(a["normalized_weights"], axis=0), 1.0, rtol=1e-15)


def test_export_is_reproducible_from_the_seed(tmp_path, small):
    oracle.export_fixture(tmp_path / "again", "small-two-layer", k=6, batch=3, seed=7)
    first = json.loads((small / "manifest.json").read_text())
    again = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert first == again  # every checksum included
    oracle.export_fixture(tmp_path / "other", "small-two-layer", k=6, batch=3, seed=8)
    other = json.loads((tmp_path / "other" / "manifest.json").read_text())
    assert other["arrays"]["x"]["sha256"] != first["arrays"]["x"]["sha256"]


def test_default_settings_choose_a_divisor_of_k():
    assert [oracle.default_settings(k)["miwae_M"] for k in (1, 5, 6, 50, 64)] == [1, 1, 2, 5, 8]
    with pytest.raises(ValueError, match="must divide k"):
        oracle.make_fixture("small-one-layer", k=5, batch=1, seed=0, settings={"miwae_M": 2})


def test_hard_cases_are_what_their_names_say():
    f = oracle.make_fixture("small-one-layer", k=5, batch=3, seed=1, case="log-w-1e4")
    log_w = f.arrays["log_w"]
    assert -1.5e4 < log_w.min() and log_w.max() < -0.5e4
    assert np.all(np.exp(log_w) == 0)  # a naive log(mean(exp(log w))) would give -inf
    assert np.all(np.isfinite(f.arrays["bound.iwae"])) and np.all(f.arrays["bound.iwae"] > log_w.max(axis=0) - 2)

    f = oracle.make_fixture("small-two-layer", k=5, batch=2, seed=1, case="extreme-images")
    assert np.all(f.arrays["x"][0] == 0) and np.all(f.arrays["x"][1] == 1)
    # d/dW of the first recognition layer is sum_b x_b^T g_b: nothing from the all-zero image, the
    # same row for every pixel from the all-one image
    g = f.arrays["grad.iwae.q_h1.hidden_0.W"]  # (20, 8)
    assert np.all(g == g[:1]) and np.all(g != 0)

    f = oracle.make_fixture("small-one-layer", k=50, batch=3, seed=1, case="degenerate-weights")
    w = f.arrays["normalized_weights"]
    assert np.all(w.max(axis=0) > 1 - 1e-8) and np.all(np.argmax(w, axis=0) == 0)
    assert f.manifest["case"]["min_max_normalized_weight"] > 1 - 1e-8
    with pytest.raises(ValueError, match="k >= 2"):
        oracle.make_fixture("small-one-layer", k=1, batch=1, seed=1, case="degenerate-weights")


def test_float32_fixture_keeps_its_dtype_and_tolerance(tmp_path):
    m = oracle.export_fixture(tmp_path / "f32", "small-one-layer", k=5, batch=2, seed=3, dtype="float32")
    assert {meta["dtype"] for meta in m["arrays"].values()} == {"float32"}
    assert (m["tolerance"]["rtol"], m["tolerance"]["atol"]) == (1e-4, 1e-6)
    f64 = oracle.make_fixture("small-one-layer", k=5, batch=2, seed=3)
    # the float64 fixture's values agree with the float32 ones at the float32 tolerance
    rows = oracle.check_results(oracle.load_fixture(tmp_path / "f32"), _outputs(f64))
    assert all(r.passed for r in rows), [r.key for r in rows if not r.passed]


# ---------------------------------------------------------------------------------------------
# the comparison


def test_compare_arrays_definition():
    row = oracle.compare_arrays(np.array([1.0, 2.0 + 3e-10]), np.array([1.0, 2.0]), 1e-10, 1e-14)
    assert math.isclose(row.max_abs_error, 3e-10, rel_tol=1e-5) and math.isclose(row.max_rel_error, 1.5e-10, rel_tol=1e-5)
    assert not row.passed  # 3e-10 > 1e-10 * 2 + 1e-14
    assert oracle.compare_arrays(np.array([2.0 + 1e-10]), np.array([2.0]), 1e-10, 1e-14).passed
    # an all-zero reference: only the absolute floor applies
    assert oracle.compare_arrays(np.array([1e-15]), np.array([0.0]), 1e-10, 1e-14).passed
    assert not oracle.compare_arrays(np.array([1e-13]), np.array([0.0]), 1e-10, 1e-14).passed
    # non-finite values agree only with the same value in the same place; NaN never
    assert oracle.compare_arrays(np.array([-np.inf, 1.0]), np.array([-np.inf, 1.0]), 1e-10, 0).passed
    assert not oracle.compare_arrays(np.array([np.nan, 1.0]), np.array([0.5, 1.0]), 1e-10, 0).passed
    assert not oracle.compare_arrays(np.array([np.nan]), np.array([np.nan]), 1e-10, 0).passed


def test_check_accepts_the_fixtures_own_values(small, tmp_path, capsys):
    results = tmp_path / "results.npz"
    np.savez(results, **_outputs(oracle.load_fixture(small)), extra_key=np.zeros(3))  # extra keys are ignored
    assert main(["oracle", "check", str(small), str(results)]) == 0
    out = capsys.readouterr().out
    assert "| grad.dreg.q_h2.log_sigma.b | [3] |" in out
    assert "0 disagree" in out and "FAIL" not in out


@pytest.mark.parametrize("key, factor, code", [
    ("grad.dreg.q_h1.mu.W", 1 + 1e-8, 1),   # well above rtol = 1e-10: disagreement
    ("bound.renyi", 1 + 1e-8, 1),
    ("grad.stl.p_x.logits.b", 1 + 1e-13, 0),  # rounding-sized: agreement
])
def test_check_names_a_perturbed_quantity(small, tmp_path, capsys, key, factor, code):
    outputs = _outputs(oracle.load_fixture(small))
    outputs[key] = outputs[key] * factor
    np.savez(tmp_path / "results.npz", **outputs)
    assert main(["oracle", "check", str(small), str(tmp_path / "results.npz"), "--failures-only"]) == code
    captured = capsys.readouterr()
    if code:
        assert f"| {key} |" in captured.out and "FAIL" in captured.out
        assert f"DISAGREE: {key}" in captured.err
    else:
        assert "0 disagree" in captured.out


def _copy_fixture(src, dst, edit_manifest=None, edit_arrays=None):
    dst.mkdir()
    manifest = json.loads((src / "manifest.json").read_text())
    with np.load(src / "arrays.npz") as data:
        arrays = {k: data[k] for k in data.files}
    if edit_manifest:
        edit_manifest(manifest)
    if edit_arrays:
        edit_arrays(arrays)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    np.savez(dst / "arrays.npz", **arrays)
    return dst


def _check_error(capsys, fixture, results):
    assert main(["oracle", "check", str(fixture), str(results)]) == 2
    return capsys.readouterr().err


def test_check_rejects_bad_inputs_with_a_clear_error(small, tmp_path, capsys):
    outputs = _outputs(oracle.load_fixture(small))
    good = tmp_path / "good.npz"
    np.savez(good, **outputs)

    def corrupt(arrays):
        arrays["param.p_x.logits.b"] = arrays["param.p_x.logits.b"].copy()
        arrays["param.p_x.logits.b"][0] += 1e-12
    bad = _copy_fixture(small, tmp_path / "corrupt", edit_arrays=corrupt)
    assert "checksum mismatch for array 'param.p_x.logits.b'" in _check_error(capsys, bad, good)

    def v2(m):
        m["format_version"] = 2
    bad = _copy_fixture(small, tmp_path / "v2", edit_manifest=v2)
    assert "fixture format version 2 is not supported" in _check_error(capsys, bad, good)

    def other(m):
        m["format"] = "something-else"
    bad = _copy_fixture(small, tmp_path / "other", edit_manifest=other)
    assert "not an iwae-np-oracle manifest" in _check_error(capsys, bad, good)

    missing = tmp_path / "missing.npz"
    np.savez(missing, **{k: v for k, v in outputs.items() if k != "grad.rws.q_h2.hidden_1.W"})
    assert "missing key 'grad.rws.q_h2.hidden_1.W'" in _check_error(capsys, small, missing)

    wrong_shape = tmp_path / "shape.npz"
    np.savez(wrong_shape, **{**outputs, "log_w": outputs["log_w"].T})
    assert "shape mismatch for 'log_w': results have [3, 6], the fixture has [6, 3]" in _check_error(
        capsys, small, wrong_shape)

    assert "does not exist" in _check_error(capsys, small, tmp_path / "nowhere.npz")
    assert "does not exist" in _check_error(capsys, tmp_path / "nowhere", good)
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    assert "is not a readable .npz" in _check_error(capsys, small, tmp_path / "garbage.npz")
    np.savez(tmp_path / "objects.npz", log_w=np.array([{"a": 1}], dtype=object))
    assert "is not a readable .npz without pickles" in _check_error(capsys, small, tmp_path / "objects.npz")


def test_check_rejects_an_unlisted_or_missing_fixture_array(small, tmp_path, capsys):
    good = tmp_path / "good.npz"
    np.savez(good, **_outputs(oracle.load_fixture(small)))
    bad = _copy_fixture(small, tmp_path / "extra", edit_arrays=lambda a: a.update(stowaway=np.zeros(2)))
    assert "array 'stowaway' is not listed in the manifest" in _check_error(capsys, bad, good)
    bad = _copy_fixture(small, tmp_path / "lost", edit_arrays=lambda a: a.pop("eps.h2"))
    assert "array 'eps.h2' listed in the manifest is missing" in _check_error(capsys, bad, good)


def test_export_command_writes_a_loadable_fixture(tmp_path, capsys):
    assert main(["oracle", "export", str(tmp_path / "f"), "--architecture", "small-one-layer", "--k", "4",
                 "--batch", "2", "--seed", "3", "--miwae-M", "2", "--renyi-alpha", "-1"]) == 0
    assert "wrote fixture" in capsys.readouterr().out
    m = oracle.load_fixture(tmp_path / "f").manifest
    assert (m["k"], m["batch"], m["seed"], m["settings"]["miwae_M"], m["settings"]["renyi_alpha"]) == (4, 2, 3, 2, -1.0)
    assert main(["oracle", "export", str(tmp_path / "g"), "--k", "5", "--miwae-M", "2"]) == 2
    assert "miwae_M = 2 must divide k = 5" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the regression anchor: a version-1 fixture committed under tests/fixtures (220 KB). If a change to
# iwae_np is meant to change these numbers, re-export it with
#   iwae-np oracle export tests/fixtures/oracle-v1/small-two-layer_k6_b2_s2016 \
#       --architecture small-two-layer --k 6 --batch 2 --seed 2016
# and say why in the commit.
ANCHOR = Path(__file__).parent / "fixtures" / "oracle-v1" / "small-two-layer_k6_b2_s2016"


def test_committed_fixture_still_loads_and_agrees_with_the_library(capsys, tmp_path):
    fixture = oracle.load_fixture(ANCHOR)  # format, version and every checksum
    params, x, eps = fixture.model_inputs()
    outputs = oracle.compute_outputs(params, x, eps, fixture.manifest["settings"])
    rows = oracle.check_results(fixture, outputs)
    assert all(r.passed for r in rows), [(r.key, r.max_rel_error) for r in rows if not r.passed]
    # and the inputs are reproducible from the seed
    again = oracle.make_fixture("small-two-layer", k=6, batch=2, seed=2016)
    for key in fixture.inputs:
        assert again.manifest["arrays"][key]["sha256"] == fixture.manifest["arrays"][key]["sha256"], key


def test_check_of_a_whole_suite(tmp_path, capsys):
    names = [spec["name"] for spec in oracle.SUITE[:2]]
    assert oracle.export_suite(tmp_path / "suite", names=names) == names
    results = tmp_path / "results"
    results.mkdir()
    for name in names:
        np.savez(results / f"{name}.npz", **_outputs(oracle.load_fixture(tmp_path / "suite" / name)))
    assert main(["oracle", "check", str(tmp_path / "suite"), str(results)]) == 0
    out = capsys.readouterr().out
    assert f"| {names[1]} | 142 | 0 |" in out and "| grad.rws |" in out and "2 fixtures, 284 arrays, 0 disagree" in out

    broken = _outputs(oracle.load_fixture(tmp_path / "suite" / names[1]))
    broken["term.log_p_h1"] = broken["term.log_p_h1"] + 1e-6
    np.savez(results / f"{names[1]}.npz", **broken)
    assert main(["oracle", "check", str(tmp_path / "suite"), str(results)]) == 1
    assert f"DISAGREE: {names[1]}: term.log_p_h1" in capsys.readouterr().err

    (results / f"{names[0]}.npz").unlink()
    assert main(["oracle", "check", str(tmp_path / "suite"), str(results)]) == 2
    assert f"{names[0]}.npz does not exist" in capsys.readouterr().err
