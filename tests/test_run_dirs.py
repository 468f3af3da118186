"""Run directories: every interruption resumes to the same consistent finished state, a user's files are
never overwritten, stale temporaries go, one process per directory, and bad flags stop before anything
is written. Moments of interruption are made certain (a hook at an exact call), never raced."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from iwae_np.cli import main
from iwae_np.experiments import checkpoints, training
from iwae_np.experiments.checkpoints import load_run_checkpoint
from iwae_np.experiments.rundirs import DirectoryInUseError, ForeignFileError, is_project_file
from iwae_np.experiments.training import train

from conftest import ROOT, child_env, run_driver
from test_training import assert_same_params, config, toy_dataset


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every interrupted one must end equal to."""
    directory = tmp_path_factory.mktemp("straight")
    return train(toy_dataset(), config(), directory, progress=False)


def assert_same_run(run_dir, straight):
    """Finished, bit-identical parameters, the same records (but wall time), metrics.jsonl = the history."""
    ck = load_run_checkpoint(run_dir)
    assert ck["meta"]["status"] == "finished"
    assert_same_params(ck["params"], straight["params"])
    strip = lambda records: [{k: v for k, v in r.items() if k != "wall_time"} for r in records]  # noqa: E731
    assert strip(ck["meta"]["history"]) == strip(straight["history"])
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics == ck["meta"]["history"]


class Once:
    """Raise ``exc`` from the first ``times`` calls that match, then pass through."""

    def __init__(self, real, match, exc=KeyboardInterrupt, times=1):
        self.real, self.match, self.exc, self.left = real, match, exc, times

    def __call__(self, *args, **kwargs):
        if self.left and self.match(*args, **kwargs):
            self.left -= 1
            raise self.exc
        return self.real(*args, **kwargs)


