"""Checkpoints: typed errors naming the file, a failed write that loses nothing, versions.

Each test names the wrong implementation it catches.
"""
import errno
import json
import os
import warnings

import numpy as np
import pytest

from iwae_np import __version__
from iwae_np.cli import main
from iwae_np.experiments import checkpoints, training
from iwae_np.experiments.checkpoints import (CheckpointError, CheckpointVersionWarning, CheckpointWriteError,
                                             load_checkpoint, load_run_checkpoint, save_checkpoint)
from iwae_np.experiments.schedule import paper_schedule
from iwae_np.experiments.training import train

from test_training import config, toy_dataset
from conftest import run_driver


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-stage run on the toy data."""
    directory = tmp_path_factory.mktemp("run")
    train(toy_dataset(), config(schedule=paper_schedule(1)), directory, progress=False)
    return directory


def rewrite_meta(src, dst, change):
    """Copy the checkpoint ``src`` to ``dst`` with ``change(meta)`` applied to its metadata."""
    with np.load(src, allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)
    return dst


@pytest.mark.parametrize("key", ["rng_state", "adam_t", "has_perm"])
def test_metadata_without_a_field_is_named(run, tmp_path, key):
    # catches: meta["rng_state"] read unchecked (KeyError: 'rng_state', a traceback on the command line)
    path = rewrite_meta(run / "checkpoint.npz", tmp_path / "checkpoint.npz", lambda m: m.pop(key))
    with pytest.raises(CheckpointError, match=f"{path}.*no '{key}'"):
        load_checkpoint(path)


def test_a_run_checkpoint_without_position_or_a_broken_generator_state_is_named(run, tmp_path, capsys):
    path = rewrite_meta(run / "checkpoint.npz", tmp_path / "a.npz", lambda m: m.pop("position"))
    assert load_checkpoint(path)["meta"]["status"] == "finished"  # a checkpoint, but not a run's
    with pytest.raises(CheckpointError, match="no valid 'position'"):
        load_run_checkpoint(path)
    path = rewrite_meta(run / "checkpoint.npz", tmp_path / "b.npz", lambda m: m["rng_state"].pop("state"))
    with pytest.raises(CheckpointError, match="rng_state is not a PCG64 state"):
        load_checkpoint(path)
    assert main(["evaluate", str(tmp_path / "a.npz")]) == 2  # one line, no traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no valid 'position'" in err


def test_a_newer_format_is_refused_and_a_newer_version_is_warned_about(run, tmp_path, capsys):
    # catches: a checkpoint of a newer iwae-np accepted without a word
    path = rewrite_meta(run / "checkpoint.npz", tmp_path / "newer-format.npz",
                        lambda m: m.update(format_version=2, iwae_np_version="9.0.0"))
    with pytest.raises(CheckpointError, match="written by iwae-np 9.0.0 in checkpoint format 2.*upgrade"):
        load_checkpoint(path)
    path = rewrite_meta(run / "checkpoint.npz", tmp_path / "newer-version.npz",
                        lambda m: m.update(iwae_np_version="9.0.0"))
    with pytest.warns(CheckpointVersionWarning, match="written by iwae-np 9.0.0, this is"):
        load_checkpoint(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(run / "checkpoint.npz")  # this version's own: no warning
    # a 0.1.0 checkpoint has no format_version: it is format 1
    old = rewrite_meta(run / "checkpoint.npz", tmp_path / "old.npz", lambda m: m.pop("format_version"))
    assert load_checkpoint(old)["meta"]["k"] == 5
    newer = tmp_path / "newer-run"
    newer.mkdir()
    (tmp_path / "newer-version.npz").rename(newer / "checkpoint.npz")
    assert main(["train", "--resume", "--out", str(newer)]) == 2  # the toy run records no data set
    assert capsys.readouterr().err.splitlines() == [
        f"iwae-np train: warning: {newer / 'checkpoint.npz'} was written by iwae-np 9.0.0, this is {__version__}; "
        "reading it as checkpoint format 1, which both write",
        "iwae-np train: error: no data set is recorded ({}); name one (--data)"]


def test_memory_error_is_not_reported_as_a_damaged_checkpoint(run, monkeypatch):
    # catches: a bare except (or one catching MemoryError) turning a full memory into "damaged checkpoint"
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(checkpoints.np, "load", no_memory)
    with pytest.raises(MemoryError):
        load_checkpoint(run)


def test_a_failed_write_leaves_the_old_checkpoint_intact_and_nothing_else(run, tmp_path, monkeypatch):
    # catches: writing the checkpoint in place (a half-written file) or leaving the temporary behind
    ck = load_checkpoint(run)
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, ck["params"], ck["opt_state"], ck["rng"], {"note": "old"})
    before = path.read_bytes()
    real_savez = checkpoints.np.savez

    def disk_full(f, **arrays):
        real_savez(f, **arrays)  # the bytes go out, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoints.np, "savez", disk_full)
    with pytest.raises(CheckpointWriteError, match=f"could not write the checkpoint {path}: No space left on device"):
        save_checkpoint(path, ck["params"], ck["opt_state"], ck["rng"], {"note": "new"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]


def test_a_failed_save_during_training_stops_it_and_says_which_checkpoint_is_intact(tmp_path, monkeypatch):
    ds, cfg = toy_dataset(), config()
    real = training.save_checkpoint
    saves = []

    def full_after_first(path, *args, **kwargs):
        saves.append(path)
        if len(saves) > 1:
            raise CheckpointWriteError(f"could not write the checkpoint {path}: ...") from OSError(
                errno.EFBIG, os.strerror(errno.EFBIG))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(training, "save_checkpoint", full_after_first)
    with pytest.raises(CheckpointWriteError, match="File too large.*the checkpoint after global step 9 is intact"):
        train(ds, cfg, tmp_path, progress=False)
    assert load_checkpoint(tmp_path)["meta"]["position"]["global_step"] == 9
    monkeypatch.setattr(training, "save_checkpoint", real)
    assert train(ds, cfg, tmp_path, resume=True, progress=False)["status"] == "finished"


def test_file_too_large_on_the_command_line_is_one_line_exit_2_and_loses_nothing(tmp_path, idx_data):
    # a real write failure: after the checkpoint of step 3, RLIMIT_FSIZE drops below its size (Python
    # ignores SIGXFSZ, so the next write fails with EFBIG); the step-3 checkpoint must survive it whole
    pytest.importorskip("resource")
    run, flag = tmp_path / "run", tmp_path / "flag"
    proc = run_driver("limit-file-size", 3, flag, ["train", "--data", "mnist", "--data-dir", str(idx_data),
                      "--monitor-size", "0", "--latent", "3", "--hidden", "8", "--k", "2", "--stages", "2",
                      "--checkpoint-every", "0", "--out", str(run), "--no-progress"])
    assert flag.exists() and proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"iwae-np train: error: could not write the checkpoint {run / 'checkpoint.npz'} (File too large); "
        "the checkpoint after global step 3 is intact")
    ck = load_run_checkpoint(run)
    assert ck["meta"]["position"]["global_step"] == 3 and ck["meta"]["status"] == "running"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.npz", "config.json", "metrics.jsonl"]  # no .tmp
    done = run_driver(None, 0, flag, ["train", "--resume", "--out", str(run), "--no-progress"])
    assert done.returncode == 0, done.stderr
    assert load_run_checkpoint(run)["meta"]["status"] == "finished"
