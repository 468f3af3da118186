"""The experiments end to end on real data (the offline mnist5k set): training improves the bound,
resume is exact with dynamic binarization, and iwae-np train / evaluate / table / plot work on a
tiny schedule and model, including Ctrl-C (SIGINT) and --resume in a subprocess."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from iwae_np.cli import main
from iwae_np.experiments.evaluation import iwae_log_likelihood
from iwae_np.data import load_data
from iwae_np.experiments.cells import table_cells
from iwae_np.experiments.paper import PAPER_TABLE1
from iwae_np.experiments.table import markdown_table
from iwae_np.model import Architecture, init_params
from iwae_np.experiments import TrainConfig, load_checkpoint, paper_schedule, train
from iwae_np.tree import flatten_tree

from conftest import ROOT, child_env, run_driver, write_idx_images

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--latent", "5", "--hidden", "20"]
SMALL_DATA = ["--data", "mnist5k", "--train-subset", "200", "--test-subset", "60", "--monitor-size", "60"]


@pytest.fixture(scope="module")
def mnist5k():
    return load_data("mnist5k", train_subset=1000, test_subset=200)


def test_short_run_on_real_data_improves_the_test_bound(mnist5k, tmp_path):
    arch = Architecture(784, (10,), ((50,),), ((50,),))
    config = TrainConfig(architecture=arch, objective="iwae", k=5, schedule=paper_schedule(2, 0.34),
                         monitor_k=10, monitor_size=200, data={"name": "mnist5k"})
    out = train(mnist5k, config, tmp_path, progress=False)
    test = mnist5k.binarized_test(seed=0)
    # the starting point: Glorot weights, output bias from the training mean (a pixel-independent model)
    start = init_params(arch, np.random.Generator(np.random.PCG64(0)), np.float32, x_mean=mnist5k.train_mean)
    before = np.mean(iwae_log_likelihood(start, test, np.random.default_rng(1), k=10))
    after = np.mean(iwae_log_likelihood(out["params"], test, np.random.default_rng(1), k=10))
    assert after > before + 10, (before, after)  # 2 passes over 1,000 digits: from about -209 to -188
    assert out["history"][-1]["test_bound"] > out["history"][0]["test_bound"]


def test_resume_is_bit_identical_with_dynamic_binarization(mnist5k, tmp_path):
    arch = Architecture(784, (4,), ((10,),), ((10,),))
    config = TrainConfig(architecture=arch, k=3, schedule=paper_schedule(2, 1.0), monitor_size=0,
                         data={"name": "mnist5k"})
    straight = train(mnist5k, config, tmp_path / "a", progress=False)

    def stop(info):
        if info["global_step"] == 77:  # mid-pass of stage 1
            raise KeyboardInterrupt

    assert train(mnist5k, config, tmp_path / "b", progress=False, callback=stop)["status"] == "interrupted"
    resumed = train(mnist5k, config, tmp_path / "b", resume=True, progress=False)
    for name, value in flatten_tree(straight["params"]).items():
        assert np.array_equal(value, flatten_tree(resumed["params"])[name]), name


def test_cli_train_evaluate_plot(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *SMALL_DATA, *TINY, "--objective", "vae", "--k", "2", "--stages", "2",
                 "--pass-scale", "0.34", "--out", str(run), "--no-progress"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["stage"] == 1 and record["passes_done"] == 2 and record["objective"] == "vae"
    assert [json.loads(l)["stage"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert load_checkpoint(run)["meta"]["status"] == "finished"

    assert main(["evaluate", str(run), "--k", "30", "--train-subset", "20", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((run / "evaluation.json").read_text())
    assert f"test NLL (-L_30, 60 images): {result['test_nll']:.2f}" in printed
    assert result["n_test"] == 60 and result["n_train_eval"] == 20 and result["eval_k"] == 30
    assert 50 < result["test_nll"] < 600 and len(result["active_unit_values"][0]) == 5
    assert result["active_units"][0] == sum(v > 0.01 for v in result["active_unit_values"][0])

    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    for name in ("training_curves.png", "active_units.png", "samples.png"):
        assert (tmp_path / "figs" / name).read_bytes()[:8] == PNG_MAGIC

    # --init-from: continue the VAE with IWAE at a later stage (the paper's Table 2 experiment)
    cont = tmp_path / "cont"
    assert main(["train", *SMALL_DATA, "--init-from", str(run), "--objective", "iwae", "--k", "3",
                 "--stages", "2", "--start-stage", "1", "--pass-scale", "0.34", "--out", str(cont),
                 "--no-progress"]) == 0
    meta = load_checkpoint(cont)["meta"]
    assert meta["config"]["init_from"] == str(run) and meta["history"][0]["lr"] == pytest.approx(1e-3 * 10 ** (-1 / 7))


def test_cli_table_runs_cells_in_parallel_skips_finished_ones_and_draws_figures(tmp_path, capsys):
    out = tmp_path / "table"
    args = ["table", *SMALL_DATA, *TINY, "--layers", "1", "--k", "1", "3", "--stages", "1", "--pass-scale", "0.2",
            "--eval-k", "10", "--eval-train-subset", "20", "--out", str(out), "--no-progress"]
    assert main(args + ["--jobs", "2"]) == 0
    first = capsys.readouterr()
    lines = [l for l in first.out.splitlines() if l.startswith("| 1 |")]
    assert [l.split("|")[2].strip() for l in lines] == ["1", "3"]
    results = {r["cell"]: r for r in json.loads((out / "results.json").read_text()) if not r.get("shared_with")}
    assert sorted(results) == ["iwae-k3-L1", "vae-k1-L1", "vae-k3-L1"]  # IWAE k=1 is the VAE k=1 cell
    k1 = lines[0].split("|")
    assert k1[3] == k1[5] and k1[4] == k1[6]  # shown in both columns
    assert f"{results['iwae-k3-L1']['test_nll']:.2f}" in lines[1]
    assert lines[0].endswith("| 86.76 / 19 | 86.76 / 19 |") and lines[1].endswith("| – | – |")  # no paper k=3
    for name in ("nll_vs_k.png", "training_curves_L1.png", "active_units_L1.png", "samples_L1.png"):
        assert (out / "figures" / name).read_bytes()[:8] == PNG_MAGIC
    assert (out / "table.md").read_text().startswith("| layers | k |")

    mtime = (out / "vae-k3-L1" / "checkpoint.npz").stat().st_mtime_ns
    assert main(args + ["--jobs", "1", "--no-figures"]) == 0  # nothing left to do
    assert first.out.splitlines()[:4] == capsys.readouterr().out.splitlines()[:4]
    assert (out / "vae-k3-L1" / "checkpoint.npz").stat().st_mtime_ns == mtime


def test_markdown_table_layout_and_paper_numbers():
    def res(obj, k, L, nll, au):
        return {"status": "finished", "objective": obj, "k": k, "layers": L, "test_nll": nll, "active_units": au}

    results = [res("vae", 50, 2, 90.123, [17, 5]), res("iwae", 50, 2, 88.0, [26, 7]), res("vae", 1, 2, 95.0, [16, 4])]
    table = markdown_table(results, "mnist5k", ks=[1, 50], layers=[2]).splitlines()
    assert table[2] == "| 2 | 1 | 95.00 | 16+4 | 95.00 | 16+4 | 85.33 / 16+5 | 85.33 / 16+5 |"
    assert table[3] == "| 2 | 50 | 90.12 | 17+5 | 88.00 | 26+7 | 84.78 / 17+5 | 82.90 / 26+7 |"
    omni = markdown_table([res("iwae", 5, 1, 100.0, [30])], "omniglot", ks=[5], layers=[1]).splitlines()
    assert omni[2] == "| 1 | 5 | – | – | 100.00 | 30 | 107.62 / 28 | 106.12 / 34 |"
    assert len(PAPER_TABLE1) == 12
    assert [c["name"] for c in table_cells(layers=(1,))] == ["vae-k50-L1", "iwae-k50-L1", "vae-k5-L1",
                                                             "iwae-k5-L1", "vae-k1-L1"]


def test_cli_rejects_bad_input_with_a_message(tmp_path, capsys):
    assert main(["train", "--data", "mnist5k", "--hidden", "20", "--out", str(tmp_path / "x")]) == 2
    assert "--hidden needs --latent" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "y")]) == 2
    assert "--data is required" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "neither results.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "--resume" in capsys.readouterr().out


def test_ctrl_c_saves_and_resume_finishes_in_a_subprocess(tmp_path, mnist5k):
    """SIGINT to ``iwae-np train`` mid-run: exit 130, a checkpoint of the last step, --resume finishes.

    The moment is certain: the child (tests/cli_driver.py) writes a flag file after global step 7 and
    then waits for the signal, which the parent sends only once the flag exists. (Waiting for the
    first checkpoint instead raced the run: on a loaded machine all 260 steps finished first.)
    """
    data = tmp_path / "data"  # a small MNIST in IDX files: quick to load in each subprocess
    data.mkdir()
    write_idx_images(data / "train-images-idx3-ubyte", np.round(mnist5k.train[:400] * 255))
    write_idx_images(data / "t10k-images-idx3-ubyte", np.round(mnist5k.test[:50] * 255))
    run, flag = tmp_path / "run", tmp_path / "flag"
    args = ["train", "--data", "mnist", "--data-dir", str(data), "--monitor-size", "0", *TINY, "--k", "2",
            "--stages", "3", "--out", str(run), "--no-progress"]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cli_driver.py"), "wait-for-signal", "7",
                             str(flag)] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())
    deadline = time.monotonic() + 300  # a bound for a broken child, not a guess at how long it takes
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the child never reached step 7"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted after step 7; checkpoint saved" in err and "--resume" in err
    meta = load_checkpoint(run)["meta"]
    assert meta["status"] == "interrupted" and meta["position"]["global_step"] == 7
    done = run_driver(None, 0, flag, ["train", "--resume", "--out", str(run), "--no-progress"])
    assert done.returncode == 0, done.stderr
    meta = load_checkpoint(run)["meta"]
    assert meta["status"] == "finished" and meta["position"]["global_step"] == 13 * 20


def test_ctrl_c_in_a_sequential_table_stops_the_grid_and_rerun_resumes_it(tmp_path, capsys, monkeypatch):
    from iwae_np.experiments import cells as experiments
    real_train = experiments.train

    def interrupted_train(*args, **kwargs):
        def ctrl_c(info):
            if info["global_step"] == 3:
                raise KeyboardInterrupt
        return real_train(*args, **dict(kwargs, callback=ctrl_c))

    monkeypatch.setattr(experiments, "train", interrupted_train)
    args = ["table", *SMALL_DATA, *TINY, "--layers", "1", "--k", "2", "--stages", "1", "--pass-scale", "0.2",
            "--eval-k", "5", "--eval-train-subset", "0", "--out", str(tmp_path), "--no-progress", "--no-figures",
            "--jobs", "1"]
    assert main(args) == 130
    captured = capsys.readouterr()
    assert "run the same command again" in captured.err
    first, second = [c["name"] for c in table_cells(["vae", "iwae"], [2], [1])]
    assert load_checkpoint(tmp_path / first)["meta"]["status"] == "interrupted"
    assert not (tmp_path / second).exists()  # the grid stopped
    monkeypatch.setattr(experiments, "train", real_train)
    assert main(args) == 0
    assert load_checkpoint(tmp_path / first)["meta"]["status"] == "finished"
    assert (tmp_path / second / "evaluation.json").is_file()
