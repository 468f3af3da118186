"""Regression tests for the checker defects found by hostile testing (issue 10): each names the wrong
behaviour it catches. Unreadable inputs must give exit 2 with one line, never a traceback (which the CLI
reported as exit 1, "disagree"); nothing a user edits without detection may loosen a tolerance; an empty
suite must not pass; the suite's settings and hard cases must catch the ports they are meant to catch."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iwae_np import oracle
from iwae_np.cli import main
from iwae_np.oracle.hard_cases import SOFTPLUS_CASE_MIN_LOGIT, decoder_logits

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("defects") / "small"
    oracle.export_fixture(path, "small-one-layer", k=5, batch=3, seed=4)
    return path


def _outputs(fixture):
    return {key: fixture.arrays[key] for key in fixture.outputs}


def _exit_2(capsys, argv):
    """The command exits 2 with one ``iwae-np oracle: error:`` line naming the problem (no traceback)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("iwae-np oracle: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _copy(src, dst, edit_manifest=None, npz_bytes=None):
    dst.mkdir()
    manifest = json.loads((src / "manifest.json").read_text())
    if edit_manifest:
        edit_manifest(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    (dst / "arrays.npz").write_bytes(npz_bytes if npz_bytes is not None else (src / "arrays.npz").read_bytes())
    return dst


def test_unreadable_npz_files_exit_2_not_1(small, tmp_path, capsys):
    # catches: np.load's EOFError (empty), zipfile.BadZipFile (truncated, bad CRC) escaping as a traceback,
    # and a .npy results file (np.load returns an array, `with` on it raised TypeError)
    good = tmp_path / "good.npz"
    np.savez(good, **_outputs(oracle.load_fixture(small)))
    data = good.read_bytes()
    bad = {"empty.npz": b"", "truncated.npz": data[: len(data) // 2], "tail-cut.npz": data[:-40]}
    corrupt = bytearray(data)
    corrupt[300:360] = bytes(60)  # inside the first member: its CRC fails when it is read
    bad["corrupt.npz"] = bytes(corrupt)
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        err = _exit_2(capsys, ["oracle", "check", str(small), str(tmp_path / name)])
        assert f"results file {tmp_path / name} is not a readable .npz" in err, (name, err)
    np.save(tmp_path / "one.npy", np.zeros(3))
    err = _exit_2(capsys, ["oracle", "check", str(small), str(tmp_path / "one.npy")])
    assert "is a single .npy array, not a .npz of named arrays" in err
    assert "is a directory" in _exit_2(capsys, ["oracle", "check", str(small), str(tmp_path)])
    # the same for a fixture's own arrays.npz
    for name, content in bad.items():
        fixture = _copy(small, tmp_path / f"fixture-{name}", npz_bytes=content)
        err = _exit_2(capsys, ["oracle", "check", str(fixture), str(good)])
        assert "fixture arrays" in err and "is not a readable .npz" in err, (name, err)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(dtype="float16"), "fixture dtype 'float16' is not supported; fixtures are float32 or float64"),
    (lambda m: m.update(arrays="nothing"), "malformed manifest: 'arrays' must be a non-empty object"),
    (lambda m: m["arrays"]["log_w"].pop("sha256"), "array 'log_w' needs role (input or output), shape, dtype and sha256"),
    (lambda m: m.pop("k"), "malformed manifest: 'k' must be an integer >= 1"),
])
def test_a_malformed_manifest_exits_2(small, tmp_path, capsys, edit, message):
    # catches: KeyError / TypeError tracebacks (exit 1) from TOLERANCES[dtype] and the per-array checks
    good = tmp_path / "good.npz"
    np.savez(good, **_outputs(oracle.load_fixture(small)))
    assert message in _exit_2(capsys, ["oracle", "check", str(_copy(small, tmp_path / "f", edit)), str(good)])


def test_editing_the_manifest_dtype_never_loosens_the_tolerance(small, tmp_path, capsys):
    # catches: the tolerance read from the manifest's editable "dtype" field (float64 -> float32 turned
    # rtol 1e-10 into 1e-4 with every checksum still valid, so a result 1e-6 off passed with exit 0)
    outputs = _outputs(oracle.load_fixture(small))
    outputs["bound.iwae"] = outputs["bound.iwae"] * (1 + 1e-6)
    off = tmp_path / "off.npz"
    np.savez(off, **outputs)
    assert main(["oracle", "check", str(small), str(off)]) == 1
    capsys.readouterr()

    def to_float32(m):
        m["dtype"] = "float32"
        m["tolerance"] = {"rtol": 1e-4, "atol": 1e-6}

    edited = _copy(small, tmp_path / "edited", to_float32)
    err = _exit_2(capsys, ["oracle", "check", str(edited), str(off)])
    assert "the manifest's dtype is float32 but array" in err and "is float64" in err

    def every_dtype(m):  # the per-array dtypes too: still the arrays' bytes say float64
        to_float32(m)
        for meta in m["arrays"].values():
            meta["dtype"] = "float32"

    edited = _copy(small, tmp_path / "edited-all", every_dtype)
    assert "is float64 [" in _exit_2(capsys, ["oracle", "check", str(edited), str(off)])
    # and the tolerance a fixture is checked at is its arrays' dtype's
    fixture = oracle.load_fixture(small)
    fixture.manifest["dtype"] = "float32"
    assert fixture.tolerance == {"rtol": 1e-10, "atol": 1e-14}
    assert not all(r.passed for r in oracle.check_results(fixture, outputs))


def test_an_empty_suite_does_not_pass(tmp_path, capsys):
    # catches: `oracle check SUITE RESULTS` exiting 0 on a suite.json that lists no fixtures
    suite = tmp_path / "suite"
    suite.mkdir()
    (tmp_path / "results").mkdir()
    index = {"format": "iwae-np-oracle", "format_version": 1, "fixtures": []}
    (suite / "suite.json").write_text(json.dumps(index))
    assert "the suite lists no fixtures" in _exit_2(capsys, ["oracle", "check", str(suite), str(tmp_path / "results")])
    for fixtures in ("x", [1], ["../elsewhere"]):
        (suite / "suite.json").write_text(json.dumps({**index, "fixtures": fixtures}))
        assert "'fixtures' must be a list of fixture directory names" in _exit_2(
            capsys, ["oracle", "check", str(suite), str(tmp_path / "results")])


def test_a_fixture_without_outputs_does_not_pass(small, tmp_path, capsys):
    # catches: zero comparison rows read as "all agree" (and rows[0] raising IndexError)
    fixture = oracle.load_fixture(small)
    inputs_only = oracle.Fixture({**fixture.manifest, "arrays": {k: v for k, v in fixture.manifest["arrays"].items()
                                                               if v["role"] == "input"}},
                                 {k: fixture.arrays[k] for k in fixture.inputs})
    with pytest.raises(oracle.OracleInputError, match="has no output arrays: nothing to compare"):
        oracle.check_results(inputs_only, {})
    oracle.write_fixture(inputs_only, tmp_path / "inputs-only")
    np.savez(tmp_path / "r.npz", log_w=np.zeros(1))
    assert "of the fixture's output quantities are not listed as outputs" in _exit_2(
        capsys, ["oracle", "check", str(tmp_path / "inputs-only"), str(tmp_path / "r.npz")])


def test_relabelling_an_output_as_an_input_does_not_drop_it(small, tmp_path, capsys):
    # catches: a manifest edited so that a failing output is an "input" (checksums stay valid), which the
    # checker then skipped: fewer arrays compared is a loosened check
    outputs = _outputs(oracle.load_fixture(small))
    outputs["grad.iwae.p_x.logits.b"] = outputs["grad.iwae.p_x.logits.b"] + 1e-3
    np.savez(tmp_path / "r.npz", **outputs)
    edited = _copy(small, tmp_path / "relabelled", lambda m: m["arrays"]["grad.iwae.p_x.logits.b"].update(role="input"))
    err = _exit_2(capsys, ["oracle", "check", str(edited), str(tmp_path / "r.npz")])
    assert "1 of the fixture's output quantities are not listed as outputs, e.g. 'grad.iwae.p_x.logits.b'" in err


@pytest.mark.parametrize("perturb, code", [(False, 0), (True, 1)])
def test_check_into_a_closed_pipe_keeps_its_exit_status(small, tmp_path, perturb, code):
    # catches: `iwae-np oracle check ... | head` dying with BrokenPipeError (a traceback, exit 1 or 120).
    # The pipe's read end is closed before the child starts, so its first write certainly fails.
    outputs = _outputs(oracle.load_fixture(small))
    if perturb:
        outputs["log_w"] = outputs["log_w"] + 1e-6
    np.savez(tmp_path / "r.npz", **outputs)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "iwae_np.cli", "oracle", "check", str(small),
                               str(tmp_path / "r.npz")], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert ("DISAGREE: log_w" in proc.stderr) == perturb


