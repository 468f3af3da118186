r"""The paper's Table 1 end to end: train and evaluate every cell, print it beside the paper's numbers.

- :func:`table_cells`, :func:`run_table`: the Table 1 grid (VAE and IWAE x k x 1 and 2 stochastic
  layers), cells in parallel processes, finished cells skipped; :func:`markdown_table` prints it
  beside the paper's numbers (:data:`PAPER_TABLE1`).
"""
import os
import signal
import sys
import threading
import time
from pathlib import Path

from ..data import dataset_from_spec
from ..files import read_json, write_json
from ..model import PRESETS
from .checkpoints import CHECKPOINT_NAME
from .evaluation import EVALUATION_NAME, evaluate_run
from .rundirs import check_not_foreign, check_output_dir, claim_directory
from .training import CONFIG_NAME, METRICS_NAME, TrainConfig, train

__all__ = ["PAPER_TABLE1", "PAPER_TABLE3", "TABLE_OBJECTIVES", "table_cells", "run_cell", "cell_config",
           "check_table_dir", "run_table", "markdown_table", "cell_name", "with_shared_k1", "paper_key"]

#: The objectives of the paper's tables.
TABLE_OBJECTIVES = ("vae", "iwae")

#: The paper's Table 1, test NLL (nats) and active units: {(data, layers, k): (vae_nll, vae_au, iwae_nll, iwae_au)}.
PAPER_TABLE1 = {
    ("MNIST", 1, 1): (86.76, "19", 86.76, "19"),
    ("MNIST", 1, 5): (86.47, "20", 85.54, "22"),
    ("MNIST", 1, 50): (86.35, "20", 84.78, "25"),
    ("MNIST", 2, 1): (85.33, "16+5", 85.33, "16+5"),
    ("MNIST", 2, 5): (85.01, "17+5", 83.89, "21+5"),
    ("MNIST", 2, 50): (84.78, "17+5", 82.90, "26+7"),
    ("Omniglot", 1, 1): (108.11, "28", 108.11, "28"),
    ("Omniglot", 1, 5): (107.62, "28", 106.12, "34"),
    ("Omniglot", 1, 50): (107.80, "28", 104.67, "41"),
    ("Omniglot", 2, 1): (107.58, "28+4", 107.56, "30+5"),
    ("Omniglot", 2, 5): (106.31, "30+5", 104.79, "38+6"),
    ("Omniglot", 2, 50): (106.30, "30+5", 103.38, "44+7"),
}
#: The paper's Table 3 (fixed binarization, 1 layer): {k: (vae_nll, iwae_nll)}.
PAPER_TABLE3 = {1: (88.71, 88.71), 5: (88.83, 87.63), 50: (89.05, 87.10)}


# ---------------------------------------------------------------------------------------------
# the Table 1 grid


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


def run_cell(cell, base, out_dir, eval_opts, progress=False, log=print, map_fn=None, checkpoint_every=300.0,
             callback=None):
    """Train (or resume) and evaluate one cell; skip it when its evaluation is already on disk.

    ``base``: keyword arguments of :class:`TrainConfig` shared by every cell (architecture is
    chosen by the cell's layer count unless ``base["architectures"]`` maps it). Returns the
    evaluation dict, ``{"status": "interrupted", ...}``, or ``{"status": "failed", "error": ...}``
    when the cell cannot go on (a non-finite loss, a file in the way, a failed write: the
    message says which and nothing already written is lost); the other cells go on.
    ``map_fn`` computes the batches of the evaluation elsewhere
    (:func:`~iwae_np.experiments.evaluation.iwae_log_likelihood`); ``checkpoint_every`` and
    ``callback(info)`` (after every step) go to :func:`train`.
    """
    run_dir = Path(out_dir) / cell["name"]
    eval_path = run_dir / EVALUATION_NAME
    try:
        if eval_path.is_file():
            check_not_foreign(eval_path)
            done = read_json(eval_path)
            if (isinstance(done, dict) and done.get("eval_k") == eval_opts["k"] and done.get("status") == "finished"
                    and (run_dir / CHECKPOINT_NAME).is_file()):
                log(f"[{cell['name']}] already done: test NLL {done['test_nll']:.2f}")
                return done
        return _train_and_evaluate(cell, base, run_dir, eval_opts, progress, log, map_fn, checkpoint_every, callback)
    except (ValueError, OSError) as err:  # NonFiniteLossError, ForeignFileError, CheckpointWriteError, ...
        log(f"[{cell['name']}] failed: {err}")
        return {"status": "failed", "name": cell["name"], "error": str(err)}


