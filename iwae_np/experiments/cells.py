r"""One cell of the Table 1 grid: what it is, what determines its result, and how it runs.

A cell is one (objective, k, stochastic layers) of the grid; it trains (or resumes) in ``OUT/<cell>/``
and is evaluated into ``evaluation.json`` there. Every runner uses :func:`run_cell`: the local one
(:func:`iwae_np.experiments.table.run_table`, cells in processes) and the Dask one
(:func:`iwae_np.experiments.cluster.run_table_on_cluster`, cells as tasks).

A table directory is reused only for the same question: :func:`cell_settings` is everything that
determines a cell's result (every field of its :class:`~iwae_np.experiments.training.TrainConfig` and
every evaluation option), and a rerun whose settings differ from those a cell was trained or evaluated
with is refused, naming the options (:func:`check_cell_settings`), instead of printing the old answer.
"""
import json
import time
from pathlib import Path

from ..data import dataset_from_spec
from ..files import read_json
from ..model import PRESETS
from .checkpoints import CHECKPOINT_NAME, load_run_checkpoint
from .evaluation import EVALUATION_NAME, evaluate_run, write_evaluation
from .figures import table_figure_names
from .rundirs import check_not_foreign, check_output_dir
from .training import CONFIG_NAME, METRICS_NAME, TrainConfig, config_of_checkpoint, train

__all__ = ["TABLE_OBJECTIVES", "TABLE_FILES", "cell_name", "table_cells", "cell_config", "cell_settings",
           "differing_settings", "check_cell_settings", "check_table_dir", "run_cell"]

#: The objectives of the paper's tables.
TABLE_OBJECTIVES = ("vae", "iwae")
#: The files a table writes in its directory (besides its cells' run directories and its figures).
TABLE_FILES = ("results.json", "table.md")


def cell_name(objective, k, layers):
    return f"{objective}-k{k}-L{layers}"


def table_cells(objectives=("vae", "iwae"), ks=(1, 5, 50), layers=(1, 2), share_k1=True):
    """The grid's cells as dicts ``{"objective", "k", "layers", "name"}``, most expensive first.

    With ``share_k1`` (and both objectives asked for), IWAE at k = 1 is not trained separately:
    its bound and gradient are the VAE's (``L_1 = L_vae``), and the table reports the VAE cell.
    """
    cells = []
    for L in layers:
        for k in ks:
            for obj in objectives:
                if share_k1 and k == 1 and obj == "iwae" and "vae" in objectives:
                    continue
                cells.append({"objective": obj, "k": int(k), "layers": int(L), "name": cell_name(obj, k, L)})
    return sorted(cells, key=lambda c: -(c["k"] + 4) * c["layers"])


def cell_config(cell, base):
    """The :class:`TrainConfig` of a cell. ``base``: keyword arguments of :class:`TrainConfig` shared by every
    cell (the architecture is chosen by the cell's layer count unless ``base["architectures"]`` maps it)."""
    base = dict(base)
    archs = base.pop("architectures", None) or {}
    arch = archs.get(cell["layers"]) or PRESETS["one-layer" if cell["layers"] == 1 else "two-layer"]
    return TrainConfig(architecture=arch, objective=cell["objective"], k=cell["k"], **base)


# ---------------------------------------------------------------------------------------------
# the same question, or a refusal


#: The command-line options behind a setting, for messages (a setting not listed is named as it is).
SETTING_FLAGS = {"architecture": "--latent/--hidden", "objective": "--objectives", "k": "--k",
                 "batch_size": "--batch-size", "schedule": "--stages/--start-stage/--pass-scale/--lr",
                 "adam": "--beta1/--beta2/--adam-eps", "dtype": "--dtype", "seed": "--seed",
                 "monitor_k": "--monitor-k", "monitor_size": "--monitor-size", "monitor_every": "--monitor-every",
                 "data.name": "--data", "data.root": "--data-dir", "data.train_subset": "--train-subset",
                 "data.test_subset": "--test-subset", "data.cache_dir": "--cache-dir",
                 "evaluation.k": "--eval-k", "evaluation.train_subset": "--eval-train-subset",
                 "evaluation.seed": "--eval-seed"}