class CtrlCInsideTheWrite:
    """np.savez as the checkpoint writer calls it: for the first ``times`` writes of a finished run's
    checkpoint, write half the bytes and raise KeyboardInterrupt there, as Ctrl-C in the middle of it would."""

    def __init__(self, times):
        self.real, self.left = checkpoints.np.savez, times

    def __call__(self, f, **arrays):
        if self.left and json.loads(str(arrays["meta"]))["status"] == "finished":
            self.left -= 1
            f.write(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt
        return self.real(f, **arrays)


@pytest.mark.parametrize("ctrl_c", [1, 2], ids=["once", "again-during-the-save-it-makes"])
def test_ctrl_c_during_the_final_checkpoint_write_resumes_to_the_finished_run(tmp_path, monkeypatch, straight,
                                                                              ctrl_c):
    # catches: the handler saving the state before the end of the stage as "interrupted" for good, the
    # last metrics row lost, and --resume saying "finished" without repairing either
    monkeypatch.setattr(checkpoints.np, "savez", CtrlCInsideTheWrite(ctrl_c))
    run = tmp_path / "run"
    if ctrl_c == 1:  # the handler's own save of the finished state succeeds
        assert train(toy_dataset(), config(), run, progress=False)["status"] == "interrupted"
        assert load_run_checkpoint(run)["meta"]["status"] == "finished"
        assert_same_run(run, straight)
    else:  # a second Ctrl-C: the checkpoint of the previous stage stays
        with pytest.raises(KeyboardInterrupt):
            train(toy_dataset(), config(), run, progress=False)
        assert load_run_checkpoint(run)["meta"]["position"]["stage"] == 2
    monkeypatch.undo()
    assert train(toy_dataset(), config(), run, resume=True, progress=False)["status"] == "finished"
    assert_same_run(run, straight)
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


class SignalInsideTheWrite:
    """np.savez as the checkpoint writer calls it: for a finished run's checkpoint, a real SIGINT sent to this
    process just after zipfile has opened its writing handle for the first array (``_writing`` set, the handle
    not yet returned): where Ctrl-C 1-8 ms into the write lands, and where a KeyboardInterrupt leaves zipfile
    unable to close ("Can't close the ZIP file while there is an open writing handle")."""

    def __init__(self, monkeypatch):
        self.real, self.armed, self.sent = checkpoints.np.savez, False, 0
        real_init = zipfile._ZipWriteFile.__init__

        def init(handle, *args, **kwargs):
            if self.armed:
                self.armed, self.sent = False, self.sent + 1
                os.kill(os.getpid(), signal.SIGINT)  # its handler runs here, before the handle exists
            real_init(handle, *args, **kwargs)

        monkeypatch.setattr(zipfile._ZipWriteFile, "__init__", init)

    def __call__(self, f, **arrays):
        self.armed = not self.sent and json.loads(str(arrays["meta"]))["status"] == "finished"
        return self.real(f, **arrays)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_a_real_ctrl_c_inside_the_final_checkpoint_write_saves_it(tmp_path, monkeypatch, straight):
    # catches (issue 20, item 8): the KeyboardInterrupt raised inside np.savez surfacing as zipfile's "Can't close
    # the ZIP file while there is an open writing handle" ValueError: an error instead of a save, the checkpoint
    # left at the previous stage
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    writer = SignalInsideTheWrite(monkeypatch)
    monkeypatch.setattr(checkpoints.np, "savez", writer)
    run = tmp_path / "run"
    assert train(toy_dataset(), config(), run, progress=False)["status"] == "interrupted"
    assert writer.sent == 1  # the signal was sent, inside the write
    assert load_run_checkpoint(run)["meta"]["status"] == "finished"
    assert_same_run(run, straight)
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


def test_ctrl_c_while_the_last_stage_ends_is_ended_again_on_resume(tmp_path, monkeypatch, straight):
    # Ctrl-C during the monitor bound of the last stage: every step is taken, the end is not recorded.
    # catches: a resume that takes an extra step (a fresh pass) or never ends the stage
    last = lambda params, monitor, cfg, stage_index: stage_index == 2  # noqa: E731
    monkeypatch.setattr(training, "monitor_bounds", Once(training.monitor_bounds, last))
    run = tmp_path / "run"
    assert train(toy_dataset(), config(), run, progress=False)["status"] == "interrupted"
    meta = load_run_checkpoint(run)["meta"]
    assert meta["status"] == "interrupted" and meta["position"]["pass"] == 9 and len(meta["history"]) == 2
    monkeypatch.undo()
    assert train(toy_dataset(), config(), run, resume=True, progress=False)["status"] == "finished"
    assert_same_run(run, straight)


def test_ctrl_c_while_monitoring_within_a_stage_resumes_to_the_same_curve(tmp_path, monkeypatch):
    # catches: the snapshot taken before the within-stage record (the record lost on resume) or the
    # step taken twice
    cfg = config(schedule=[{"passes": 6, "lr": 1e-3}], monitor_every=2)
    straight = train(toy_dataset(), cfg, tmp_path / "straight", progress=False)
    assert [r["passes_done"] for r in straight["history"]] == [2, 4, 6]
    fourth = lambda params, monitor, c, when: when == ("pass", 4)  # noqa: E731
    monkeypatch.setattr(training, "monitor_bounds", Once(training.monitor_bounds, fourth))
    run = tmp_path / "run"
    assert train(toy_dataset(), cfg, run, progress=False)["status"] == "interrupted"
    assert len(load_run_checkpoint(run)["meta"]["history"]) == 1
    monkeypatch.undo()
    assert train(toy_dataset(), cfg, run, resume=True, progress=False)["status"] == "finished"
    assert_same_run(run, straight)


def test_sigkill_between_the_final_save_and_the_metrics_write(tmp_path, idx_data):
    # a real SIGKILL at the exact moment (the child kills itself where metrics.jsonl would be written)
    run, flag = tmp_path / "run", tmp_path / "flag"
    args = ["train", "--data", "mnist", "--data-dir", str(idx_data), "--monitor-size", "10", "--monitor-k", "3",
            "--latent", "3", "--hidden", "8", "--k", "2", "--stages", "2", "--out", str(run), "--no-progress"]
    killed = run_driver("kill-before-metrics", 2, flag, args)
    assert flag.exists() and killed.returncode == -signal.SIGKILL
    assert load_run_checkpoint(run)["meta"]["status"] == "finished"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # the last record is missing
    assert main(["evaluate", str(run), "--k", "3", "--train-subset", "5", "--no-progress"]) == 0
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 0
    history = load_run_checkpoint(run)["meta"]["history"]
    assert [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] == history
    assert len(history) == 2


class Killed(BaseException):
    """Stands for SIGKILL inside the process: nothing catches it and nothing after it runs."""


def test_a_table_cell_killed_after_its_final_save_is_evaluated_once_on_rerun(tmp_path, monkeypatch, capsys):
    # catches: the cell re-evaluated on every rerun and the table exiting 130 for good
    args = ["table", "--data", "mnist5k", "--train-subset", "40", "--test-subset", "10", "--monitor-size", "0",
            "--latent", "2", "--hidden", "6", "--layers", "1", "--k", "2", "--objectives", "iwae", "--stages", "1",
            "--eval-k", "3", "--eval-train-subset", "0", "--out", str(tmp_path), "--jobs", "1", "--no-progress",
            "--no-figures"]
    monkeypatch.setattr(training, "write_metrics", Once(training.write_metrics, lambda d, h: True, Killed))
    with pytest.raises(Killed):
        main(args)
    monkeypatch.undo()
    cell = tmp_path / "iwae-k2-L1"
    assert not (cell / "metrics.jsonl").exists() and load_run_checkpoint(cell)["meta"]["status"] == "finished"
    assert main(args) == 0
    assert "evaluating L_3" in capsys.readouterr().err and (cell / "metrics.jsonl").is_file()
    assert main(args) == 0
    assert "already done" in capsys.readouterr().err


def test_ctrl_c_in_a_table_during_a_final_save_stops_the_grid_and_the_rerun_finishes_it(tmp_path, monkeypatch,
                                                                                        capsys):
    args = ["table", "--data", "mnist5k", "--train-subset", "40", "--test-subset", "10", "--monitor-size", "0",
            "--latent", "2", "--hidden", "6", "--layers", "1", "--k", "2", "--stages", "1", "--eval-k", "3",
            "--eval-train-subset", "0", "--out", str(tmp_path), "--jobs", "1", "--no-progress", "--no-figures"]
    monkeypatch.setattr(checkpoints.np, "savez", CtrlCInsideTheWrite(1))
    assert main(args) == 130
    assert "run the same command again" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {r["status"] for r in results} == {"finished"}


# ---------------------------------------------------------------------------------------------
# a user's files

#: Settings of a seconds-long run: where a check is missing, the command finishes (and the test fails)
#: instead of training for hours with the paper's defaults.
TINY_RUN = ["--train-subset", "20", "--test-subset", "10", "--monitor-size", "0", "--latent", "2", "--hidden", "4",
            "--k", "1", "--stages", "1", "--pass-scale", "0.1", "--no-progress"]
TINY_TABLE = TINY_RUN + ["--layers", "1", "--eval-k", "2", "--eval-train-subset", "0", "--no-figures", "--jobs", "1"]


def test_train_never_overwrites_a_users_config_or_metrics(tmp_path, capsys):
    # catches: train --out D overwriting D/config.json and D/metrics.jsonl that the user wrote (exit 0)
    for name, text in (("config.json", '{"learning_rate": 0.1}\n'), ("metrics.jsonl", "epoch,loss\n1,0.5\n")):
        d = tmp_path / name
        d.mkdir()
        (d / name).write_text(text)
        assert main(["train", "--data", "mnist5k", *TINY_RUN, "--out", str(d)]) == 2
        err = capsys.readouterr().err
        assert err == (f"iwae-np train: error: {d / name} exists and was not written by iwae-np; it is left as it "
                       "is: move it away or choose another directory\n")
        assert (d / name).read_text() == text and [p.name for p in d.iterdir()] == [name]
        with pytest.raises(ForeignFileError):
            train(toy_dataset(), config(), d, progress=False)


def test_a_run_killed_before_its_first_checkpoint_starts_again(tmp_path):
    # its config.json is the project's: a fresh run may replace it
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config(k=3).to_dict()))
    assert is_project_file(run / "config.json")
    assert train(toy_dataset(), config(schedule=[{"passes": 1, "lr": 1e-3}]), run, progress=False)["status"] == "finished"
    assert json.loads((run / "config.json").read_text())["k"] == 5


