r"""The paper's experiments end to end: data subsets, evaluating a trained run, and the Table 1 grid.

- :func:`load_data`: a named data set (:mod:`iwae_np.data`), optionally cut to its first examples.
- :func:`evaluate_run`: test NLL :math:`-\mathcal L_{5000}`, the NLL on a subset of the training set
  (the over-fitting gap) and active units of a trained run, as a JSON-ready dict.
- :func:`table_cells`, :func:`run_table`: the Table 1 grid (VAE and IWAE x k x 1 and 2 stochastic
  layers), cells in parallel processes, finished cells skipped; :func:`markdown_table` prints it
  beside the paper's numbers (:data:`PAPER_TABLE1`).
"""
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .evaluation import ACTIVE_UNIT_THRESHOLD, active_units, iwae_log_likelihood
from .model import PRESETS, Architecture
from .training import CHECKPOINT_NAME, NonFiniteLossError, TrainConfig, _write_text, load_checkpoint, train

__all__ = ["load_data", "DataSubset", "evaluate_run", "EVALUATION_NAME", "PAPER_TABLE1", "PAPER_TABLE3",
           "table_cells", "run_cell", "run_table", "markdown_table", "cell_name"]

EVALUATION_NAME = "evaluation.json"

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


class DataSubset:
    """A data set cut to its first ``n_train`` training and ``n_test`` test examples (None: all)."""

    def __init__(self, dataset, n_train=None, n_test=None):
        self.base, self.n_train, self.n_test = dataset, n_train, n_test
        self.name = dataset.name
        self.fixed_binarization = bool(getattr(dataset, "fixed_binarization", False))
        self.train = np.asarray(dataset.train)[:n_train]
        self.test = np.asarray(dataset.test)[:n_test]
        self.train_mean = self.train.mean(axis=0) if n_train is not None else np.asarray(dataset.train_mean)

    def binarized_test(self, seed=0):
        return np.asarray(self.base.binarized_test(seed=seed))[:self.n_test]


def load_data(name, root=None, download=False, cache_dir=None, train_subset=None, test_subset=None):
    """:func:`iwae_np.data.load_dataset`, cut to the first ``train_subset`` / ``test_subset`` examples."""
    from .data import load_dataset
    for what, n in (("train_subset", train_subset), ("test_subset", test_subset)):
        if n is not None and (int(n) != n or n < 2):
            raise ValueError(f"{what} must be an integer >= 2, got {n}")
    try:
        ds = load_dataset(name, root=root, download=download, cache_dir=cache_dir)
    except (FileNotFoundError, ImportError) as err:  # a missing file or package: a message, not a traceback
        raise ValueError(str(err)) from err
    if train_subset is None and test_subset is None:
        return ds
    return DataSubset(ds, train_subset, test_subset)


def data_spec(args_like):
    """The ``data`` entry of a :class:`TrainConfig` (what ``--resume`` needs to reload the data)."""
    return {"name": args_like["name"], "root": args_like.get("root"), "train_subset": args_like.get("train_subset"),
            "test_subset": args_like.get("test_subset"), "cache_dir": args_like.get("cache_dir")}


def dataset_from_spec(spec, download=False):
    """The data set a :func:`data_spec` describes (downloading missing files if ``download``)."""
    return load_data(spec["name"], spec.get("root"), download=download, cache_dir=spec.get("cache_dir"),
                     train_subset=spec.get("train_subset"), test_subset=spec.get("test_subset"))


def _binarized_train_subset(dataset, n, seed):
    x = np.asarray(dataset.train)[:n]
    if getattr(dataset, "fixed_binarization", False):
        return x
    from .data import binarize
    return binarize(x, np.random.default_rng((seed, 3)))


def evaluate_run(run_dir, dataset, k=5000, train_subset=1000, seed=0, batch_size=100, chunk_size=None,
                 progress=False):
    r"""Evaluate the model in ``run_dir``: test and training-subset NLL and active units.

    NLL is :math:`-\frac1N \sum_n \mathcal L_k(x_n)` with ``k`` samples (5000, the paper's), on the
    fixed-seed binarized test set and on the first ``train_subset`` training images (binarized
    with a fixed seed); the difference is the over-fitting gap. Active units are counted on the
    test set. Computed in float64. Returns a JSON-ready dict with everything a table row needs.
    """
    from . import __version__
    ck = load_checkpoint(run_dir)
    meta, params = ck["meta"], ck["params"]
    config = meta["config"]
    t0 = time.monotonic()
    test = np.asarray(dataset.binarized_test(seed=0))
    bar = None
    if progress:
        from tqdm.auto import tqdm
        n_total = test.shape[0] + (min(train_subset, len(dataset.train)) if train_subset else 0)
        bar = tqdm(total=n_total, desc=f"L_{k} evaluation", unit="image", mininterval=0.5, dynamic_ncols=True)

    def ticker(offset):
        if bar is None:
            return None
        return lambda done: bar.update(offset + done - bar.n)

    test_L = iwae_log_likelihood(params, test, np.random.default_rng((seed, 0)), k=k, batch_size=batch_size,
                                 chunk_size=chunk_size, progress=ticker(0))
    result = {"run_dir": str(run_dir), "data": getattr(dataset, "name", None), "objective": config["objective"],
              "k": config["k"], "layers": len(config["architecture"]["latent_dims"]),
              "architecture": config["architecture"], "dtype": config["dtype"], "seed": config["seed"],
              "status": meta["status"], "total_passes": sum(s["passes"] for s in config["schedule"]),
              "passes_done": meta["history"][-1]["passes_done"] if meta["history"] else 0,
              "global_step": meta["position"]["global_step"], "train_wall_time": meta["elapsed"],
              "schedule": config["schedule"], "eval_k": int(k), "eval_seed": int(seed),
              "n_test": int(test.shape[0]), "test_nll": float(-np.mean(test_L)),
              "test_nll_se": float(np.std(test_L, ddof=1) / math.sqrt(len(test_L))) if len(test_L) > 1 else None}
    if train_subset:
        xtr = _binarized_train_subset(dataset, train_subset, seed)
        train_L = iwae_log_likelihood(params, xtr, np.random.default_rng((seed, 1)), k=k, batch_size=batch_size,
                                      chunk_size=chunk_size, progress=ticker(test.shape[0]))
        result.update(n_train_eval=int(xtr.shape[0]), train_nll=float(-np.mean(train_L)),
                      overfitting_gap=float(-np.mean(test_L) + np.mean(train_L)))
    if bar is not None:
        bar.close()
    au = active_units(params, test, np.random.default_rng((seed, 2)))
    result.update(active_units=au["counts"], active_units_total=int(sum(au["counts"])),
                  active_unit_threshold=ACTIVE_UNIT_THRESHOLD,
                  active_unit_values=[v.tolist() for v in au["values"]],
                  eval_wall_time=time.monotonic() - t0, iwae_np_version=__version__,
                  history=meta["history"])
    return result