# ---------------------------------------------------------------------------------------------
# the suite's settings and the softplus-threshold case


def _swapped(settings, key):
    return {**settings, key: 1.0 - settings[key]}


def test_suite_settings_separate_beta_from_1_minus_beta_and_alpha_from_1_minus_alpha():
    # catches: a port computing CIWAE with 1 - beta, or Renyi with alpha where 1 - alpha belongs, which passed
    # the whole version-1 suite (beta = alpha = 0.5)
    s = oracle.default_settings(5)
    assert len({s["ciwae_beta"], 1 - s["ciwae_beta"], s["renyi_alpha"], 1 - s["renyi_alpha"]}) == 4
    spec = next(spec for spec in oracle.SUITE if spec["k"] == 5 and spec["batch"] == 3 and "case" not in spec)
    fixture = oracle.make_fixture(spec["arch"], spec["k"], spec["batch"], spec["seed"])
    params, x, eps = fixture.model_inputs()
    for key, group in (("ciwae_beta", "ciwae"), ("renyi_alpha", "renyi")):
        port = oracle.compute_outputs(params, x, eps, _swapped(fixture.manifest["settings"], key))
        worst = oracle.worst_errors(oracle.check_results(fixture, port))
        assert worst[f"bound.{group}"] > 1e-4 and worst[f"grad.{group}"] > 1e-4, worst  # 1e6 x the tolerance
        assert max(e for g, e in worst.items() if group not in g) < 1e-15