def cell_settings(cell, base, eval_opts):
    """Everything that determines a cell's result, as JSON values: ``{"config": every field of its
    TrainConfig, "evaluation": every evaluation option}``. A new field of either is compared without more code."""
    return _plain({"config": cell_config(cell, base).to_dict(), "evaluation": dict(eval_opts)})


def _plain(value):
    return json.loads(json.dumps(value))  # tuples -> lists, as a stored file reads back


def _flat(settings, prefix=""):
    out = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key in ("data", "config", "evaluation"):
            out.update(_flat(value, "" if key == "config" else f"{name}."))
        else:
            out[name] = value
    return out


def differing_settings(saved, wanted):
    """``[(name, saved value, wanted value)]`` of every setting (flattened: ``seed``, ``data.test_subset``,
    ``evaluation.k``) that differs; a setting present in one only counts as differing."""
    a, b = _flat(_plain(saved)), _flat(_plain(wanted))
    missing = object()
    return [(name, a.get(name, missing), b.get(name, missing)) for name in sorted(set(a) | set(b))
            if a.get(name, missing) != b.get(name, missing)]


def _describe(diff):
    def show(v):
        return "(none)" if not isinstance(v, (str, int, float, list, dict, type(None))) else json.dumps(v)
    parts = []
    for name, old, new in diff:
        flag = SETTING_FLAGS.get(name)
        parts.append(f"{name}{f' ({flag})' if flag else ''}: {show(old)} there, {show(new)} now")
    return "; ".join(parts)


def _saved_evaluation_options(done):
    if isinstance(done.get("evaluation_options"), dict):
        return done["evaluation_options"]
    # written before the options were recorded: the ones it names (its training-subset size is not known)
    return {"k": done.get("eval_k"), "seed": done.get("eval_seed")}


def check_cell_settings(cell, base, eval_opts, run_dir):
    """Raise ValueError when ``run_dir`` holds a cell trained or evaluated with other settings than these
    (naming every differing option); nothing is read but its checkpoint's configuration and its evaluation."""
    run_dir = Path(run_dir)
    wanted = cell_settings(cell, base, eval_opts)
    if (run_dir / CHECKPOINT_NAME).exists():
        saved = config_of_checkpoint(load_run_checkpoint(run_dir / CHECKPOINT_NAME)).to_dict()
        diff = differing_settings({"config": saved}, {"config": wanted["config"]})
        if diff:
            raise ValueError(f"{run_dir} was trained with other options than this command's ({_describe(diff)}); "
                             "rerun with the same options to continue it, or choose another --out")
    eval_path = run_dir / EVALUATION_NAME
    if eval_path.is_file():
        check_not_foreign(eval_path)
        done = read_json(eval_path)
        if isinstance(done, dict) and done.get("status") == "finished":
            saved = _saved_evaluation_options(done)
            diff = differing_settings({"evaluation": saved}, {"evaluation": {k: wanted["evaluation"].get(k)
                                                                             for k in saved}})
            if diff:
                raise ValueError(f"{eval_path} was evaluated with other options than this command's "
                                 f"({_describe(diff)}); rerun with the same options, or choose another --out "
                                 "(iwae-np evaluate RUN --output FILE evaluates a run again elsewhere)")


