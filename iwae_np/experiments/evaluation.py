r"""Evaluation of a trained model (paper section 5): the test log-likelihood estimate and active units.

- :func:`iwae_log_likelihood`: :math:`\mathcal L_k` per example with ``k = 5000`` by default, the
  paper's estimate of :math:`\log p(x)`. The k samples are processed in chunks and combined with a
  streaming logsumexp (:func:`streaming_logsumexp_update`), so memory is bounded for any k and the
  result does not depend on the chunk size; each batch of examples draws its noise from its own
  generators (:func:`batch_noise`), so batches can be computed in other processes with the same result.
- :func:`active_units`: :math:`A_u = \operatorname{Cov}_x(\mathbb E_{q(u|x)}[u])` per stochastic
  unit; a unit is active when :math:`A_u > 0.01` (paper section 5.2).

- :func:`evaluate_run`: test NLL :math:`-\mathcal L_{5000}`, the NLL on a subset of the training set
  (the over-fitting gap) and active units of a trained run directory, as a JSON-ready dict.

Evaluation runs in float64 by default, also for models trained in float32 (their parameters are
cast up; the estimate is then not limited by float32 rounding of the log weights).
"""
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import binarize
from ..files import temporary_prefix, write_json
from ..engines import get_engine
from ..model import architecture_of, sample_posterior
from ..validation import validate_params, validate_x
from ..version import __version__
from ..tree import tree_map
from .checkpoints import load_run_checkpoint

__all__ = ["streaming_logsumexp_update", "iwae_log_likelihood", "batch_log_likelihood", "batch_noise",
           "sample_chunk_size", "active_units",
           "evaluate_run", "check_writable", "write_evaluation", "ACTIVE_UNIT_THRESHOLD", "MAX_CHUNK_ELEMENTS", "EVALUATION_NAME"]

#: Decimals kept of each image's :math:`\mathcal L_k` in an evaluation (1e-6 nats: far below any standard error).
PER_IMAGE_DECIMALS = 6

#: The file :func:`evaluate_run`'s result is written to in a run directory (by ``iwae-np evaluate`` and ``table``).
EVALUATION_NAME = "evaluation.json"

#: A unit is active when the variance over x of its posterior mean exceeds this (paper section 5.2).
ACTIVE_UNIT_THRESHOLD = 0.01

#: Bound on ``chunk * batch * widest layer``, the size of the largest temporary of a forward pass:
#: 2**23 numbers (64 MiB in float64). A pass holds a few such arrays (the decoder's activations,
#: its logits and the softplus temporaries), so the peak stays well under 1 GiB for any k.
MAX_CHUNK_ELEMENTS = 2 ** 23


def streaming_logsumexp_update(m, s, a):
    r"""Fold a chunk of terms into a running logsumexp, kept as a max and a rescaled sum.

    The state ``(m, s)`` represents :math:`\operatorname{logsumexp} = m + \log s` with
    :math:`s = \sum_i \exp(a_i - m)` over every term seen so far. For a new chunk ``a (c, batch)``::

        m' = max(m, max_i a_i)
        s' = s * exp(m - m') + sum_i exp(a_i - m')

    Every exponent is <= 0, so nothing overflows; the largest term contributes exactly 1, so
    ``s' >= 1`` once a finite term has been seen. A non-finite ``m'`` is replaced by 0 as the
    shift (as in :func:`iwae_np.special.logsumexp`): all ``-inf`` stays ``-inf``, never NaN.
    Start from ``m = -inf``, ``s = 0``. Returns the new ``(m, s)``, each ``(batch,)``.
    """
    m_new = np.maximum(m, np.max(a, axis=0))
    shift = np.where(np.isfinite(m_new), m_new, 0.0)
    with np.errstate(invalid="ignore"):
        carried = np.where(s > 0, s * np.exp(m - shift), 0.0)
    return m_new, carried + np.sum(np.exp(a - shift), axis=0)


def _streaming_result(m, s):
    shift = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return shift + np.log(s)


def sample_chunk_size(arch, k, batch, max_elements=MAX_CHUNK_ELEMENTS):
    """Samples per chunk so that ``chunk * batch * widest layer <= max_elements`` (at least 1, at most k)."""
    widest = max([arch.x_dim, *arch.latent_dims, *(w for ws in arch.q_hidden + arch.p_hidden for w in ws)])
    return int(max(1, min(k, max_elements // (batch * widest))))


def _as_dtype(params, dtype):
    if dtype is None:
        return params
    return tree_map(lambda p: np.asarray(p, dtype=dtype), params)


def batch_noise(seed, index, n_stochastic):
    """The noise generators of batch ``index``, one per stochastic layer, from the evaluation's ``seed``.

    ``SeedSequence(seed, spawn_key=(index, l))``: independent streams that depend on the batch's index
    alone, so a batch's noise is the same numbers whichever process evaluates it and in whatever order.
    """
    return [np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index), l)))
            for l in range(n_stochastic)]


