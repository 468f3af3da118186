"""The Table 1 runner (issue 20): a rerun into the same --out answers the same question or is refused, naming
every option that differs; Ctrl-C to the table process alone stops its workers; the running cells' progress is
shown on a terminal, in whole lines, and not otherwise. Moments are made certain (a file the run writes), never raced."""
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from iwae_np.cli import build_parser, main
from iwae_np.cli.table import table_settings
from iwae_np.experiments import progress as progress_module
from iwae_np.experiments.cells import cell_settings, differing_settings
from iwae_np.experiments.checkpoints import load_run_checkpoint
from iwae_np.experiments.training import TrainConfig

from conftest import ROOT, child_env

#: One cell (IWAE k = 2, one layer, a tiny network) trained for a second and evaluated with L_3.
TABLE = ["table", "--data", "mnist5k", "--train-subset", "40", "--test-subset", "10", "--monitor-size", "0",
         "--latent", "2", "--hidden", "4", "--layers", "1", "--k", "2", "--objectives", "iwae", "--stages", "1",
         "--pass-scale", "0.5", "--eval-k", "3", "--eval-train-subset", "0", "--jobs", "1", "--no-progress",
         "--no-figures"]


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    assert main(TABLE + ["--out", str(out)]) == 0
    return out


# the README's seed commands with --out forgotten, and every other option that changes a cell's result
CHANGED = [(["--seed", "1"], "seed (--seed): 0 there, 1 now"),
           (["--stages", "2"], "schedule (--stages/--start-stage/--pass-scale/--lr)"),
           (["--pass-scale", "2.5"], "schedule (--stages/--start-stage/--pass-scale/--lr)"),
           (["--lr", "0.002"], "schedule (--stages/--start-stage/--pass-scale/--lr)"),
           (["--test-subset", "12"], "data.test_subset (--test-subset): 10 there, 12 now"),
           (["--train-subset", "30"], "data.train_subset (--train-subset): 40 there, 30 now"),
           (["--hidden", "5"], "architecture (--latent/--hidden)"),
           (["--latent", "3"], "architecture (--latent/--hidden)"),
           (["--eval-seed", "1"], "evaluation.seed (--eval-seed): 0 there, 1 now"),
           (["--eval-train-subset", "5"], "evaluation.train_subset (--eval-train-subset): 0 there, 5 now"),
           (["--eval-k", "4"], "evaluation.k (--eval-k): 3 there, 4 now"),
           (["--dtype", "float64"], 'dtype (--dtype): "float32" there, "float64" now'),
           (["--batch-size", "10"], "batch_size (--batch-size): 20 there, 10 now")]


