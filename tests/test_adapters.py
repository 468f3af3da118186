"""The PyTorch and JAX adapters (examples/) against the whole standard oracle suite, at float64 tolerance.

Each adapter runs in its own process, with iwae_np made unimportable there (it must work from
docs/oracle.md alone); the comparison runs here, with ``iwae-np oracle check SUITE RESULTS_DIR``.
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iwae_np import oracle
from iwae_np.cli import main

from conftest import require_module

ROOT = Path(__file__).resolve().parents[1]
# run an adapter script as __main__ with iwae_np blocked: any `import iwae_np` raises ImportError
_RUN_BLOCKED = ("import runpy, sys; sys.modules['iwae_np'] = None; script = sys.argv[1]; "
                "sys.argv = sys.argv[1:]; runpy.run_path(script, run_name='__main__')")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    directory = tmp_path_factory.mktemp("oracle_suite")
    assert main(["oracle", "export-suite", str(directory)]) == 0
    yield directory
    shutil.rmtree(directory)  # ~75 MB; pytest keeps its last three temporary trees


def run_adapter(name, suite, out):
    script = ROOT / "examples" / f"{name}_adapter.py"
    proc = subprocess.run([sys.executable, "-c", _RUN_BLOCKED, str(script), str(suite), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_suite_covers_the_issue(suite):
    names = json.loads((suite / "suite.json").read_text())["fixtures"]
    manifests = [json.loads((suite / n / "manifest.json").read_text()) for n in names]
    assert {m["architecture"]["n_stochastic_layers"] for m in manifests} == {1, 2}
    assert {m["k"] for m in manifests} == {1, 5, 50}
    assert {m["batch"] for m in manifests} >= {1, 3}
    assert {m["case"]["name"] for m in manifests} == set(oracle.HARD_CASES)
    assert {m["architecture_name"] for m in manifests} >= {"one-layer", "two-layer"}  # D = 784
    assert all(m["dtype"] == "float64" and m["tolerance"]["rtol"] == 1e-10 for m in manifests)


@pytest.mark.parametrize("adapter", ["torch", "jax"])
def test_adapter_agrees_with_every_fixture_of_the_suite(adapter, suite, tmp_path, capsys):
    require_module(adapter)  # the adapter imports it in its own process
    results = run_adapter(adapter, suite, tmp_path / adapter)
    code = main(["oracle", "check", str(suite), str(results)])  # the suite form of the command
    captured = capsys.readouterr()
    shutil.rmtree(results)
    assert code == 0, captured.out[-3000:] + captured.err[-3000:]
    names = json.loads((suite / "suite.json").read_text())["fixtures"]
    assert f"{len(names)} fixtures" in captured.out and "0 disagree" in captured.out
    assert "| grad.dreg |" in captured.out and "| normalized_weights |" in captured.out


def test_a_broken_adapter_fails_the_check(suite, tmp_path):
    # one fixture through the torch adapter, then one result nudged by 1e-8 relative
    require_module("torch")
    name = json.loads((suite / "suite.json").read_text())["fixtures"][3]
    out = run_adapter("torch", suite / name, tmp_path)
    with np.load(out / f"{name}.npz") as data:
        results = {k: data[k] for k in data.files}
    key = "grad.dreg.q_h1.log_sigma.W"
    results[key] = results[key] * (1 + 1e-8)
    np.savez(tmp_path / "broken.npz", **results)
    cmd = [sys.executable, "-m", "iwae_np.cli", "oracle", "check", str(suite / name)]
    ok = subprocess.run(cmd + [str(out / f"{name}.npz")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr
    broken = subprocess.run(cmd + [str(tmp_path / "broken.npz")], capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1
    assert f"DISAGREE: {key}" in broken.stderr
    assert f"| {key} |" in broken.stdout and "FAIL" in broken.stdout


def test_adapters_do_not_import_iwae_np():
    # (at run time run_adapter blocks the import; this also catches an import inside an unused branch)
    for name in ("torch", "jax"):
        source = (ROOT / "examples" / f"{name}_adapter.py").read_text()
        assert not re.search(r"^\s*(import|from)\s+iwae_np", source, flags=re.M), name
