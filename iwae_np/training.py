r"""Training: the paper's protocol (SPEC section 6), checkpoints, exact resume and a metrics log.

- :func:`train_step`: one step of stochastic gradient ascent on a bound, with Adam.
- :func:`paper_schedule`: stages :math:`i = 0..7` of :math:`3^i` passes at learning rate
  :math:`10^{-3} \cdot 10^{-i/7}` (3,280 passes in all), or a shortened version of it.
- :class:`TrainConfig` and :func:`train`: the training loop. Minibatches of 20 drawn without
  replacement (a fresh permutation each pass), each image binarized afresh when it is used
  (dynamic binarization), Adam (0.9, 0.999, 1e-4), Glorot init, output bias from the training
  mean. All randomness (init, data order, binarization, noise) comes from one generator whose
  state is stored in every checkpoint, so a resumed run ends with bit-identical parameters.
- :func:`save_checkpoint`, :func:`load_checkpoint`: ``.npz`` files (no pickles) holding the
  parameters, the Adam state, the generator state and the position in the schedule, written
  atomically (temporary file, then ``os.replace``).

Objectives are looked up by name with :func:`get_objective`: the paper's two in :data:`OBJECTIVES`
(functions ``(params, x, eps) -> (batch-mean bound, its gradient tree)``), the ones beyond the
paper built from canonical names such as ``"miwae:M=5+dreg"`` (:mod:`iwae_np.estimators`).
"""
import dataclasses
import hashlib
import functools
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from .estimators import make_objective, parse_objective_name
from .gradients import iwae_value_and_gradient, vae_value_and_gradient
from .model import Architecture, architecture_of, init_params, sample_eps, validate_params
from .optimizers import PAPER_ADAM, adam_init, adam_update
from .tree import check_same_structure, flatten_tree, tree_map, unflatten_tree

__all__ = ["OBJECTIVES", "get_objective", "train_step", "paper_schedule", "TrainConfig", "train", "NonFiniteLossError",
           "save_checkpoint", "load_checkpoint", "load_params", "CHECKPOINT_NAME", "METRICS_NAME"]

#: Objective name -> function of (params, x, eps) returning (batch-mean bound, its gradient).
OBJECTIVES = {"vae": vae_value_and_gradient, "iwae": iwae_value_and_gradient}



def get_objective(name, k=None):
    """The ``(params, x, eps) -> (bound, ascent gradient)`` function called ``name``.

    ``name`` is a key of :data:`OBJECTIVES` or a canonical name of an objective beyond the paper
    with its estimator, ``objective[:M=..|beta=..|alpha=..][+estimator]`` such as
    ``"miwae:M=5+dreg"`` (see :func:`iwae_np.estimators.objective_name`); those are built on demand,
    so a name stored in a checkpoint trains again in a fresh process. ``k`` checks that M divides it.
    """
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    return _objective_from_name(name, k)


@functools.lru_cache(maxsize=None)
def _objective_from_name(name, k):
    try:
        settings = parse_objective_name(name)
    except ValueError as err:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)} "
                         f"or a name like 'miwae:M=5+dreg' ({err})") from None
    return make_objective(k=k, **settings)


CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"
_FORMAT = "iwae-np-checkpoint"


def train_step(params, opt_state, x, rng, k, lr, objective="iwae", adam=None):
    """Sample ``eps`` from ``rng``, take the gradient of the bound and one Adam step on its negative.

    Returns ``(params, opt_state, bound)`` where ``bound`` is the batch-mean value of the bound
    before the step (a Python float).
    """
    value_and_gradient = get_objective(objective, k)
    eps = sample_eps(rng, params, k, np.shape(x)[0])
    bound, grads = value_and_gradient(params, x, eps)
    loss_grads = tree_map(lambda g: -g, grads)
    params, opt_state = adam_update(params, loss_grads, opt_state, lr, **(adam or {}))
    return params, opt_state, float(bound)


# ---------------------------------------------------------------------------------------------
# the schedule


