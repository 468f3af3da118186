r"""The Table 1 grid on a Dask cluster (``iwae-np table --scheduler ADDRESS``): each cell a task.

The paper's protocol is 12 cells of 1 to 5 CPU-days each. With a Dask scheduler address,
``iwae-np table`` hands every cell to :func:`run_table_on_cluster` instead of the local runner
(:func:`iwae_np.experiments.table.run_table`); both run :func:`iwae_np.experiments.cells.run_cell`:

- each cell is one task (:func:`run_cell_task`) that trains or resumes the cell in ``OUT/<cell>/``
  and evaluates it, exactly as ``iwae-np table`` does on one machine. ``OUT`` must be a directory
  every worker sees under the same path (a shared file system): the checkpoints live there;
- a worker that dies (killed, preempted, out of memory) takes its cell's progress since the last
  checkpoint with it, nothing more: the scheduler runs the task again on another worker, which
  resumes from the checkpoint, and training is deterministic, so the cell ends with the same
  parameters bit for bit as an uninterrupted run (given the same number of BLAS threads per worker;
  Dask's workers use one). After ``distributed.scheduler.allowed-failures`` deaths Dask gives the task
  up (``KilledWorker``); this module then submits it again, up to :data:`RESUBMISSIONS` times. Should a
  task ever run twice at once (a worker the scheduler lost but that still runs), both compute the same
  trajectory and write the same files, so the outcome does not change;
- the cell's :math:`\mathcal L_{5000}` evaluation runs as more tasks, one per group of batches of images
  (:func:`dask_map`); each batch draws its own noise (:func:`~iwae_np.experiments.evaluation.batch_noise`),
  so the per-image values equal those of a single process bit for bit (same BLAS threads).

Dask (``dask[distributed]``) is the optional ``cluster`` extra: ``pip install -e '.[cluster]'``. For a Slurm,
PBS or SGE cluster start the scheduler and workers with ``dask-jobqueue`` (see the README).
"""
import contextlib
import logging
import os
import socket
import sys
import uuid
from pathlib import Path

from .cells import TABLE_FILES, check_table_dir, run_cell
from .rundirs import claim_directory

__all__ = ["connect", "close_client", "run_table_on_cluster", "run_cell_task", "dask_map", "RESUBMISSIONS"]

#: How many times a cell given up by Dask (``KilledWorker``) is submitted again.
RESUBMISSIONS = 3


#: Seconds to wait for a scheduler to answer before giving up.
CONNECT_TIMEOUT = 10.0


def connect(scheduler):
    """A ``distributed.Client`` for a scheduler address (``tcp://host:8786``), or ``scheduler`` if it is one.

    Any address that cannot be used (malformed, an unknown protocol, a refused or silent port, a TLS address
    without TLS settings) is a ValueError naming it, in one line; a refused TCP port is reported at once.
    """
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install -e '.[cluster]' (dask[distributed])") from None
    if isinstance(scheduler, Client):
        return scheduler
    if not isinstance(scheduler, str) or not scheduler.strip():
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r}: not an address (expected "
                         "tcp://host:8786)")
    _check_reachable(scheduler)
    try:
        return Client(scheduler, timeout=f"{CONNECT_TIMEOUT:g}s")
    except Exception as err:  # noqa: BLE001 - distributed raises TypeError, ValueError, OSError, TimeoutError...
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler!r}: {reason}") from None


def _check_reachable(address):
    """For a ``tcp://`` or ``tls://`` address (or a bare ``host:port``): a TCP connection to it, so that a refused
    or unknown host is reported at once rather than after the client's timeout."""
    protocol, _, rest = address.rpartition("://")
    if protocol not in ("", "tcp", "tls"):
        return
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"cannot reach the Dask scheduler at {address!r}: not an address (expected tcp://host:8786)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        raise ValueError(f"cannot reach the Dask scheduler at {address!r}: {err.strerror or err}") from None


def close_client(client):
    """Close ``client`` without the traceback distributed logs when its scheduler is gone (its reconnection
    attempts are cancelled by the close); the cells' results already say what happened."""
    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.client", "distributed.core")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        client.close(timeout=CONNECT_TIMEOUT)
    except Exception:  # noqa: BLE001 - a client whose scheduler died may fail to close: nothing is left to save
        pass
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _log(message):
    print(message, file=sys.stderr, flush=True)  # a worker's stderr: its log


def dask_map(fn, items, client=None):
    """``[fn(item) for item in items]`` as tasks on a Dask cluster, in order.

    For :func:`~iwae_np.experiments.evaluation.iwae_log_likelihood`'s batches: arguments shared by
    every item (the parameters) are sent to the workers once; the items go in contiguous groups, about
    two per worker. Without ``client``, the cluster of the task that calls it, which leaves its
    worker's thread pool while it waits (``worker_client``).
    """
    from distributed import worker_client  # the optional cluster extra

    items = [tuple(item) for item in items]
    if not items:
        return []
    with (worker_client() if client is None else contextlib.nullcontext(client)) as client:
        shared = [all(item[i] is items[0][i] for item in items) for i in range(len(items[0]))]
        scattered = {i: client.scatter([items[0][i]], broadcast=True, hash=False)[0]
                     for i, same in enumerate(shared) if same and _worth_scattering(items[0][i])}
        n_groups = max(1, min(len(items), 2 * max(1, len(client.scheduler_info()["workers"]))))
        bounds = [round(j * len(items) / n_groups) for j in range(n_groups + 1)]
        futures = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            group = [tuple(scattered.get(i, value) for i, value in enumerate(item)) for item in items[lo:hi]]
            futures.append(client.submit(_map_group, fn, *[a for item in group for a in item],
                                         width=len(items[0]), pure=False))
        return [value for values in client.gather(futures) for value in values]


