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


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130(monkeypatch, capsys):
    # issue 20 item 14: a Ctrl-C while numpy, scipy and autograd load printed a KeyboardInterrupt traceback, or
    # an extension turned it into "ImportError: initialization failed". Simulated here at a certain moment: a
    # SIGINT delivered in the middle of building the parser, inside an "extension" that converts a
    # KeyboardInterrupt into an ImportError, as numpy's C initialization does.
    import os
    import signal

    import iwae_np.cli as cli
    real = cli.build_parser

    def loading():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the interrupt lands at a bytecode boundary in here, if it is not held back
                pass
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
        return real()

    monkeypatch.setattr(cli, "build_parser", loading)
    assert cli.main(["check", "--help"]) == 130
    assert capsys.readouterr().err == "iwae-np: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back


def test_importing_the_command_line_loads_no_numerics():
    # what makes the above hold from the first moment: the console script's module imports neither numpy,
    # scipy nor autograd before main() holds Ctrl-C back (iwae_np/__init__ loads every name on first use)
    import subprocess
    import sys
    code = "import sys, iwae_np.cli; print(sorted({'numpy', 'scipy', 'autograd'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