def test_evaluate_and_table_never_overwrite_a_users_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "mnist5k", *TINY_RUN, "--out", str(run)]) == 0
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    assert main(["evaluate", str(run), "--k", "2", "--output", str(mine), "--no-progress"]) == 2
    assert f"--output {mine} exists and was not written by iwae-np" in capsys.readouterr().err
    assert mine.read_text() == '{"my": "notes"}'
    (run / "evaluation.json").write_text("my own evaluation, not JSON")
    assert main(["evaluate", str(run), "--k", "2", "--no-progress"]) == 2
    assert (run / "evaluation.json").read_text() == "my own evaluation, not JSON"
    table = tmp_path / "table"
    table.mkdir()
    (table / "table.md").write_text("# my table\n")
    assert main(["table", "--data", "mnist5k", *TINY_TABLE, "--out", str(table)]) == 2
    assert f"{table / 'table.md'} exists and was not written by iwae-np" in capsys.readouterr().err
    assert [p.name for p in table.iterdir()] == ["table.md"]


# ---------------------------------------------------------------------------------------------
# temporaries and one process per directory


def test_stale_temporaries_are_removed_when_a_run_starts_and_when_it_resumes(tmp_path):
    # catches: the 5 MB .checkpoint.npz.*.tmp of a SIGKILL mid-write left there for ever
    run = tmp_path / "run"
    run.mkdir()
    # (the names atomic_write generates: mkstemp's 8 random characters after the project's mark)
    stale = [run / ".checkpoint.npz.iwae-np-k1ll3d_0.tmp", run / ".metrics.jsonl.iwae-np-abcdefgh.tmp",
             run / ".config.json.iwae-np-x1234567.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    # catches: a user's files that merely look like temporaries deleted by the cleanup (issue 20, item 7)
    users = [run / ".notes.tmp", run / ".config.json.backup.tmp", run / ".checkpoint.npz.old.tmp",
             run / ".metrics.jsonl.iwae-np-mine.tmp", run / ".config.json.iwae-np-12345678.tmp.keep"]
    for path in users:
        path.write_text("not ours")
    cfg = config(schedule=[{"passes": 1, "lr": 1e-3}])
    train(toy_dataset(), cfg, run, progress=False)
    assert not any(path.exists() for path in stale) and all(path.read_text() == "not ours" for path in users)
    stale[0].write_bytes(b"\0" * 1000)
    train(toy_dataset(), cfg, run, resume=True, progress=False)
    assert not stale[0].exists()


def test_a_directory_another_process_trains_in_is_refused_and_its_temporaries_kept(tmp_path):
    fcntl = pytest.importorskip("fcntl")  # POSIX; without it there is no lock
    run = tmp_path / "run"
    run.mkdir()
    (run / ".checkpoint.npz.iwae-np-other123.tmp").write_bytes(b"being written")
    fd = os.open(run, os.O_RDONLY)  # what the other process holds (another open file, another lock)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(DirectoryInUseError, match=f"{run} is in use by another iwae-np process"):
            train(toy_dataset(), config(), run, progress=False)
    finally:
        os.close(fd)
    assert sorted(p.name for p in run.iterdir()) == [".checkpoint.npz.iwae-np-other123.tmp"]


def test_a_run_that_cannot_start_leaves_no_directory(tmp_path):
    from iwae_np.model import init_params
    wrong = init_params(config().architecture.__class__(12, (2,), ((4,),), ((4,),)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="architecture"):
        train(toy_dataset(), config(), tmp_path / "new", params=wrong, progress=False)
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# bad flags: one line naming the flag, exit 2, nothing written

BAD_FLAGS = [
    (["train", "--seed", "-1"], "argument --seed: must be an integer >= 0, got -1"),
    (["train", "--checkpoint-every", "-1"], "argument --checkpoint-every: must be a number >= 0"),
    (["train", "--checkpoint-every", "nan"], "argument --checkpoint-every: must be a number >= 0, got nan"),
    (["train", "--pass-scale", "inf"], "argument --pass-scale: must be a finite number > 0, got inf"),
    (["train", "--stages", "8", "--pass-scale", "1e308"], "--stages 8 with --pass-scale 1e+308: stage 1 would run"),
    (["train", "--stages", "3", "--start-stage", "3"], "--start-stage 3 must be below --stages 3"),
    (["train", "--objective", "iwae", "--beta", "0.5"], "--beta applies to --objective ciwae only, not iwae"),
    (["train", "--objective", "vae", "--alpha", "0.5"], "--alpha applies to --objective renyi only, not vae"),
    (["train", "--objective", "iwae", "--M", "2"], "--M applies to --objective miwae / piwae only, not iwae"),
    (["train", "--objective", "ciwae"], "--objective ciwae needs --beta"),
    (["train", "--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
    (["train", "--beta2", "1"], "argument --beta2: must be a finite number in [0, 1), got 1"),
    (["train", "--train-subset", "1"], "argument --train-subset: must be an integer >= 2, got 1"),
    (["train", "--k", "2.5"], "argument --k: expected an integer, got '2.5'"),
    (["table", "--jobs", "0"], "argument --jobs: must be an integer >= 1, got 0"),
    (["table", "--eval-train-subset", "-1"], "argument --eval-train-subset: must be an integer >= 0, got -1"),
    (["check", "--step", "0"], "argument --step: must be a finite number in (0, 1], got 0"),
    (["check", "--step", "nan"], "argument --step: must be a finite number in (0, 1], got nan"),
    (["evaluate", "RUN", "--train-subset", "-1"], "argument --train-subset: must be an integer >= 0, got -1"),
    (["evaluate", "RUN", "--k", "0"], "argument --k: must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    argv = [str(tmp_path / "run") if a == "RUN" else a for a in argv]
    if argv[0] in ("train", "table"):  # the bad flag after the tiny settings: argparse keeps the last
        tiny = TINY_RUN if argv[0] == "train" else TINY_TABLE
        argv = [argv[0], "--data", "mnist5k", *tiny, *argv[1:], "--out", str(out)]
    elif argv[0] == "check":
        argv = argv + ["--k", "1", "--architecture", "one-layer"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"iwae-np {argv[0]}: error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["is", "below"])
def test_out_that_is_a_file_or_below_one(tmp_path, capsys, where):
    (tmp_path / "f").write_text("a file")
    out = tmp_path / "f" if where == "is" else tmp_path / "f" / "run"
    for command in (["train", "--data", "mnist5k", *TINY_RUN], ["table", "--data", "mnist5k", *TINY_TABLE],
                    ["snr", "--data", "synthetic", "--draws", "2", "--train-steps", "1", "--k", "1"]):
        assert main(command + ["--out", str(out)]) == 2
        expected = (f"--out {out} is a file, not a directory" if where == "is"
                    else f"--out {out} lies below {tmp_path / 'f'}, which is a file")
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
    assert (tmp_path / "f").read_text() == "a file"


def test_evaluate_output_that_is_a_directory(tmp_path, capsys):
    run = tmp_path / "run"
    train(toy_dataset(), config(schedule=[{"passes": 1, "lr": 1e-3}]), run, progress=False)
    assert main(["evaluate", str(run), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"iwae-np evaluate: error: --output {tmp_path} is a directory; iwae-np "
                                       "would write its evaluation.json there\n")


# ---------------------------------------------------------------------------------------------
# table workers whose parent is killed


_TABLE_DRIVER = """
import sys
from iwae_np.experiments.cells import table_cells
from iwae_np.experiments.table import run_table
out = sys.argv[1]
base = {"architectures": {1: {"x_dim": 784, "latent_dims": [2], "q_hidden": [[6]], "p_hidden": [[6]]}},
        "schedule": [{"passes": 1, "lr": 1e-3}, {"passes": 10 ** 6, "lr": 1e-3}], "batch_size": 20,
        "monitor_size": 0, "data": {"name": "mnist5k", "train_subset": 20, "test_subset": 10}}
run_table(table_cells(["vae"], [1, 2], [1]), base, out, {"k": 2, "train_subset": 0, "seed": 0}, jobs=2)
"""


def _children(pid):
    children = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children |= {int(c) for c in f.read().split()}
    return children


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the process tree from /proc (Linux)")
def test_table_workers_save_and_exit_when_the_table_process_is_killed(tmp_path):
    # catches: spawned pool workers blocked for ever on the call queue (and training on) after a SIGKILL of
    # their parent. The moment is certain: both cells' stage-0 checkpoints exist, so both workers are in
    # their (endless) stage 1 when the parent dies.
    cells = [tmp_path / "table" / "vae-k2-L1", tmp_path / "table" / "vae-k1-L1"]
    log = tmp_path / "log.txt"  # the parent's and the workers' stderr, for the message of a failure
    with open(log, "w") as stderr:
        parent = subprocess.Popen([sys.executable, "-c", _TABLE_DRIVER, str(tmp_path / "table")], env=child_env(),
                                  stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
    workers = set()
    try:
        deadline = time.monotonic() + 240
        while not all((c / "checkpoint.npz").exists() for c in cells):
            assert parent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the workers did not start\n" + log.read_text()
            time.sleep(0.05)
        workers = _children(parent.pid)
        assert len(workers) >= 2
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 120  # a bound for a broken implementation, not a wait for success
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(w) for w in workers), "workers outlived their parent\n" + log.read_text()
    finally:  # leave no process behind, whatever happened
        if parent.poll() is None:
            workers |= _children(parent.pid)
            parent.kill()
            parent.wait()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
    for c in cells:  # each saved its cell on the way out: a rerun resumes, it does not start over
        meta = load_run_checkpoint(c)["meta"]
        assert meta["status"] == "interrupted" and meta["position"]["stage"] == 1, (c, meta, log.read_text())
