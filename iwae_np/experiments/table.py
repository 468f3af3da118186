r"""The paper's Table 1 on this machine: every cell of the grid in parallel processes, and the table beside the paper's.

- :func:`run_table`: the cells (:mod:`~iwae_np.experiments.cells`) in ``jobs`` worker processes, finished
  cells skipped, interrupted ones resumed; :func:`markdown_table` prints the results beside the paper's
  numbers (:mod:`~iwae_np.experiments.paper`). On a Dask cluster the same cells run as tasks instead
  (:mod:`~iwae_np.experiments.cluster`); ``iwae-np table`` chooses the runner.
"""
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .cells import TABLE_FILES, check_table_dir, run_cell
from .paper import PAPER_TABLE1, PAPER_TABLE3, paper_key, paper_label
from .progress import CellProgress, cell_reporter
from .rundirs import claim_directory

__all__ = ["run_table", "markdown_table", "with_shared_k1", "STOP_POLL_SECONDS"]

# ---------------------------------------------------------------------------------------------
# cells in worker processes; a worker whose parent is gone saves its cell and exits


#: Seconds between a worker's checks that its parent (the table process) is still there.
PARENT_POLL_SECONDS = 0.5
#: Seconds an orphaned worker waits for its cell to save its checkpoint after Ctrl-C before it exits anyway.
ORPHAN_GRACE_SECONDS = 120.0

_worker_state = {"busy": False, "orphaned": False, "stop": False, "reports": None}


#: The signal the watchdog sends its own worker: a dedicated one, because SIGINT may be ignored (a table
#: started in the background of a shell without job control inherits SIGINT ignored, and so do its workers).
_STOP_SIGNAL = getattr(signal, "SIGUSR1", None)


def _stop(signum, frame):
    """The stop signal: no cell starts in this worker any more, and the running one stops as Ctrl-C would stop it
    (it saves its checkpoint and returns "interrupted"); an idle worker just remembers it."""
    _worker_state["stop"] = True
    if _worker_state["busy"]:
        raise KeyboardInterrupt


def _init_worker(parent_pid, reports=None):
    """Pool initializer: the stop signal's handler, the queue of progress reports (or None), and a daemon thread
    that watches the parent (see :func:`_watch_parent`)."""
    _worker_state["reports"] = reports
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
    if _worker_state["stop"]:  # the table was interrupted before this cell began
        return {"status": "not run", "name": cell["name"]}
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables set by run_table already hold BLAS to one thread
        threadpool_limits = lambda limits: contextlib.nullcontext()  # noqa: E731
    reports = _worker_state["reports"]
    callback = None if reports is None else cell_reporter(cell["name"], reports.put)
    _worker_state["busy"] = True
    try:
        with threadpool_limits(limits=threads):
            return run_cell(cell, base, out_dir, eval_opts, progress=False, callback=callback, log=_log_line)
    except KeyboardInterrupt:
        return {"status": "interrupted", "name": cell["name"]}
    finally:
        _worker_state["busy"] = False
        if _worker_state["orphaned"]:
            os._exit(130)  # nobody to report to


def _log_line(text):
    sys.stderr.write(text + "\n")  # one write of a whole line (cells in parallel share the terminal)
    sys.stderr.flush()


def run_table(cells, base, out_dir, eval_opts, jobs=None, progress=None, log=print):
    """Run every cell (in ``jobs`` parallel processes, BLAS at one thread each) and return their results.

    The table directory is checked first (:func:`~iwae_np.experiments.cells.check_table_dir`: a user's
    file, or a cell trained with other settings, stops it before anything runs) and held by this process
    while the cells run. ``progress(text)``, if given, prints a block of the running cells' progress every
    :data:`~iwae_np.experiments.progress.PROGRESS_SECONDS`. Ctrl-C (SIGINT to this process alone is
    enough) stops every running cell, which saves its checkpoint; the cells are then ``"interrupted"``
    or ``"not run"``. Worker processes end when this process does, however it ends.
    """
    out_dir = Path(out_dir)
    check_table_dir(cells, out_dir, base, eval_opts, figures=False)  # figures: the caller draws them (and checks)
    out_dir.mkdir(parents=True, exist_ok=True)
    with claim_directory(out_dir, TABLE_FILES):
        jobs = max(1, min(jobs or os.cpu_count() or 1, len(cells)))
        if jobs == 1:
            return _run_here(cells, base, out_dir, eval_opts, progress, log)
        return _run_in_processes(cells, base, out_dir, eval_opts, jobs, progress)


