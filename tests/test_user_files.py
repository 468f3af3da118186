"""The README's promises about files (issue 20, items 6, 7 and 9): a user's file is never replaced (every file any
command writes, found by running the commands, not listed by hand), an empty path is refused, and an evaluation
that cannot be written is refused before it is computed or, when the write itself fails, kept and named."""
import errno
import json
import shutil

import numpy as np
import pytest

from iwae_np.cli import build_parser, main
from iwae_np.experiments import evaluation
from iwae_np.experiments.rundirs import is_project_file

TINY = ["--train-subset", "20", "--test-subset", "10", "--monitor-size", "0", "--latent", "2", "--hidden", "4",
        "--k", "1", "--stages", "1", "--pass-scale", "0.1", "--no-progress"]
TABLE = ["table", "--data", "mnist5k", *TINY, "--layers", "1", "--eval-k", "2", "--eval-train-subset", "0",
         "--jobs", "1"]
SNR = ["snr", "--data", "synthetic", "--pixels", "16", "--latent", "2", "--hidden", "4", "--draws", "2",
       "--train-steps", "1", "--k", "1", "2", "--M", "1"]


def files_under(directory):
    return sorted(p.relative_to(directory) for p in directory.rglob("*") if p.is_file())


def snapshot(directory):
    return {p: (directory / p).read_bytes() for p in files_under(directory)}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Every command run once into fresh directories: ``{command: (argv with OUT, the files it wrote)}``."""
    root = tmp_path_factory.mktemp("outputs")
    run, table = root / "run", root / "table"
    runs = {
        "train": ["train", "--data", "mnist5k", *TINY, "--out", "OUT"],
        "evaluate": ["evaluate", str(run), "--k", "2", "--train-subset", "0", "--no-progress", "--output", "OUT/e.json"],
        "table": TABLE + ["--out", "OUT"],
        "plot a run": ["plot", str(run), "--out", "OUT"],
        "plot a table": ["plot", str(table), "--out", "OUT"],
        "snr": SNR + ["--out", "OUT"],
    }
    found = {}
    for name, argv in runs.items():
        out = {"train": run, "table": table}.get(name, root / name.replace(" ", "-"))
        if name == "evaluate":
            out.mkdir()
            argv = [a.replace("OUT", str(out)) for a in argv]
            argv[argv.index("--output") + 1] = str(out / "evaluation.json")
        argv = [str(out) if a == "OUT" else a for a in argv]
        assert main(argv) == 0, name
        found[name] = (argv, out, files_under(out))
    return found


def users_file(path):
    """A file of the user's under the name ``path`` (of the right kind, so that only its origin differs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        from matplotlib.figure import Figure
        fig = Figure(figsize=(1, 1))
        fig.subplots().plot([0, 1])
        fig.savefig(path, format="png")  # matplotlib's PNG, not iwae-np's
    elif path.suffix == ".npz":
        np.savez(path, my_weights=np.arange(3.0))
    else:
        path.write_text('{"mine": true}\n')
    assert not is_project_file(path) if path.name != "checkpoint.npz" else True
    return path.read_bytes()


@pytest.mark.parametrize("command", ["train", "evaluate", "table", "plot a run", "plot a table", "snr"])
def test_no_command_replaces_a_file_of_the_users_under_any_name_it_writes(outputs, tmp_path, capsys, command):
    # catches (issue 20, item 7): snr's model.npz and snr.json, table's and plot's figures (and any file a command
    # writes in future) replaced when the user's file of that name is there. For every file the command wrote in
    # a fresh directory: the same command, with only the user's file of that name there, stops with one line
    # naming it (exit 2) and leaves the directory as it was.
    argv, out, written = outputs[command]
    assert written, command
    for rel in written:
        target = tmp_path / str(rel).replace("/", "__")
        if command == "evaluate":  # the run directory is the input: its copy, with the user's file in it
            shutil.copytree(argv[1], target)
            (target / "evaluation.json").unlink(missing_ok=True)
            mine = target / "evaluation.json"
            case = [argv[0], str(target)] + argv[2:argv.index("--output")]
        else:
            target.mkdir()
            mine = target / rel
            case = [str(target) if a == str(out) else a for a in argv]
        mine_bytes = users_file(mine)
        before = snapshot(target)
        capsys.readouterr()
        assert main(case) == 2, (command, rel)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(mine.parent) in err and mine.name in err, (command, rel, err)
        assert snapshot(target) == before and mine.read_bytes() == mine_bytes, (command, rel)


# ---------------------------------------------------------------------------------------------
# empty paths