@pytest.mark.parametrize("changed, named", CHANGED, ids=[" ".join(c) for c, _ in CHANGED])
def test_a_rerun_with_other_options_is_refused_naming_them(finished_table, capsys, changed, named):
    # catches: "already done" and the old table printed, exit 0, for a rerun into the same --out with another
    # --seed (or any other option that changes the answer); the old files are left as they are
    before = snapshot(finished_table)
    capsys.readouterr()
    assert main(TABLE + changed + ["--out", str(finished_table)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"iwae-np table: error: {finished_table / 'iwae-k2-L1'}")
    assert named in captured.err and "rerun with the same options" in captured.err, captured.err
    assert snapshot(finished_table) == before


def test_a_rerun_with_the_same_options_reuses_the_cell(finished_table, capsys):
    assert main(TABLE + ["--out", str(finished_table), "--jobs", "2"]) == 0  # --jobs does not change the answer
    assert "[iwae-k2-L1] already done" in capsys.readouterr().err


#: Options of `iwae-np table` that do not change any cell's result: where it runs, what it prints, which cells.
NOT_COMPARED = {"--out", "--jobs", "--scheduler", "--no-figures", "--no-progress", "--download", "--objectives",
                "--k", "--layers", "--help"}
#: A value other than the default for options whose alternative cannot be derived (a choice, a flag).
ALTERNATIVES = {"--latent": ["3"], "--hidden": ["5"], "--data-dir": ["/elsewhere"], "--cache-dir": ["/elsewhere"],
                "--train-subset": ["30"], "--test-subset": ["12"], "--batch-size": ["10"], "--stages": ["2"],
                "--start-stage": ["1"], "--pass-scale": ["0.9"], "--lr": ["0.002"], "--beta1": ["0.5"],
                "--beta2": ["0.5"], "--adam-eps": ["0.001"], "--seed": ["1"], "--monitor-k": ["7"],
                "--monitor-size": ["3"], "--monitor-every": ["2"], "--eval-k": ["4"], "--eval-train-subset": ["5"],
                "--eval-seed": ["1"]}


def _table_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return parser, sub.choices["table"]


def test_every_option_of_table_that_changes_a_result_is_compared_on_a_rerun():
    # catches: an option added to `table` (the coming --engine, say) that changes a cell's result but is not in
    # what a rerun compares, so that the old answer comes back for the new question. A new option fails this
    # test until it is either compared (it lands in the TrainConfig or the evaluation options) or listed above.
    parser, table = _table_parser()
    argv = ["table", "--data", "mnist5k", "--latent", "2", "--layers", "1"]
    base_args = parser.parse_args(argv)
    base = table_settings(base_args)
    for action in table._actions:
        flag = max(action.option_strings, key=len) if action.option_strings else None
        if flag is None or flag in NOT_COMPARED:
            continue
        if action.choices is not None:
            alternative = [str(next(c for c in action.choices if c != getattr(base_args, action.dest)))]
        elif action.nargs == 0:
            alternative = []
        else:
            assert flag in ALTERNATIVES, f"{flag}: give it a value in ALTERNATIVES or list it in NOT_COMPARED"
            alternative = ALTERNATIVES[flag]
        extra = ["--latent", "2"] if flag == "--hidden" else []
        settings = table_settings(parser.parse_args(argv + extra + [flag, *alternative]))
        for cell in base[0]:
            old, new = cell_settings(cell, *base[1:]), cell_settings(cell, *settings[1:])
            assert differing_settings(old, new), f"{flag} changes no compared setting"


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return value + [value[0] if value else 1]
    if isinstance(value, dict):
        return dict(value, other=1)
    return "other"  # None


def test_every_field_of_the_training_configuration_is_compared():
    # catches: a TrainConfig field (the lead's coming `engine`, say) left out of the comparison: the compared
    # settings are the whole to_dict(), so a new field is compared with no further code
    cell = {"objective": "iwae", "k": 2, "layers": 1, "name": "iwae-k2-L1"}
    settings = cell_settings(cell, {"architectures": {1: TrainConfig().architecture}}, {"k": 3, "train_subset": 0,
                                                                                        "seed": 0})
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    assert set(settings["config"]) == set(names)
    for name in names:
        changed = json.loads(json.dumps(settings))
        changed["config"][name] = _changed(changed["config"][name])
        assert [d[0].split(".")[0] for d in differing_settings(settings, changed)] == [name]
    for name in settings["evaluation"]:
        changed = json.loads(json.dumps(settings))
        changed["evaluation"][name] += 1
        assert [d[0] for d in differing_settings(settings, changed)] == [f"evaluation.{name}"]


# ---------------------------------------------------------------------------------------------
# progress on a terminal


PROGRESS_LINE = re.compile(r"  \[(vae|iwae)-k\d+-L\d\] (stage \d+/\d+, pass \d+/\d+, step \d+/\d+ \(\d+/\d+ steps\), "
                           r"(\d+\.\d steps/s, training left [0-9hmins ]+|rate: measuring)|trained \(\d+ steps\); "
                           r"evaluating)$")


def _progress_blocks(err):
    lines = err.splitlines()
    blocks = [i for i, line in enumerate(lines) if line.startswith("progress (")]
    return lines, blocks


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_progress_lines_on_a_terminal_every_interval(tmp_path, capsys, monkeypatch, jobs):
    # catches: minutes of silence between the per-stage lines of a running table; lines of cells in parallel
    # mixed. The TTY decision is injected (stderr says it is a terminal) and the interval made 0, so every
    # report is shown: what is tested is what a block holds, never how long it takes.
    monkeypatch.setattr(progress_module, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv = [a for a in TABLE if a != "--no-progress"] + ["--objectives", "vae", "iwae", "--k", "1", "2",
                                                         "--jobs", jobs, "--out", str(tmp_path)]
    assert main(argv) == 0
    lines, blocks = _progress_blocks(capsys.readouterr().err)
    assert blocks, "no progress shown on a terminal"
    shown = set()
    for i in blocks:  # a block: its header, then one whole line per running cell, nothing in between
        j = i + 1
        while j < len(lines) and lines[j].startswith("  ["):
            assert PROGRESS_LINE.match(lines[j]), lines[j]
            shown.add(lines[j].split("]")[0][3:])
            j += 1
        assert j > i + 1, f"an empty block: {lines[i:i + 2]}"
    assert shown == {"vae-k2-L1", "iwae-k2-L1", "vae-k1-L1"}


@pytest.mark.parametrize("why", ["not a terminal", "--no-progress"])
def test_no_progress_lines_off_a_terminal_or_when_asked(tmp_path, capsys, monkeypatch, why):
    monkeypatch.setattr(progress_module, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: why != "not a terminal")
    argv = [a for a in TABLE if a != "--no-progress" or why == "--no-progress"] + ["--out", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "progress (" not in err and "steps/s" not in err, err


def test_progress_arithmetic():
    p = progress_module.CellProgress(write=None, interval=30.0)
    report = {"name": "iwae-k50-L1", "time": 100.0, "global_step": 1000, "stage": 1, "n_stages": 3, "pass": 0,
              "passes": 3, "step": 0, "steps_per_pass": 200, "total_steps": 2600}
    p.add(report)
    assert p.lines() == ["  [iwae-k50-L1] stage 2/3, pass 1/3, step 1/200 (1000/2600 steps), rate: measuring"]
    p.add(dict(report, time=110.0, global_step=1100, step=100))  # 100 steps in 10 s; 1500 left: 150 s
    assert p.lines() == ["  [iwae-k50-L1] stage 2/3, pass 1/3, step 101/200 (1100/2600 steps), 10.0 steps/s, "
                         "training left 2 min 30 s"]
    p.add({"name": "iwae-k50-L1", "phase": "done"})
    assert p.lines() == []


# ---------------------------------------------------------------------------------------------
# Ctrl-C to the table process alone


_TABLE_DRIVER = """
import json, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, even if this process inherited SIGINT ignored
from iwae_np.experiments.cells import table_cells
from iwae_np.experiments.table import run_table
out = sys.argv[1]
base = {"architectures": {1: {"x_dim": 784, "latent_dims": [2], "q_hidden": [[6]], "p_hidden": [[6]]}},
        "schedule": [{"passes": 1, "lr": 1e-3}, {"passes": 10 ** 6, "lr": 1e-3}], "batch_size": 20,
        "monitor_size": 0, "data": {"name": "mnist5k", "train_subset": 20, "test_subset": 10}}
results = run_table(table_cells(["vae"], [1, 2], [1]), base, out, {"k": 2, "train_subset": 0, "seed": 0}, jobs=2)
print(json.dumps([r["status"] for r in results]))
"""


def _children(pid):
    children = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            children |= {int(c) for c in f.read().split()}
    return children


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads the process tree from /proc (Linux)")
def test_sigint_to_the_table_process_alone_stops_its_workers(tmp_path):
    # catches: the table waiting for every running cell to finish training (days) after a SIGINT sent to it
    # alone (a supervisor, `timeout -s INT`). The moment is certain: both cells' stage-0 checkpoints exist, so
    # both workers are in their endless stage 1 when the signal comes.
    cells = [tmp_path / "table" / "vae-k2-L1", tmp_path / "table" / "vae-k1-L1"]
    log = tmp_path / "log.txt"
    with open(log, "w") as stderr:
        parent = subprocess.Popen([sys.executable, "-c", _TABLE_DRIVER, str(tmp_path / "table")], env=child_env(),
                                  stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not all((c / "checkpoint.npz").exists() for c in cells):
            assert parent.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the workers did not start\n" + log.read_text()
            time.sleep(0.05)
        for worker in _children(parent.pid):  # they started with SIGINT ignored: Ctrl-C never lands in their import
            with open(f"/proc/{worker}/status") as f:
                ignored = int(next(line for line in f if line.startswith("SigIgn:")).split()[1], 16)
            assert ignored >> (signal.SIGINT - 1) & 1, f"worker {worker} does not ignore SIGINT"
        os.kill(parent.pid, signal.SIGINT)
        out, _ = parent.communicate(timeout=120)  # a bound for a broken implementation, not a wait for success
    finally:
        if parent.poll() is None:
            parent.kill()  # its workers see it gone, save and exit
            parent.wait()
    assert parent.returncode == 0, log.read_text()
    assert json.loads(out.splitlines()[-1]) == ["interrupted", "interrupted"], log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()
    for c in cells:  # each saved its cell: a rerun resumes it
        meta = load_run_checkpoint(c)["meta"]
        assert meta["status"] == "interrupted" and meta["position"]["stage"] == 1, (c, meta)


def test_ctrl_c_while_the_commands_are_imported_is_one_line(monkeypatch, capsys):
    # catches (issue 20, item 14, the part in the command line): a KeyboardInterrupt traceback when Ctrl-C comes
    # while main() imports the commands' modules. (Before main() runs, `import iwae_np` itself is not covered.)
    import importlib

    import iwae_np.cli as cli

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib, "import_module", interrupted)
    assert cli.main(["train", "--help"]) == 130
    assert capsys.readouterr().err == "iwae-np: interrupted\n"


@pytest.mark.parametrize("data, label, footnote", [("mnist", "paper MNIST VAE", False), ("omniglot", "paper Omniglot VAE", False),
                                                   ("fashion-mnist", "paper MNIST* VAE", True),
                                                   ("mnist5k", "paper MNIST* VAE", True)])
def test_a_table_beside_another_data_sets_numbers_says_so(data, label, footnote):
    # catches (issue 17): Fashion-MNIST and mnist5k tables labelled "paper MNIST" as if the paper had them
    from iwae_np.experiments.claims import claims_report
    from iwae_np.experiments.paper import paper_footnote
    from iwae_np.experiments.table import markdown_table
    cell = {"status": "finished", "objective": "vae", "k": 50, "layers": 1, "test_nll": 90.0, "active_units": [3],
            "test_L": [-90.0, -91.0], "active_units_total": 3, "data": data, "n_test": 2, "eval_k": 3, "eval_seed": 0}
    cells = [cell, dict(cell, objective="iwae", test_L=[-89.0, -89.5])]
    assert f"| {label} |" in markdown_table(cells, data)
    claims = claims_report(cells, data)
    assert (f"{data} results: its MNIST numbers are shown as a reference point" in claims) == footnote
    assert bool(paper_footnote(data)) == footnote