def paper_schedule(stages=8, pass_scale=1.0, start_stage=0, lr0=1e-3):
    r"""The paper's learning-rate schedule (section 5), optionally shortened.

    Stage :math:`i` runs :math:`\max(1, \operatorname{round}(3^i \cdot \text{pass\_scale}))` passes
    over the training set at learning rate :math:`\text{lr0} \cdot 10^{-i/7}`, for
    ``i = start_stage .. stages - 1``. The defaults are the paper's: 8 stages, 3,280 passes.
    ``start_stage = 7, stages = 8`` is the 3^7 passes at 1e-4 of the paper's Table 2.
    Returns a list of ``{"stage": i, "passes": n, "lr": lr}``.
    """
    if int(stages) != stages or stages < 1:
        raise ValueError(f"the number of stages must be an integer >= 1, got {stages}")
    if int(start_stage) != start_stage or not 0 <= start_stage < stages:
        raise ValueError(f"start_stage must be an integer in [0, {stages - 1}], got {start_stage}")
    if not pass_scale > 0:
        raise ValueError(f"pass_scale must be > 0, got {pass_scale}")
    if not lr0 > 0:
        raise ValueError(f"the learning rate must be > 0, got {lr0}")
    return [{"stage": i, "passes": max(1, round(3 ** i * pass_scale)), "lr": lr0 * 10 ** (-i / 7)}
            for i in range(int(start_stage), int(stages))]