def batch_log_likelihood(params, xb, seed, index, k, chunk_size=None, engine=None):
    r""":math:`\mathcal L_k` of one batch ``xb (batch, D)`` (already validated, in the computation's dtype), the
    k samples in chunks combined by :func:`streaming_logsumexp_update`, noise from :func:`batch_noise`. ``(batch,)`` float64.
    ``engine`` (a name, :mod:`iwae_np.engines`) computes the log weights."""
    arch = architecture_of(params)
    log_importance_weights = get_engine(engine).log_importance_weights
    work_dtype = xb.dtype
    b = xb.shape[0]
    chunk = int(chunk_size) if chunk_size is not None else sample_chunk_size(arch, k, b)
    streams = batch_noise(seed, index, arch.n_stochastic)
    m, s = np.full(b, -np.inf), np.zeros(b)
    for done in range(0, k, chunk):
        c = min(chunk, k - done)
        eps = [g.standard_normal((c, b, d)).astype(work_dtype, copy=False) for g, d in zip(streams, arch.latent_dims)]
        log_w = log_importance_weights(params, xb, eps, validate=False)  # (c, batch)
        m, s = streaming_logsumexp_update(m, s, np.asarray(log_w, dtype=np.float64))
    return _streaming_result(m, s) - math.log(k)


def _check_count(name, n, low=1):
    if not (isinstance(n, (int, float, np.integer, np.floating)) and not isinstance(n, bool)
            and math.isfinite(n) and int(n) == n and n >= low):
        raise ValueError(f"{name} must be an integer >= {low}, got {n!r}")
    return int(n)