def check_table_dir(cells, out_dir, base=None, eval_opts=None, figures=True):
    """Before anything runs: ``out_dir`` and every cell's run directory usable, no user's file where a cell, the
    table or (with ``figures``) its figures write one, and (given ``base`` and ``eval_opts``) no cell there from
    other settings (ValueError naming it)."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    for name in TABLE_FILES:
        check_not_foreign(out_dir / name)
    if figures:
        check_output_dir(out_dir / "figures")
        for name in table_figure_names(sorted({c["layers"] for c in cells})):
            check_not_foreign(out_dir / "figures" / name)
    for cell in cells:
        run_dir = out_dir / cell["name"]
        check_output_dir(run_dir)
        for name in (CONFIG_NAME, METRICS_NAME, EVALUATION_NAME):
            check_not_foreign(run_dir / name)
        if base is not None and eval_opts is not None:
            check_cell_settings(cell, base, eval_opts, run_dir)


# ---------------------------------------------------------------------------------------------
# running a cell


def run_cell(cell, base, out_dir, eval_opts, progress=False, log=print, map_fn=None, checkpoint_every=300.0,
             callback=None):
    """Train (or resume) and evaluate one cell; skip it when its evaluation with these settings is on disk.

    ``base``: see :func:`cell_config`; ``eval_opts``: ``{"k", "train_subset", "seed"}`` of
    :func:`~iwae_np.experiments.evaluation.evaluate_run`. Returns the evaluation dict,
    ``{"status": "interrupted", ...}``, or ``{"status": "failed", "error": ...}`` when the cell cannot go on
    (a non-finite loss, a file in the way, a failed write, a cell of other settings already there: the
    message says which and nothing already written is lost); the other cells go on.
    ``map_fn`` computes the batches of the evaluation elsewhere
    (:func:`~iwae_np.experiments.evaluation.iwae_log_likelihood`); ``checkpoint_every`` and
    ``callback(info)`` (after every step) go to :func:`~iwae_np.experiments.training.train`.
    """
    run_dir = Path(out_dir) / cell["name"]
    eval_path = run_dir / EVALUATION_NAME
    try:
        check_cell_settings(cell, base, eval_opts, run_dir)
        if eval_path.is_file() and (run_dir / CHECKPOINT_NAME).is_file():
            done = read_json(eval_path)
            if isinstance(done, dict) and done.get("status") == "finished":
                log(f"[{cell['name']}] already done: test NLL {done['test_nll']:.2f}")
                return done
        return _train_and_evaluate(cell, base, run_dir, eval_opts, progress, log, map_fn, checkpoint_every, callback)
    except (ValueError, OSError) as err:  # NonFiniteLossError, ForeignFileError, CheckpointWriteError, ...
        log(f"[{cell['name']}] failed: {err}")
        return {"status": "failed", "name": cell["name"], "error": str(err)}


def _train_and_evaluate(cell, base, run_dir, eval_opts, progress, log, map_fn=None, checkpoint_every=300.0,
                        callback=None):
    config = cell_config(cell, base)
    dataset = dataset_from_spec(config.data)
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    t0 = time.monotonic()
    log(f"[{cell['name']}] {'resuming' if resume else 'training'}: {config.total_passes} passes")

    def stage_log(info):
        if callback is not None:
            callback(info)
        record = info["stage_record"]
        if record is not None:
            bounds = (f"test L_{record['monitor_k']} {record['test_bound']:.2f}, train {record['train_bound']:.2f}"
                      if "test_bound" in record else f"training objective {record['train_objective']:.2f}")
            log(f"[{cell['name']}] stage {record['stage']} done ({record['passes_done']} passes, "
                f"{time.monotonic() - t0:.0f} s): {bounds}")

    out = train(dataset, config, run_dir, resume=resume, progress=progress, callback=stage_log,
                checkpoint_every=checkpoint_every)
    if out["status"] != "finished":
        log(f"[{cell['name']}] interrupted; its checkpoint is saved")
        return {"status": "interrupted", "name": cell["name"]}
    log(f"[{cell['name']}] trained in {time.monotonic() - t0:.0f} s; evaluating L_{eval_opts['k']}")
    eval_path = run_dir / EVALUATION_NAME
    result = evaluate_run(run_dir, dataset, progress=progress, map_fn=map_fn, output=eval_path, **eval_opts)
    result["cell"] = cell["name"]
    result["evaluation_options"] = dict(eval_opts)
    write_evaluation(eval_path, result)
    log(f"[{cell['name']}] test NLL {result['test_nll']:.2f}, active units {result['active_units']}")
    return result