def _worth_scattering(value):
    return isinstance(value, dict) or getattr(value, "nbytes", 0) > 1 << 16


def _map_group(fn, *flat_items, width):
    # the items arrive flattened so that Dask resolves the scattered arguments inside them
    return [fn(tuple(flat_items[i:i + width])) for i in range(0, len(flat_items), width)]


def run_cell_task(cell, base, out_dir, eval_opts, split_evaluation=True, checkpoint_every=300.0, callback=None):
    """One cell on a Dask worker: train or resume it from ``OUT/<cell>/``, then evaluate (its batches as tasks)."""
    _log(f"[{cell['name']}] on {socket.gethostname()} (process {os.getpid()})")
    return run_cell(cell, base, out_dir, eval_opts, progress=False, log=_log,
                    map_fn=dask_map if split_evaluation else None, checkpoint_every=checkpoint_every,
                    callback=callback)


def _killed_worker_types():
    try:
        from distributed.scheduler import KilledWorker
        return (KilledWorker,)
    except ImportError:  # pragma: no cover - older layouts
        return ()


def run_table_on_cluster(cells, base, out_dir, eval_opts, scheduler, log=print, split_evaluation=True,
                         checkpoint_every=300.0, callback=None, resubmissions=RESUBMISSIONS):
    """Run every cell as a task on the Dask cluster of ``scheduler`` and return their results in the cells' order.

    ``out_dir`` must be the same path on every worker (a shared file system). ``split_evaluation``:
    the evaluation's batches as tasks too. ``checkpoint_every`` (seconds) and ``callback(info)`` (called
    on the worker after every training step; it must be picklable) go to :func:`run_cell`. A cell that
    raises gives ``{"status": "failed", "name", "error"}``; one that Dask gives up after repeated worker
    deaths is submitted again, up to ``resubmissions`` times.
    """
    from distributed import as_completed

    check_table_dir(cells, out_dir, base, eval_opts, figures=False)  # figures: the caller draws them (and checks)
    client = connect(scheduler)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with claim_directory(out_dir, TABLE_FILES):
        return _run_on(client, as_completed, cells, base, str(Path(out_dir).resolve()), eval_opts, log,
                       split_evaluation, checkpoint_every, callback, resubmissions)


def _run_on(client, as_completed, cells, base, out_dir, eval_opts, log, split_evaluation, checkpoint_every, callback,
            resubmissions):
    killed = _killed_worker_types()
    n_workers = len(client.scheduler_info()["workers"])
    log(f"Dask scheduler {client.scheduler.address}: {n_workers} worker(s); checkpoints in {out_dir}")

    def submit(cell):
        return client.submit(run_cell_task, cell, base, out_dir, eval_opts, split_evaluation, checkpoint_every,
                             callback, key=f"iwae-np-{cell['name']}-{uuid.uuid4().hex[:8]}", pure=False)

    futures = {submit(cell): cell for cell in cells}
    tries = {cell["name"]: 0 for cell in cells}
    results = {}
    pending = as_completed(list(futures))
    try:
        for future in pending:
            cell = futures.pop(future)
            try:
                results[cell["name"]] = future.result()
                log(f"[{cell['name']}] {results[cell['name']].get('status', 'done')}")
            except killed as err:
                if tries[cell["name"]] >= resubmissions:
                    results[cell["name"]] = {"status": "failed", "name": cell["name"], "error": str(err)}
                    log(f"[{cell['name']}] failed: its workers died {tries[cell['name']] + 1} times over")
                    continue
                tries[cell["name"]] += 1
                log(f"[{cell['name']}] its workers kept dying; submitted again (it resumes from its checkpoint)")
                again = submit(cell)
                futures[again] = cell
                pending.add(again)
            except Exception as err:  # one failing cell does not stop the others (a lost scheduler fails them all)
                reason = f"{type(err).__name__}: {' '.join(str(err).split())}"  # one line
                results[cell["name"]] = {"status": "failed", "name": cell["name"], "error": reason}
                log(f"[{cell['name']}] failed: {reason}")
    except KeyboardInterrupt:
        client.cancel(list(futures))  # tasks not started yet; a running cell keeps its checkpoint
        log("interrupted: the remaining cells were cancelled; run the same command again to resume them")
        return [results.get(c["name"], {"status": "interrupted", "name": c["name"]}) for c in cells]
    return [results[c["name"]] for c in cells]