def cell_config(cell, base):
    """The :class:`TrainConfig` of a cell."""
    base = dict(base)
    archs = base.pop("architectures", None) or {}
    arch = archs.get(cell["layers"]) or PRESETS["one-layer" if cell["layers"] == 1 else "two-layer"]
    return TrainConfig(architecture=arch, objective=cell["objective"], k=cell["k"], **base)


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
    result = evaluate_run(run_dir, dataset, progress=progress, map_fn=map_fn, **eval_opts)
    result["cell"] = cell["name"]
    write_json(run_dir / EVALUATION_NAME, result)
    log(f"[{cell['name']}] test NLL {result['test_nll']:.2f}, active units {result['active_units']}")
    return result


def check_table_dir(cells, out_dir):
    """Before anything runs: ``out_dir`` and every cell's run directory usable, and no user's file where a
    cell or the table writes one (ValueError naming it)."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    for name in ("results.json", "table.md"):
        check_not_foreign(out_dir / name)
    for cell in cells:
        run_dir = out_dir / cell["name"]
        check_output_dir(run_dir)
        for name in (CONFIG_NAME, METRICS_NAME, EVALUATION_NAME):
            check_not_foreign(run_dir / name)


# ---------------------------------------------------------------------------------------------
# cells in worker processes; a worker whose parent is gone saves its cell and exits


#: Seconds between a worker's checks that its parent (the table process) is still there.
PARENT_POLL_SECONDS = 0.5
#: Seconds an orphaned worker waits for its cell to save its checkpoint after Ctrl-C before it exits anyway.
ORPHAN_GRACE_SECONDS = 120.0

_worker_state = {"busy": False, "orphaned": False}


#: The signal the watchdog sends its own worker: a dedicated one, because SIGINT may be ignored (a table
#: started in the background of a shell without job control inherits SIGINT ignored, and so do its workers).
_STOP_SIGNAL = getattr(signal, "SIGUSR1", None)


def _stop(signum, frame):
    raise KeyboardInterrupt  # what Ctrl-C does: the cell saves its checkpoint and returns "interrupted"


def _init_worker(parent_pid):
    """Pool initializer: watch the parent from a daemon thread (see :func:`_watch_parent`)."""
    if _STOP_SIGNAL is not None:
        signal.signal(_STOP_SIGNAL, _stop)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="iwae_np-watch-parent", daemon=True).start()


def _watch_parent(parent_pid):
    """When the table process is gone (killed, even by SIGKILL), end this worker instead of leaving it
    blocked on the pool's queue forever: at once when idle, else as Ctrl-C would (a KeyboardInterrupt in
    the main thread, by the signal :data:`_STOP_SIGNAL`), which makes the cell save its checkpoint (a
    rerun resumes it); then :func:`_worker` exits."""
    while os.getppid() == parent_pid:  # an orphan is adopted by another process: its parent id changes
        time.sleep(PARENT_POLL_SECONDS)
    _worker_state["orphaned"] = True
    if not _worker_state["busy"] or _STOP_SIGNAL is None:
        os._exit(1)
    os.kill(os.getpid(), _STOP_SIGNAL)
    time.sleep(ORPHAN_GRACE_SECONDS)
    os._exit(1)


def _worker(payload):
    cell, base, out_dir, eval_opts, threads = payload
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables set by run_table already hold BLAS to one thread
        import contextlib
        threadpool_limits = lambda limits: contextlib.nullcontext()
    _worker_state["busy"] = True
    try:
        with threadpool_limits(limits=threads):
            return run_cell(cell, base, out_dir, eval_opts, progress=False, log=lambda s: print(s, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        return {"status": "interrupted", "name": cell["name"]}
    finally:
        _worker_state["busy"] = False
        if _worker_state["orphaned"]:
            os._exit(130)  # nobody to report to


def run_table(cells, base, out_dir, eval_opts, jobs=None, progress=True, log=print, scheduler=None):
    """Run every cell (in ``jobs`` parallel processes, BLAS at one thread each) and return their results.

    The table directory is checked first (:func:`check_table_dir`) and held by this process while
    the cells run. Worker processes end when this process does, however it ends.
    ``scheduler``: the address of a Dask scheduler (or a ``distributed.Client``): each cell runs as a
    task on its cluster instead (:func:`iwae_np.experiments.cluster.run_table_on_cluster`).
    """
    out_dir = Path(out_dir)
    check_table_dir(cells, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with claim_directory(out_dir, ("results.json", "table.md")):
        if scheduler is not None:
            from .cluster import run_table_on_cluster
            return run_table_on_cluster(cells, base, out_dir, eval_opts, scheduler, log=log)
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(cells)))
        if jobs == 1:
            results = []
            for i, c in enumerate(cells):
                results.append(run_cell(c, base, out_dir, eval_opts, progress=progress, log=log))
                if results[-1]["status"] == "interrupted":  # Ctrl-C stops the grid, not just this cell
                    return results + [{"status": "not run", "name": rest["name"]} for rest in cells[i + 1:]]
            return results
        return _run_in_processes(cells, base, out_dir, eval_opts, jobs)


def _run_in_processes(cells, base, out_dir, eval_opts, jobs):
    import concurrent.futures as cf
    import multiprocessing
    results = {}
    payloads = [(c, base, str(out_dir), eval_opts, 1) for c in cells]
    # one BLAS thread per worker: several processes each running a multi-threaded BLAS on the
    # same cores slow each other down many times over. The variables reach the workers' numpy
    # at its import (they are spawned while they are set); threadpoolctl also limits it in place.
    saved = {v: os.environ.get(v) for v in _THREAD_VARIABLES}
    os.environ.update({v: "1" for v in _THREAD_VARIABLES})
    try:
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_worker, p): p[0]["name"] for p in payloads}
            try:
                for f in cf.as_completed(futures):
                    results[futures[f]] = f.result()
            except KeyboardInterrupt:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
    return [results[c["name"]] for c in cells]


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def paper_key(data_name):
    if data_name in ("omniglot",):
        return "Omniglot"
    return "MNIST"


def _fmt_au(counts):
    return "+".join(str(c) for c in counts) if counts is not None else "–"


def markdown_table(results, data_name, ks=None, layers=None):
    """Test NLL and active units per (layers, k), VAE beside IWAE, and the paper's numbers beside them."""
    by = {}
    for r in results:
        if r.get("status") == "finished":
            by[(r["objective"], r["k"], r["layers"])] = r
    ks = sorted({k for (_, k, _) in by}) if ks is None else list(ks)
    layers = sorted({L for (_, _, L) in by}) if layers is None else list(layers)
    paper_data = paper_key(data_name)
    fixed = data_name == "binarized-mnist"
    label = "paper (Table 3, fixed binarization)" if fixed else f"paper {paper_data}"
    lines = [f"| layers | k | VAE NLL | VAE AU | IWAE NLL | IWAE AU | {label} VAE | {label} IWAE |",
             "|---|---|---|---|---|---|---|---|"]
    for L in layers:
        for k in ks:
            cells = []
            for obj in ("vae", "iwae"):
                r = by.get((obj, k, L)) or (by.get(("vae", k, L)) if k == 1 else None)
                cells += ([f"{r['test_nll']:.2f}", _fmt_au(r["active_units"])] if r else ["–", "–"])
            if fixed:
                p = PAPER_TABLE3.get(k) if L == 1 else None
                paper = [f"{p[0]:.2f}", f"{p[1]:.2f}"] if p else ["–", "–"]
            else:
                p = PAPER_TABLE1.get((paper_data, L, k))
                paper = [f"{p[0]:.2f} / {p[1]}", f"{p[2]:.2f} / {p[3]}"] if p else ["–", "–"]
            lines.append(f"| {L} | {k} | " + " | ".join(cells + paper) + " |")
    return "\n".join(lines)


def with_shared_k1(results, objectives):
    """Report the VAE k = 1 cell in the IWAE column too (they are the same objective)."""
    if not ("vae" in objectives and "iwae" in objectives):
        return results
    out = list(results)
    have = {(r.get("objective"), r.get("k"), r.get("layers")) for r in results}
    for r in results:
        if r.get("objective") == "vae" and r.get("k") == 1 and ("iwae", 1, r["layers"]) not in have:
            out.append(dict(r, objective="iwae", shared_with=r.get("cell")))
    return out