def _checked(params, x, rng, dtype):
    """The checks of an entry point, done once: ``rng`` a Generator, ``params`` a finite tree of the model
    (cast to ``dtype``), ``x (N, D)`` binary. Returns ``(params, x, architecture)`` in the working dtype."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError("rng must be a numpy.random.Generator (randomness is explicit)")
    work_dtype = validate_params(params)
    if dtype is not None:
        params, work_dtype = _as_dtype(params, dtype), np.dtype(dtype)
    arch = architecture_of(params)
    return params, validate_x(x, arch.x_dim, work_dtype), arch


def iwae_log_likelihood(params, x, rng, k=5000, batch_size=100, chunk_size=None, dtype=np.float64,
                        progress=None, map_fn=None, engine=None):
    r"""Per-example :math:`\mathcal L_k = \log \frac1k \sum_{i=1}^k w_i` (paper eq. 8), the log-likelihood estimate.

    ``x (N, D)`` binary. The examples go ``batch_size`` at a time; for each batch the k samples go
    ``chunk_size`` at a time (default: :func:`sample_chunk_size`, which bounds memory), and the
    chunks are combined with :func:`streaming_logsumexp_update`. Returns ``(N,)`` float64.

    One number drawn from ``rng`` seeds the evaluation; batch ``j``'s noise comes from its own
    generators (:func:`batch_noise`), drawn in ``(chunk, batch, d_l)`` blocks, so it is the same numbers
    whatever the chunk size (the result depends on the chunk size only through the rounding of the
    sums, about 1e-15) and wherever the batch is computed. ``map_fn(fn, items)``, if given, computes
    the batches (a process pool's or a Dask client's map; default: one after the other here), and the
    per-image results are the same bit for bit as without it when its workers use the same number of
    BLAS threads (small matrix products round differently on different thread counts).
    ``dtype`` (float64 by default; ``None`` keeps the parameters' own) is the precision of the
    computation. ``progress`` is an optional callable, called with the number of examples done.
    ``engine``: ``"fast"`` (the default) or ``"definition"`` computes the log weights (:mod:`iwae_np.engines`).
    """
    engine = get_engine(engine).name
    k, batch_size = _check_count("the number of samples k", k), _check_count("batch_size", batch_size)
    if chunk_size is not None:
        chunk_size = _check_count("chunk_size", chunk_size)
    params, x, _ = _checked(params, x, rng, dtype)
    return _log_likelihood(params, x, rng, k, batch_size, chunk_size, progress, map_fn, engine)


def _log_likelihood(params, x, rng, k, batch_size, chunk_size, progress, map_fn, engine):
    """:func:`iwae_log_likelihood` of arguments already checked."""
    n = x.shape[0]
    seed = int(rng.integers(0, 2 ** 63))
    starts = range(0, n, batch_size)
    items = [(params, x[start:start + batch_size], seed, j, k, chunk_size, engine) for j, start in enumerate(starts)]
    out = np.empty(n, dtype=np.float64)
    if map_fn is not None:
        for start, values in zip(starts, map_fn(_batch_item, items)):
            out[start:start + len(values)] = values
        if progress is not None:
            progress(n)
        return out
    for start, item in zip(starts, items):
        out[start:start + batch_size] = batch_log_likelihood(*item)
        if progress is not None:
            progress(min(start + batch_size, n))
    return out


def _batch_item(item):
    return batch_log_likelihood(*item)


def active_units(params, x, rng, threshold=ACTIVE_UNIT_THRESHOLD, batch_size=1000, dtype=np.float64):
    r"""Activity of every stochastic unit: :math:`A_u = \operatorname{Cov}_x\big(\mathbb E_{q(u|\cdot)}[u]\big)` (paper section 5.2).

    Layer 1: the posterior mean :math:`\mu^1(x)` of :math:`q(h^1|x)`. Layer :math:`l > 1`: the mean
    of :math:`q(h^l | h^{l-1})` at one sample :math:`h^{l-1} \sim q(h^{l-1}|\cdots)` drawn with ``rng``
    (as the authors' code does; the paper's section 5.2 defines :math:`A_u` with the exact posterior mean).
    The covariance over the examples of ``x (N, D)`` is the sample variance with ``ddof = 1`` (as ``np.cov``).
    Returns a dict: ``"values"`` a list of ``(d_l,)`` arrays :math:`A_u` per layer, ``"counts"`` the number
    of units with :math:`A_u >` ``threshold`` per layer, ``"threshold"``.
    """
    params, x, arch = _checked(params, x, rng, dtype)
    return _active_units(params, x, rng, arch, threshold, _check_count("batch_size", batch_size))


def _active_units(params, x, rng, arch, threshold, batch_size):
    """:func:`active_units` of arguments already checked."""
    if x.shape[0] < 2:
        raise ValueError(f"active units need at least 2 examples, got {x.shape[0]}")
    means = [[] for _ in arch.latent_dims]
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        eps = [rng.standard_normal((1, xb.shape[0], d)).astype(x.dtype, copy=False) for d in arch.latent_dims]
        _, q_stats = sample_posterior(params, xb, eps)
        for l, (mu, _) in enumerate(q_stats):
            means[l].append(np.reshape(mu, (xb.shape[0], -1)))  # (batch, d_l)
    values = [np.var(np.concatenate(mu_l), axis=0, ddof=1) for mu_l in means]  # (d_l,)
    return {"values": values, "counts": [int(np.sum(v > threshold)) for v in values],
            "threshold": float(threshold)}


# ---------------------------------------------------------------------------------------------
# a trained run


def _binarized_train_subset(dataset, n, seed):
    x = np.asarray(dataset.train)[:n]
    if getattr(dataset, "fixed_binarization", False):
        return x
    return binarize(x, np.random.default_rng((seed, 3)))


def evaluate_run(run_dir, dataset, k=5000, train_subset=1000, seed=0, batch_size=100, chunk_size=None,
                 progress=False, map_fn=None, output=None, engine=None):
    r"""Evaluate the model in ``run_dir``: test and training-subset NLL and active units.

    NLL is :math:`-\frac1N \sum_n \mathcal L_k(x_n)` with ``k`` samples (5000, the paper's), on the
    fixed-seed binarized test set and on the first ``train_subset`` training images (binarized
    with a fixed seed); the difference is the over-fitting gap. Active units are counted on the
    test set. Computed in float64. Returns a JSON-ready dict with everything a table row needs,
    including ``test_L``, :math:`\mathcal L_k` of every test image (for paired comparisons: every model
    is evaluated on the same binarized test images).
    ``train_subset`` is an integer >= 0 (0: no training-set estimate); a larger one than the training
    set evaluates all of it. ``map_fn``: computes the batches of :math:`\mathcal L_k` elsewhere (see
    :func:`iwae_log_likelihood`). ``output``: the file the result will be written to
    (:func:`write_evaluation`); its directory is checked to be writable before anything is computed.
    ``engine`` computes the log weights (default ``"fast"``); the result names it (``eval_engine``) and the
    engine that trained the model (``engine``).
    """
    engine = get_engine(engine).name
    if isinstance(train_subset, bool) or not isinstance(train_subset, (int, np.integer)) or train_subset < 0:
        raise ValueError(f"train_subset must be an integer >= 0 (0: skip), got {train_subset!r}")
    k, batch_size = _check_count("the number of samples k", k), _check_count("batch_size", batch_size)
    if chunk_size is not None:
        chunk_size = _check_count("chunk_size", chunk_size)
    ck = load_run_checkpoint(run_dir)
    meta = ck["meta"]
    config = meta["config"]
    if output is not None:
        check_writable(output)
    t0 = time.monotonic()
    test_rng = np.random.default_rng((seed, 0))
    params, test, arch = _checked(ck["params"], np.asarray(dataset.binarized_test(seed=0)), test_rng, np.float64)
    bar = None
    if progress:
        n_total = test.shape[0] + (min(train_subset, len(dataset.train)) if train_subset else 0)
        bar = tqdm(total=n_total, desc=f"L_{k} evaluation", unit="image", mininterval=0.5, dynamic_ncols=True)

    def ticker(offset):
        if bar is None:
            return None
        return lambda done: bar.update(offset + done - bar.n)

    test_L = _log_likelihood(params, test, test_rng, k, batch_size, chunk_size, ticker(0), map_fn, engine)
    result = {"run_dir": str(run_dir), "data": getattr(dataset, "name", None), "objective": config["objective"],
              "k": config["k"], "layers": len(config["architecture"]["latent_dims"]),
              "architecture": config["architecture"], "dtype": config["dtype"], "seed": config["seed"],
              "engine": config.get("engine", "fast"), "eval_engine": engine,
              "status": meta["status"], "total_passes": sum(s["passes"] for s in config["schedule"]),
              "passes_done": meta["history"][-1]["passes_done"] if meta["history"] else 0,
              "global_step": meta["position"]["global_step"], "train_wall_time": meta["elapsed"],
              "schedule": config["schedule"], "eval_k": int(k), "eval_seed": int(seed),
              "eval_train_subset": int(train_subset),
              "n_test": int(test.shape[0]), "test_nll": float(-np.mean(test_L)),
              "test_nll_se": float(np.std(test_L, ddof=1) / math.sqrt(len(test_L))) if len(test_L) > 1 else None,
              # per test image, for paired comparisons between models (same images, same binarization)
              "test_L": [round(float(v), PER_IMAGE_DECIMALS) for v in test_L]}
    if train_subset:
        xtr = validate_x(_binarized_train_subset(dataset, train_subset, seed), arch.x_dim, np.float64)
        train_L = _log_likelihood(params, xtr, np.random.default_rng((seed, 1)), k, batch_size, chunk_size,
                                  ticker(test.shape[0]), map_fn, engine)
        result.update(n_train_eval=int(xtr.shape[0]), train_nll=float(-np.mean(train_L)),
                      overfitting_gap=float(-np.mean(test_L) + np.mean(train_L)))
    if bar is not None:
        bar.close()
    au = _active_units(params, test, np.random.default_rng((seed, 2)), arch, ACTIVE_UNIT_THRESHOLD, 1000)
    result.update(active_units=au["counts"], active_units_total=int(sum(au["counts"])),
                  active_unit_threshold=ACTIVE_UNIT_THRESHOLD,
                  active_unit_values=[v.tolist() for v in au["values"]],
                  eval_wall_time=time.monotonic() - t0, iwae_np_version=__version__,
                  history=meta["history"])
    return result


def check_writable(path):
    """Before a long computation: a file can be created in the directory of ``path`` (OSError naming ``path``
    otherwise). Creates and removes a temporary there (:func:`iwae_np.files.temporary_name`)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror or err}; nothing was computed") from err


def write_evaluation(path, result):
    """Write an evaluation to ``path``; when that fails, keep it: it is written to a file in the temporary
    directory instead (or, failing that too, printed on stdout), and the OSError raised names ``path`` and where
    the result is."""
    try:
        return write_json(path, result)
    except OSError as err:
        reason = err.strerror or str(err)
    text = json.dumps(result, indent=1) + "\n"
    try:
        fd, kept = tempfile.mkstemp(prefix="iwae-np-evaluation-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        where = f"the evaluation is kept in {kept} (move it to {path})"
    except OSError:
        sys.stdout.write(text)
        sys.stdout.flush()
        where = "the evaluation was printed on standard output"
    raise OSError(f"could not write {path} ({reason}); {where}")