#: String arguments that are not paths.
NOT_PATHS = {("table", "--scheduler")}


def test_every_path_argument_refuses_an_empty_path():
    # catches (issue 20, item 6): `train --out ''` writing into the current directory, `evaluate ''` evaluating
    # it, `table --out ''` falling back to a default (an unset shell variable in --out "$OUT"). Every string
    # argument of every command is a path that refuses '' or is listed in NOT_PATHS.
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    checked = 0
    for name, command in sub.choices.items():
        for action in command._actions:
            if action.nargs == 0 or action.choices is not None or action.dest in ("help", "oracle_command"):
                continue
            flag = max(action.option_strings, key=len) if action.option_strings else action.dest
            if action.type is None:
                assert (name, flag) in NOT_PATHS, f"iwae-np {name} {flag}: a string argument that accepts ''"
            elif getattr(action.type, "__name__", "") == "path":
                checked += 1
                with pytest.raises(Exception, match="an empty"):
                    action.type("")
    assert checked >= 12


@pytest.mark.parametrize("argv", [["train", "--data", "mnist5k", *TINY, "--out", ""], ["evaluate", ""],
                                  TABLE + ["--out", ""], SNR + ["--out", ""], ["plot", ""], ["claims", ""],
                                  ["plot", ".", "--out", ""], ["evaluate", "x", "--output", ""]],
                         ids=["train", "evaluate", "table", "snr", "plot", "claims", "plot --out", "evaluate --output"])
def test_an_empty_path_is_one_line_and_nothing_is_written(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an empty" in err and "''" in err, err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# an evaluation that cannot be written


@pytest.fixture
def run(outputs, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(outputs["train"][1], copy)
    return copy


def test_evaluate_refuses_a_directory_it_cannot_write_before_computing(run, capsys, monkeypatch):
    # catches (issue 20, item 9): hours of L_5000 computed, then lost to a read-only run directory, the error
    # naming a random temporary. (The test runs as any user, root too: the refusal of the file system is injected.)
    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(dir))

    monkeypatch.setattr(evaluation.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(evaluation, "_log_likelihood", lambda *a, **k: pytest.fail("computed before the check"))
    assert main(["evaluate", str(run), "--k", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"iwae-np evaluate: error: cannot write {run / 'evaluation.json'}: "
                                       "Read-only file system; nothing was computed\n")


def test_an_evaluation_whose_write_fails_is_kept_and_named(run, capsys, monkeypatch, tmp_path):
    # catches (issue 20, item 9): `[Errno 28] No space left on device` naming no file, and the result gone
    monkeypatch.setattr(evaluation.tempfile, "tempdir", str(tmp_path))
    real = evaluation.write_json

    def full_disk(path, obj, **kwargs):
        if path.name == "evaluation.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, obj, **kwargs)

    monkeypatch.setattr(evaluation, "write_json", full_disk)
    assert main(["evaluate", str(run), "--k", "2", "--train-subset", "0", "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1, captured.err
    prefix = f"iwae-np evaluate: error: could not write {run / 'evaluation.json'} (No space left on device); " \
             "the evaluation is kept in "
    assert captured.err.startswith(prefix), captured.err
    kept = captured.err[len(prefix):].split(" (move it to")[0]
    result = json.loads(open(kept).read())
    assert f"{result['test_nll']:.2f}" in captured.out and len(result["test_L"]) == 10
    assert not (run / "evaluation.json").exists()


def test_an_evaluation_that_cannot_be_kept_anywhere_is_printed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluation, "write_json", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    monkeypatch.setattr(evaluation.tempfile, "mkstemp", lambda **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError, match="the evaluation was printed on standard output"):
        evaluation.write_evaluation(tmp_path / "evaluation.json", {"test_nll": 1.5})
    assert json.loads(capsys.readouterr().out) == {"test_nll": 1.5}


def test_an_evaluation_validates_the_parameters_once(run, monkeypatch):
    # issue 17: evaluate_run checked the whole parameter tree three times (twice per L_k call and in active_units)
    from iwae_np.data import dataset_from_spec
    from iwae_np.experiments.checkpoints import load_run_checkpoint
    calls = []
    real = evaluation.validate_params
    monkeypatch.setattr(evaluation, "validate_params", lambda *a, **k: calls.append(1) or real(*a, **k))
    dataset = dataset_from_spec(load_run_checkpoint(run)["meta"]["config"]["data"])
    evaluation.evaluate_run(run, dataset, k=2, train_subset=5)
    assert len(calls) == 1