def _run_here(cells, base, out_dir, eval_opts, progress, log):
    shown = CellProgress(progress) if progress is not None else None
    results = []
    with shown or contextlib.nullcontext():
        for i, c in enumerate(cells):
            callback = shown.callback(c["name"]) if shown is not None else None
            results.append(run_cell(c, base, out_dir, eval_opts, log=log, callback=callback))
            if shown is not None:
                shown.reports.put({"name": c["name"], "phase": "done"})
            if results[-1]["status"] == "interrupted":  # Ctrl-C stops the grid, not just this cell
                return results + [{"status": "not run", "name": rest["name"]} for rest in cells[i + 1:]]
    return results


#: Seconds between the stop signals the table process sends its workers after Ctrl-C, until every cell has stopped.
STOP_POLL_SECONDS = 0.5


@contextlib.contextmanager
def _signals_ignored_by_new_workers():
    """While workers are spawned: SIGINT and the stop signal ignored, so the workers start with both ignored (an
    ignored signal stays ignored across exec). Ctrl-C then reaches the table process alone, which stops its
    workers with :data:`_STOP_SIGNAL` once their handler is installed; none prints a traceback mid-import."""
    names = [signal.SIGINT] + ([_STOP_SIGNAL] if _STOP_SIGNAL is not None else [])
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.signal(s, signal.SIG_IGN) for s in names}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def _run_in_processes(cells, base, out_dir, eval_opts, jobs, progress):
    context = multiprocessing.get_context("spawn")
    reports = context.Queue() if progress is not None else None
    payloads = [(c, base, str(out_dir), eval_opts, 1) for c in cells]
    # one BLAS thread per worker: several processes each running a multi-threaded BLAS on the
    # same cores slow each other down many times over. The variables reach the workers' numpy
    # at its import (they are spawned while they are set); threadpoolctl also limits it in place.
    saved = {v: os.environ.get(v) for v in _THREAD_VARIABLES}
    os.environ.update({v: "1" for v in _THREAD_VARIABLES})
    pool = None
    try:
        pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                      initargs=(os.getpid(), reports))
        with _signals_ignored_by_new_workers():
            futures = {pool.submit(_worker, p): p[0]["name"] for p in payloads}
        shown = CellProgress(progress, reports) if progress is not None else None
        with shown or contextlib.nullcontext():
            results = _collect(pool, futures, shown)
        pool.shutdown(wait=True)
    finally:
        for v, value in saved.items():
            if value is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = value
    return [results[c["name"]] for c in cells]


def _collect(pool, futures, shown):
    results = {}
    try:
        for f in cf.as_completed(futures):
            results[futures[f]] = f.result()
            if shown is not None:
                shown.reports.put({"name": futures[f], "phase": "done"})
    except KeyboardInterrupt:
        _stop_workers(pool, futures)
        for f, name in futures.items():
            if name not in results:
                results[name] = (f.result() if f.done() and not f.cancelled() and f.exception() is None
                                 else {"status": "not run", "name": name})
    return results


def _stop_workers(pool, futures):
    """Ctrl-C in the table process: no new cell starts, and every running one is stopped as Ctrl-C would stop it
    (it saves its checkpoint), by :data:`_STOP_SIGNAL`, sent again until every cell has returned (a worker
    still starting up ignores it)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    while not all(f.done() for f in futures):
        for process in processes:
            with contextlib.suppress(ProcessLookupError, ValueError, AttributeError):
                if process.is_alive() and _STOP_SIGNAL is not None:
                    os.kill(process.pid, _STOP_SIGNAL)
        cf.wait(list(futures), timeout=STOP_POLL_SECONDS)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _fmt_au(counts):
    return "+".join(str(c) for c in counts) if counts is not None else "–"


def markdown_table(results, data_name, ks=None, layers=None):
    """Test NLL and active units per (layers, k), VAE beside IWAE, and the paper's numbers beside them.

    A data set the paper does not have is shown beside its MNIST numbers (:func:`~iwae_np.experiments.paper.paper_key`),
    and the column is then labelled ``paper MNIST*``; the note printed with the table explains the star
    (:func:`~iwae_np.experiments.paper.paper_footnote`)."""
    by = {}
    for r in results:
        if r.get("status") == "finished":
            by[(r["objective"], r["k"], r["layers"])] = r
    ks = sorted({k for (_, k, _) in by}) if ks is None else list(ks)
    layers = sorted({L for (_, _, L) in by}) if layers is None else list(layers)
    paper_data = paper_key(data_name)
    fixed = data_name == "binarized-mnist"
    label = "paper (Table 3, fixed binarization)" if fixed else f"paper {paper_label(data_name)}"
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
