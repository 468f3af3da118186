"""A seconds-long run of the benchmark suite (``bench/run.py --smoke``), so it cannot rot.

Timings are never asserted (performance is measured only by ``bench/run.py`` itself); what is
checked is that every part runs, the table is written, and, where torch is installed, that the
torch reference computes the same bound and gradient as iwae_np (the run fails otherwise).
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from conftest import require_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_matmul_flops_counts_every_dense_layer_of_the_one_layer_model():
    from common import matmul_flops
    batch, k = 3, 7
    q = 784 * 200 + 200 * 200 + 2 * 200 * 50  # q(h1|x): once per example
    p = 50 * 200 + 200 * 200 + 200 * 784  # p(x|h1): once per sample
    forward = 2 * (batch * q + k * batch * p)
    # backward: dW everywhere, dx everywhere except the first layer (its input is the data)
    backward = 2 * (batch * q + k * batch * p) + 2 * (batch * (q - 784 * 200) + k * batch * p)
    assert matmul_flops("one-layer", batch, k, backward=False) == forward
    assert matmul_flops("one-layer", batch, k) == forward + backward


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run of the suite: with the torch reference where torch is installed, numpy only otherwise."""
    out = tmp_path_factory.mktemp("bench") / "results.md"
    cmd = [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--output", str(out)]
    has_torch = importlib.util.find_spec("torch") is not None
    if not has_torch:
        cmd.append("--no-torch")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    return proc, out, has_torch


def test_bench_smoke_run_writes_the_table(smoke):
    # the numpy half: runs whether or not torch is installed, never skipped
    proc, out, _ = smoke
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    assert "| one-layer | 2 | float32 |" in text and "| one-layer | 2 | float64 |" in text
    assert "## Matrix-multiply peak" in text and "## `L_50` evaluation throughput" in text
    assert "| one-layer | float32 | 100 | 2 |" in text  # the memory row


def test_bench_smoke_compares_with_the_torch_reference(smoke):
    # the important part: every torch eager variant computes the same bound and gradient (the run fails
    # otherwise) and the ratios are reported. Skipped only where torch is optional and missing;
    # CI installs it and sets IWAE_NP_REQUIRE_OPTIONAL=1, so there it cannot skip.
    require_module("torch")
    proc, out, has_torch = smoke
    assert has_torch and proc.returncode == 0, proc.stdout + proc.stderr
    text = out.read_text()
    assert re.search(r"every torch implementation \(\d+\) against numpy", text) and "ratio [range]" in text
    assert "| `softplus/fused/flat/foreach` |" in text and "### Every torch eager variant" in text