def _torch_adapter():
    spec = importlib.util.spec_from_file_location("torch_adapter_for_defects", ROOT / "examples" / "torch_adapter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_softplus_threshold_case_catches_torch_default_softplus_by_orders_of_magnitude():
    # catches: torch.nn.functional.softplus (threshold 20: softplus(l) = l above it), which the version-1
    # suite caught on one fixture at 1.1e-10 against a 1e-10 tolerance
    import torch
    adapter = _torch_adapter()
    exact = adapter.softplus
    specs = [s for s in oracle.SUITE if s.get("case") == "softplus-threshold"]
    assert {s["arch"] for s in specs} == {"small-one-layer", "small-two-layer"}
    for spec in specs:
        fixture = oracle.make_fixture(spec["arch"], spec["k"], spec["batch"], spec["seed"], case=spec["case"])
        params, x, eps = fixture.model_inputs()
        logits = decoder_logits(params, x, eps)
        assert SOFTPLUS_CASE_MIN_LOGIT <= logits.min() + 1e-12 and logits.max() < 40
        honest = oracle.worst_errors(oracle.check_results(fixture, adapter.compute(fixture.manifest, fixture.arrays)))
        assert max(honest.values()) < 1e-12, honest  # an exact softplus agrees 100x inside the tolerance
        try:
            adapter.softplus = torch.nn.functional.softplus
            rows = oracle.check_results(fixture, adapter.compute(fixture.manifest, fixture.arrays))
        finally:
            adapter.softplus = exact
        worst = oracle.worst_errors(rows)
        grads = [e for g, e in worst.items() if g.startswith("grad.")]
        # measured: 1.1e-8 to 1.4e-8 in the worst array, every gradient group above 5e-9
        assert max(worst.values()) > 50 * 1e-10 and min(grads) > 20 * 1e-10, worst
        assert sum(not r.passed for r in rows) > len(rows) / 2