def write_json(path, obj):
    _write_text(Path(path), json.dumps(obj, indent=1) + "\n")


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


def run_cell(cell, base, out_dir, eval_opts, progress=False, log=print):
    """Train (or resume) and evaluate one cell; skip it when its evaluation is already on disk.

    ``base``: keyword arguments of :class:`TrainConfig` shared by every cell (architecture is
    chosen by the cell's layer count unless ``base["architectures"]`` maps it). Returns the
    evaluation dict, or ``{"status": "interrupted", ...}``.
    """
    run_dir = Path(out_dir) / cell["name"]
    eval_path = run_dir / EVALUATION_NAME
    if eval_path.is_file():
        done = json.loads(eval_path.read_text())
        if done.get("eval_k") == eval_opts["k"] and done.get("status") == "finished":
            log(f"[{cell['name']}] already done: test NLL {done['test_nll']:.2f}")
            return done
    base = dict(base)
    archs = base.pop("architectures", None) or {}
    arch = archs.get(cell["layers"]) or PRESETS["one-layer" if cell["layers"] == 1 else "two-layer"]
    config = TrainConfig(architecture=arch, objective=cell["objective"], k=cell["k"], **base)
    dataset = dataset_from_spec(config.data)
    resume = (run_dir / CHECKPOINT_NAME).is_file()
    t0 = time.monotonic()
    log(f"[{cell['name']}] {'resuming' if resume else 'training'}: {config.total_passes} passes")

    def stage_log(info):
        record = info["stage_record"]
        if record is not None:
            bounds = (f"test L_{record['monitor_k']} {record['test_bound']:.2f}, train {record['train_bound']:.2f}"
                      if "test_bound" in record else f"training objective {record['train_objective']:.2f}")
            log(f"[{cell['name']}] stage {record['stage']} done ({record['passes_done']} passes, "
                f"{time.monotonic() - t0:.0f} s): {bounds}")

    try:
        out = train(dataset, config, run_dir, resume=resume, progress=progress, callback=stage_log)
    except NonFiniteLossError as err:  # one diverged cell does not stop the others
        log(f"[{cell['name']}] failed: {err}")
        return {"status": "failed", "name": cell["name"], "error": str(err)}
    if out["status"] != "finished":
        log(f"[{cell['name']}] interrupted; its checkpoint is saved")
        return {"status": "interrupted", "name": cell["name"]}
    log(f"[{cell['name']}] trained in {time.monotonic() - t0:.0f} s; evaluating L_{eval_opts['k']}")
    result = evaluate_run(run_dir, dataset, progress=progress, **eval_opts)
    result["cell"] = cell["name"]
    write_json(eval_path, result)
    log(f"[{cell['name']}] test NLL {result['test_nll']:.2f}, active units {result['active_units']}")
    return result


def _worker(payload):
    cell, base, out_dir, eval_opts, threads = payload
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables set by run_table already hold BLAS to one thread
        import contextlib
        threadpool_limits = lambda limits: contextlib.nullcontext()
    with threadpool_limits(limits=threads):
        try:
            return run_cell(cell, base, out_dir, eval_opts, progress=False, log=lambda s: print(s, file=sys.stderr, flush=True))
        except KeyboardInterrupt:
            return {"status": "interrupted", "name": cell["name"]}


def run_table(cells, base, out_dir, eval_opts, jobs=None, progress=True, log=print):
    """Run every cell (in ``jobs`` parallel processes, BLAS at one thread each) and return their results."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(cells)))
    if jobs == 1:
        results = []
        for i, c in enumerate(cells):
            results.append(run_cell(c, base, out_dir, eval_opts, progress=progress, log=log))
            if results[-1]["status"] == "interrupted":  # Ctrl-C stops the grid, not just this cell
                return results + [{"status": "not run", "name": rest["name"]} for rest in cells[i + 1:]]
        return results
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
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
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


def _paper_key(data_name):
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
    paper_data = _paper_key(data_name)
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