def _check_schedule(schedule):
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ValueError("the schedule must be a non-empty list of {'stage', 'passes', 'lr'}")
    out = []
    for i, st in enumerate(schedule):
        passes, lr = st.get("passes"), st.get("lr")
        if not isinstance(passes, (int, np.integer)) or passes < 1:
            raise ValueError(f"schedule stage {i}: passes must be an integer >= 1, got {passes!r}")
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"schedule stage {i}: lr must be a finite number > 0, got {lr!r}")
        out.append({"stage": int(st.get("stage", i)), "passes": int(passes), "lr": float(lr)})
    return out


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a training run (stored in ``config.json`` and every checkpoint).

    ``architecture``: an :class:`~iwae_np.model.Architecture` (or its ``to_dict``). ``objective``:
    a key of :data:`OBJECTIVES`. ``schedule``: as returned by :func:`paper_schedule`. ``adam``:
    Adam's ``b1, b2, eps``. ``dtype``: of the parameters during training. ``monitor_k`` and
    ``monitor_size``: the bound :math:`\\mathcal L_k` reported in the metrics after every stage, on
    that many test and training examples (0 turns it off). ``data``: a description of the data
    set (name, directory, subset), for the record and for ``--resume``. ``init_from``: the
    checkpoint the parameters were loaded from, if any.
    """
    architecture: Architecture = dataclasses.field(default_factory=lambda: Architecture())
    objective: str = "iwae"
    k: int = 50
    batch_size: int = 20
    schedule: list = dataclasses.field(default_factory=paper_schedule)
    adam: dict = dataclasses.field(default_factory=lambda: dict(PAPER_ADAM))
    dtype: str = "float32"
    seed: int = 0
    monitor_k: int = 50
    monitor_size: int = 1000
    data: dict = dataclasses.field(default_factory=dict)
    init_from: str = None

    def __post_init__(self):
        if isinstance(self.architecture, dict):
            self.architecture = Architecture.from_dict(self.architecture)
        if not isinstance(self.architecture, Architecture):
            raise ValueError(f"architecture must be an Architecture, got {type(self.architecture).__name__}")
        get_objective(self.objective, int(self.k))  # raises ValueError naming an unknown objective
        for name in ("k", "batch_size"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v}")
        if int(self.monitor_k) != self.monitor_k or self.monitor_k < 1:
            raise ValueError(f"monitor_k must be an integer >= 1, got {self.monitor_k}")
        if int(self.monitor_size) != self.monitor_size or self.monitor_size < 0:
            raise ValueError(f"monitor_size must be an integer >= 0, got {self.monitor_size}")
        if str(self.dtype) not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if set(self.adam) != {"b1", "b2", "eps"}:
            raise ValueError(f"adam must have exactly the keys b1, b2, eps, got {sorted(self.adam)}")
        if not (0 <= self.adam["b1"] < 1 and 0 <= self.adam["b2"] < 1 and self.adam["eps"] > 0):
            raise ValueError(f"Adam needs 0 <= b1, b2 < 1 and eps > 0, got {self.adam}")
        self.k, self.batch_size, self.seed = int(self.k), int(self.batch_size), int(self.seed)
        self.monitor_k, self.monitor_size, self.dtype = int(self.monitor_k), int(self.monitor_size), str(self.dtype)
        self.adam = {key: float(v) for key, v in self.adam.items()}
        self.schedule = _check_schedule(self.schedule)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["architecture"] = self.architecture.to_dict()
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    @property
    def total_passes(self):
        return sum(st["passes"] for st in self.schedule)


class NonFiniteLossError(ValueError):
    """The bound (or its gradient) became NaN or infinite: training stops, the last good checkpoint stays."""


# ---------------------------------------------------------------------------------------------
# checkpoints: one .npz (no pickles) with the arrays and a JSON string of metadata


def _atomic_write(path, write):
    """Write ``path`` through a temporary file in the same directory and ``os.replace`` (atomic)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_text(path, text):
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(path, params, opt_state, rng, meta, perm=None):
    """Write a checkpoint atomically: arrays ``params/<name>``, ``adam_m/<name>``, ``adam_v/<name>``,
    ``perm`` (the data order of the current pass) and ``meta``, a JSON string holding ``meta`` plus the
    Adam step count and the generator state (``rng.bit_generator.state``)."""
    arrays = {}
    for prefix, tree in (("params", params), ("adam_m", opt_state["m"]), ("adam_v", opt_state["v"])):
        arrays.update({f"{prefix}/{name}": np.asarray(v) for name, v in flatten_tree(tree).items()})
    arrays["perm"] = np.asarray(perm if perm is not None else np.zeros(0), dtype=np.int64)
    from . import __version__
    meta = dict(meta, format=_FORMAT, iwae_np_version=__version__, adam_t=int(opt_state["t"]),
                rng_state=rng.bit_generator.state, has_perm=perm is not None)
    arrays["meta"] = np.array(json.dumps(meta))
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def load_checkpoint(path):
    """Read a checkpoint (a file, or a run directory holding ``checkpoint.npz``).

    Returns a dict with ``params``, ``opt_state``, ``rng`` (a Generator in the saved state),
    ``perm`` (or None) and ``meta``. A missing or damaged file gives a ``ValueError`` naming it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise ValueError(f"checkpoint {path} is unreadable or damaged: {err}") from err
    except Exception as err:  # zipfile.BadZipFile and friends from a truncated file
        raise ValueError(f"checkpoint {path} is unreadable or damaged: {type(err).__name__}: {err}") from err
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an iwae-np checkpoint")

    def tree(prefix):
        return unflatten_tree({name[len(prefix) + 1:]: v for name, v in arrays.items()
                               if name.startswith(prefix + "/")})

    params = tree("params")
    validate_params(params, check_values=False)
    opt_state = {"m": tree("adam_m"), "v": tree("adam_v"), "t": int(meta["adam_t"])}
    check_same_structure(opt_state["m"], params, what=f"Adam state in {path}")
    state = meta["rng_state"]
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    perm = arrays["perm"] if meta.get("has_perm") else None
    return {"params": params, "opt_state": opt_state, "rng": np.random.Generator(bit_generator),
            "perm": perm, "meta": meta, "path": str(path)}


def load_params(path, dtype=None):
    """The parameters of a checkpoint (file or run directory), cast to ``dtype`` if given."""
    params = load_checkpoint(path)["params"]
    return params if dtype is None else tree_map(lambda p: p.astype(dtype), params)


# ---------------------------------------------------------------------------------------------
# the training loop


def _fingerprint(dataset):
    train = np.asarray(dataset.train)
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(dataset.train_mean, dtype=np.float64)).tobytes())
    return {"n_train": int(train.shape[0]), "n_test": int(np.shape(dataset.test)[0]),
            "train_mean_sha256": digest.hexdigest()[:16]}


def _binarized(dataset, x_gray, rng):
    if getattr(dataset, "fixed_binarization", False):
        return np.asarray(x_gray, dtype=np.float64)
    from .data import binarize  # dynamic binarization: a fresh Bernoulli draw each use
    return binarize(x_gray, rng)


def _monitor_sets(dataset, config):
    """The fixed examples the per-stage bounds are computed on: test (fixed-seed binarized) and train."""
    n = config.monitor_size
    if n == 0:
        return None
    test = np.asarray(dataset.binarized_test(seed=0))[:n]
    train = _binarized(dataset, np.asarray(dataset.train)[:n], np.random.default_rng((config.seed, 1)))
    return {"test": test, "train": train}


def _monitor(params, monitor, config, stage_index):
    from .evaluation import iwae_log_likelihood
    rng = np.random.default_rng((config.seed, 2, stage_index))  # not the training generator
    return {f"{part}_bound": float(np.mean(iwae_log_likelihood(params, x, rng, k=config.monitor_k)))
            for part, x in monitor.items()}


def _write_metrics(run_dir, history):
    _write_text(Path(run_dir) / METRICS_NAME, "".join(json.dumps(r) + "\n" for r in history))


def train(dataset, config, run_dir, resume=False, params=None, progress=True, checkpoint_every=300.0,
          callback=None):
    """Train a model on ``dataset`` with ``config``, checkpointing into ``run_dir``.

    ``dataset`` has ``train (N, D)`` gray in [0, 1] (or binary with ``fixed_binarization``),
    ``test``, ``train_mean (D,)`` and ``binarized_test(seed)`` (see :mod:`iwae_np.data`).
    ``params``: start from these parameters (``--init-from``) instead of a fresh Glorot init;
    the Adam state and the schedule start afresh. ``resume``: continue the run in ``run_dir``
    from its checkpoint; the final parameters are then bit-identical to an uninterrupted run.

    A checkpoint is written after every stage and whenever ``checkpoint_every`` seconds have
    passed since the last one (0: after every step). After every stage a record (stage, lr,
    passes, mean training bound over the stage, :math:`\\mathcal L_{monitor\\_k}` on test and training
    examples, wall time) is appended to ``metrics.jsonl``. ``callback(info)``, if given, is called
    after every step with a dict (``global_step``, ``stage``, ``bound``, ``position``,
    ``checkpoint_step``, and ``stage_record``: the metric record when the step ended a stage, else None).

    Ctrl-C (``KeyboardInterrupt``) writes a checkpoint of the last completed step and returns
    with status ``"interrupted"``. A non-finite bound or gradient raises
    :class:`NonFiniteLossError` naming the step; the last good checkpoint is left as it is.
    Returns a dict: ``params``, ``status`` (``"finished"`` or ``"interrupted"``), ``history``
    (the metric records), ``checkpoint`` (its path), ``global_step``.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / CHECKPOINT_NAME
    train_x = np.asarray(dataset.train)
    if train_x.ndim != 2 or train_x.shape[1] != config.architecture.x_dim:
        raise ValueError(f"the training data have shape {train_x.shape}; the architecture needs "
                         f"(N, {config.architecture.x_dim})")
    fingerprint = _fingerprint(dataset)
    dtype = np.dtype(config.dtype)

    if resume:
        ck = load_checkpoint(ckpt_path)
        meta = ck["meta"]
        saved = TrainConfig.from_dict(meta["config"]).to_dict()
        if saved != config.to_dict():
            diff = sorted(key for key in saved if saved[key] != config.to_dict()[key])
            raise ValueError(f"the checkpoint {ckpt_path} was made with another configuration "
                             f"(differs in {diff}); resume with the run's own config.json")
        if meta["data_fingerprint"] != fingerprint:
            raise ValueError(f"the checkpoint {ckpt_path} was trained on other data "
                             f"({meta['data_fingerprint']}, now {fingerprint})")
        params, opt_state, rng, perm = ck["params"], ck["opt_state"], ck["rng"], ck["perm"]
        pos, history, elapsed = dict(meta["position"]), list(meta["history"]), float(meta["elapsed"])
        if meta["status"] == "finished":
            return {"params": params, "status": "finished", "history": history,
                    "checkpoint": str(ckpt_path), "global_step": pos["global_step"]}
    else:
        if ckpt_path.exists():
            raise ValueError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}); continue it with "
                             "--resume or choose another output directory")
        rng = np.random.Generator(np.random.PCG64(config.seed))
        if params is None:
            params = init_params(config.architecture, rng, dtype, x_mean=dataset.train_mean)
        else:
            if architecture_of(params) != config.architecture:
                raise ValueError(f"the initial parameters have architecture {architecture_of(params)}, "
                                 f"the configuration says {config.architecture}")
            params = tree_map(lambda p: np.asarray(p, dtype=dtype), params)
            validate_params(params)
        opt_state = adam_init(params)
        perm, history, elapsed = None, [], 0.0
        pos = {"stage": 0, "pass": 0, "step": 0, "global_step": 0, "stage_bound_sum": 0.0, "stage_steps": 0}
        _write_text(run_dir / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")

    n_train, batch = train_x.shape[0], config.batch_size
    steps_per_pass = math.ceil(n_train / batch)
    schedule = config.schedule
    monitor = _monitor_sets(dataset, config)
    t0 = time.monotonic()
    last_save = [t0, pos["global_step"] if resume else None]

    def capture(status="running"):
        return {"params": params, "opt_state": opt_state, "rng_state": rng.bit_generator.state,
                "pos": dict(pos), "perm": perm, "history": list(history),
                "elapsed": elapsed + time.monotonic() - t0, "status": status}

    def save(snap):
        bit_generator = type(rng.bit_generator)()
        bit_generator.state = snap["rng_state"]
        meta = {"config": config.to_dict(), "architecture": config.architecture.to_dict(),
                "objective": config.objective, "k": config.k, "dtype": config.dtype,
                "position": snap["pos"], "history": snap["history"], "elapsed": snap["elapsed"],
                "status": snap["status"], "data_fingerprint": fingerprint,
                "steps_per_pass": steps_per_pass, "total_passes": config.total_passes}
        save_checkpoint(ckpt_path, snap["params"], snap["opt_state"], np.random.Generator(bit_generator),
                        meta, snap["perm"])
        last_save[:] = [time.monotonic(), snap["pos"]["global_step"]]

    bar, snap = None, capture()  # snap: the state after the last completed step, what Ctrl-C saves
    try:
        while pos["stage"] < len(schedule):
            stage = schedule[pos["stage"]]
            if bar is None:
                bar = tqdm(total=stage["passes"] * steps_per_pass,
                           initial=pos["pass"] * steps_per_pass + pos["step"], disable=not progress,
                           desc=f"stage {stage['stage']} ({stage['passes']} passes, lr {stage['lr']:.2e})",
                           unit="step", mininterval=0.5, dynamic_ncols=True, leave=True)
            if pos["step"] == 0:
                perm = rng.permutation(n_train)  # a fresh data order each pass
            idx = perm[pos["step"] * batch:(pos["step"] + 1) * batch]
            x = _binarized(dataset, train_x[idx], rng).astype(dtype)  # (batch, D)
            step_id = (f"stage {stage['stage']}, pass {pos['pass'] + 1}, step {pos['step'] + 1} "
                       f"(global step {pos['global_step'] + 1})")
            try:
                new_params, new_opt_state, bound = train_step(params, opt_state, x, rng, config.k, stage["lr"],
                                                              config.objective, config.adam)
            except ValueError as err:
                if "not finite" not in str(err):
                    raise
                raise NonFiniteLossError(_nonfinite_message(step_id, str(err), ckpt_path, last_save[1])) from err
            if not math.isfinite(bound):
                raise NonFiniteLossError(_nonfinite_message(step_id, f"the bound is {bound}", ckpt_path,
                                                            last_save[1]))
            params, opt_state = new_params, new_opt_state
            pos["step"] += 1
            pos["global_step"] += 1
            pos["stage_bound_sum"] += bound
            pos["stage_steps"] += 1
            bar.update(1)
            if pos["global_step"] % 20 == 0:
                bar.set_postfix_str(f"bound {pos['stage_bound_sum'] / pos['stage_steps']:.2f}", refresh=False)
            if pos["step"] == steps_per_pass:
                pos["step"], pos["pass"] = 0, pos["pass"] + 1
            record = None
            if pos["pass"] == stage["passes"]:  # end of the stage: monitor, log, checkpoint
                record = {"stage": stage["stage"], "lr": stage["lr"], "passes": stage["passes"],
                          "passes_done": sum(s["passes"] for s in schedule[:pos["stage"] + 1]),
                          "global_step": pos["global_step"],
                          "train_objective": pos["stage_bound_sum"] / pos["stage_steps"],
                          "objective": config.objective, "k": config.k}
                if monitor is not None:
                    record["monitor_k"] = config.monitor_k
                    record.update(_monitor(params, monitor, config, stage["stage"]))
                record["wall_time"] = elapsed + time.monotonic() - t0
                history.append(record)
                pos.update(stage=pos["stage"] + 1, **{"pass": 0}, stage_bound_sum=0.0, stage_steps=0)
                bar.close()
                bar = None
                snap = capture("finished" if pos["stage"] == len(schedule) else "running")
                save(snap)
                _write_metrics(run_dir, history)
            else:
                snap = capture()
                if time.monotonic() - last_save[0] >= checkpoint_every:
                    save(snap)
            if callback is not None:
                callback({"global_step": pos["global_step"], "stage": stage["stage"], "bound": bound,
                          "position": dict(pos), "checkpoint_step": last_save[1], "stage_record": record})
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        last = dict(snap, status="interrupted")  # the state after the last completed step
        save(last)
        return {"params": last["params"], "status": "interrupted", "history": last["history"],
                "checkpoint": str(ckpt_path), "global_step": last["pos"]["global_step"]}
    finally:
        if bar is not None:
            bar.close()
    return {"params": params, "status": "finished", "history": history, "checkpoint": str(ckpt_path),
            "global_step": pos["global_step"]}


def _nonfinite_message(step_id, what, ckpt_path, saved_step):
    kept = (f"the last good checkpoint {ckpt_path} (after global step {saved_step}) is kept"
            if saved_step is not None else "no checkpoint had been written yet")
    return (f"training stopped at {step_id}: {what}. The parameters were not updated; {kept}. "
            "Try a smaller learning rate or float64 (--dtype float64).")
