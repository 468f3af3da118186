import subprocess
import sys


import iwae_np.verify.gradcheck as gradcheck
from iwae_np.cli import main


def test_check_prints_an_all_pass_table(capsys):
    assert main(["check", "--k", "1", "5", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "| architecture | objective | reference | parameter | max abs error | max rel error | verdict |" in out
    for needle in ["one-layer", "two-layer", "vae k=1", "iwae k=5", "finite differences", "identity",
                   "q_h2/log_sigma/W", "p_h1/mu/b", "p_x/logits/W"]:
        assert needle in out
    assert "FAIL" not in out
    assert " 0 failed" in out


def test_check_exits_nonzero_when_a_gradient_is_wrong(monkeypatch, capsys):
    # a gradient that is off by 1e-4 relative in one parameter must fail both comparisons
    true_gradient = gradcheck.iwae_gradient

    def broken(params, x, eps):
        g = true_gradient(params, x, eps)
        g["p_x"]["logits"]["b"] = g["p_x"]["logits"]["b"] * (1 + 1e-4)
        return g

    monkeypatch.setattr(gradcheck, "iwae_gradient", broken)
    assert main(["check", "--k", "5", "--architecture", "one-layer"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out
    assert "one-layer iwae k=5 finite differences p_x/logits/b" in captured.err
    assert "one-layer iwae k=5 identity p_x/logits/b" in captured.err


def test_check_rejects_bad_k(capsys):
    assert main(["check", "--k", "0"]) == 2
    assert "argument --k: must be an integer >= 1, got 0" in capsys.readouterr().err


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "iwae_np.cli", "check", "--k", "2", "--architecture", "two-layer"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "two-layer" in out.stdout and "passed, 0 failed" in out.stdout
