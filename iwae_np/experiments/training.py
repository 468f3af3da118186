r"""Training with the paper's protocol (section 5): one step, the step loop, stages, checkpoints, exact resume.

- :func:`train_step`: one step of stochastic gradient ascent on a bound, with Adam.
- :class:`TrainConfig`: everything that determines a run (stored in ``config.json`` and every checkpoint).
- :func:`train`: the loop. Minibatches of 20 drawn without replacement (a fresh permutation each
  pass), each image binarized afresh when it is used (dynamic binarization), Adam (0.9, 0.999,
  1e-4), Glorot init, output bias from the training mean, the schedule of
  :func:`~iwae_np.experiments.schedule.paper_schedule`. All randomness (init, data order,
  binarization, noise) comes from one generator whose state is in every checkpoint
  (:mod:`iwae_np.experiments.checkpoints`), so a resumed run ends with bit-identical parameters.

:func:`train` reads as its parts: :func:`start_run` or :func:`resume_run` give a :class:`RunState`;
:func:`run_steps` takes steps until the schedule ends; :func:`end_stage` monitors, logs and saves.
"""
import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data import binarize
from ..engines import DEFAULT_ENGINE, get_engine
from ..files import write_text
from ..model import Architecture, architecture_of, init_params, sample_eps
from ..optimizers import PAPER_ADAM, NonFiniteGradientError
from ..validation import NonFiniteLogWeightError, validate_params
from ..tree import tree_map
from .evaluation import iwae_log_likelihood
from .checkpoints import (CHECKPOINT_NAME, CheckpointError, CheckpointWriteError, interrupts_deferred,
                          load_run_checkpoint, save_checkpoint)
from .rundirs import check_not_foreign, check_output_dir, claim_directory
from .schedule import check_schedule, paper_schedule

__all__ = ["train_step", "TrainConfig", "train", "NonFiniteLossError", "RunState", "start_run", "resume_run",
           "run_steps", "end_stage", "monitor_pass", "write_metrics", "check_adam", "check_fresh_run_dir", "config_of_checkpoint",
           "METRICS_NAME", "CONFIG_NAME"]

METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.json"


def _is_number(v):
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def check_adam(adam):
    """Adam's settings: exactly ``b1, b2`` in [0, 1) and ``eps > 0``, finite numbers; returned as floats."""
    if not isinstance(adam, dict) or set(adam) != {"b1", "b2", "eps"}:
        raise ValueError(f"adam must have exactly the keys b1, b2, eps, got {adam!r}")
    if not all(_is_number(v) and math.isfinite(v) for v in adam.values()):
        raise ValueError(f"Adam's settings must be finite numbers, got {adam}")
    if not (0 <= adam["b1"] < 1 and 0 <= adam["b2"] < 1 and adam["eps"] > 0):
        raise ValueError(f"Adam needs 0 <= b1, b2 < 1 and eps > 0, got {adam}")
    return {key: float(v) for key, v in adam.items()}


def train_step(params, opt_state, x, rng, k, lr, objective="iwae", adam=None, engine=None):
    """Sample ``eps`` from ``rng``, take the gradient of the bound and one Adam step on its negative.

    ``engine``: ``"fast"`` (the default) or ``"definition"`` (:func:`iwae_np.engines.get_engine`), which
    computes the gradient and the Adam step; the two give the same numbers to rounding.

    Returns ``(params, opt_state, bound)`` where ``bound`` is the batch-mean value of the bound
    before the step (a Python float). ``lr`` must be a finite number > 0 (``ValueError``). A
    non-finite gradient raises :class:`~iwae_np.optimizers.NonFiniteGradientError`, a non-finite
    log weight :class:`~iwae_np.model.NonFiniteLogWeightError`; either leaves nothing changed.
    """
    if not (_is_number(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"the learning rate lr must be a finite number > 0, got {lr!r}")
    adam = check_adam(adam) if adam is not None else None
    engine = get_engine(engine)
    value_and_gradient = engine.objective(objective, k)
    eps = sample_eps(rng, params, k, np.shape(x)[0])
    bound, grads = value_and_gradient(params, x, eps)
    params, opt_state = engine.adam_update(params, grads, opt_state, lr, maximize=True, **(adam or {}))  # descends -grads
    return params, opt_state, float(bound)


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines a training run (stored in ``config.json`` and every checkpoint).

    ``architecture``: an :class:`~iwae_np.model.Architecture` (or its ``to_dict``). ``objective``:
    ``"vae"``, ``"iwae"`` or a canonical name of an objective beyond the paper such as
    ``"miwae:M=5+dreg"`` (:func:`iwae_np.estimators.get_objective`). ``schedule``: as returned by :func:`paper_schedule`. ``adam``:
    Adam's ``b1, b2, eps``. ``dtype``: of the parameters during training. ``monitor_k`` and
    ``monitor_size``: the bound :math:`\\mathcal L_k` reported in the metrics after every stage, on
    that many test and training examples (0 turns it off); ``monitor_every``: also after every that
    many passes within a stage (0: at stage ends only), for curves of the bound against passes. ``data``: a description of the data
    set (name, directory, subset), for the record and for ``--resume``. ``init_from``: the
    checkpoint the parameters were loaded from, if any. ``engine``: what computes the gradients and
    Adam, ``"fast"`` or ``"definition"`` (:mod:`iwae_np.engines`; equal to rounding, the fast one quicker).
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
    monitor_every: int = 0
    data: dict = dataclasses.field(default_factory=dict)
    init_from: str = None
    engine: str = DEFAULT_ENGINE

    def __post_init__(self):
        if isinstance(self.architecture, dict):
            try:
                self.architecture = Architecture.from_dict(self.architecture)
            except (KeyError, TypeError) as err:
                raise ValueError(f"architecture {self.architecture!r} is not an architecture ({err!r})") from None
        if not isinstance(self.architecture, Architecture):
            raise ValueError(f"architecture must be an Architecture, got {type(self.architecture).__name__}")
        for name, low in (("k", 1), ("batch_size", 1), ("seed", 0), ("monitor_k", 1), ("monitor_size", 0),
                          ("monitor_every", 0)):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and int(v) == v and v >= low):
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        self.engine = get_engine(self.engine).name  # raises ValueError naming an unknown engine
        get_engine(self.engine).objective(self.objective, int(self.k))  # raises ValueError naming an unknown objective
        if str(self.dtype) not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        self.adam = check_adam(self.adam)
        self.k, self.batch_size, self.seed = int(self.k), int(self.batch_size), int(self.seed)
        self.monitor_k, self.monitor_size, self.dtype = int(self.monitor_k), int(self.monitor_size), str(self.dtype)
        self.monitor_every = int(self.monitor_every)
        self.schedule = check_schedule(self.schedule)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["architecture"] = self.architecture.to_dict()
        return d

    @classmethod
    def from_dict(cls, d):
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)}) if isinstance(d, dict) else None
        if unknown is None or unknown:
            raise ValueError(f"not a training configuration: unknown fields {unknown}" if unknown
                             else f"a training configuration is a dict, got {type(d).__name__}")
        return cls(**d)

    @property
    def total_passes(self):
        return sum(st["passes"] for st in self.schedule)


class NonFiniteLossError(ValueError):
    """The bound (or its gradient) became NaN or infinite: training stops, the last good checkpoint stays."""


# ---------------------------------------------------------------------------------------------
# the state of a run, and how it starts


@dataclasses.dataclass
class RunState:
    """Everything that changes while a run trains, and everything a checkpoint stores.

    ``pos``: ``stage`` (index into the schedule), ``pass`` and ``step`` within it, ``global_step``,
    and the running sum of the stage's training bound. ``perm``: the data order of the current pass.
    ``history``: the per-stage metric records. ``elapsed``: training wall time before this process.
    ``latest``: the last consistent state (a :meth:`snapshot`: after a completed step, or after the
    end of a stage), what Ctrl-C saves; ``saved``: the snapshot last written to the checkpoint.
    """
    config: TrainConfig
    run_dir: Path
    fingerprint: dict
    params: dict
    opt_state: dict
    rng: np.random.Generator
    perm: np.ndarray = None
    pos: dict = dataclasses.field(default_factory=lambda: {
        "stage": 0, "pass": 0, "step": 0, "global_step": 0, "stage_bound_sum": 0.0, "stage_steps": 0})
    history: list = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    status: str = "running"
    train_x: np.ndarray = None  # (N, D) the training images, gray (or binary for a fixed binarization)
    started: float = dataclasses.field(default_factory=time.monotonic)
    saved_step: int = None  # global step of the last checkpoint written (None: none yet)
    saved_at: float = dataclasses.field(default_factory=time.monotonic)
    latest: dict = None
    saved: dict = None

    @property
    def checkpoint_path(self):
        return self.run_dir / CHECKPOINT_NAME

    def snapshot(self, status="running"):
        """The state after the last completed step, as :func:`save` writes it (arrays are never modified in place)."""
        return {"params": self.params, "opt_state": self.opt_state, "rng_state": self.rng.bit_generator.state,
                "pos": dict(self.pos), "perm": self.perm, "history": list(self.history),
                "elapsed": self.elapsed + time.monotonic() - self.started, "status": status}

    def save(self, snap):
        """Write ``snap`` (a :meth:`snapshot`) as the run's checkpoint.

        A failed write raises :class:`~iwae_np.experiments.checkpoints.CheckpointWriteError` saying
        which checkpoint is still there; nothing else has changed.
        """
        config = self.config
        bit_generator = type(self.rng.bit_generator)()
        bit_generator.state = snap["rng_state"]
        meta = {"config": config.to_dict(), "architecture": config.architecture.to_dict(),
                "objective": config.objective, "k": config.k, "dtype": config.dtype,
                "position": snap["pos"], "history": snap["history"], "elapsed": snap["elapsed"],
                "status": snap["status"], "data_fingerprint": self.fingerprint,
                "steps_per_pass": steps_per_pass(self), "total_passes": config.total_passes}
        with interrupts_deferred():  # Ctrl-C comes after the record of what was saved
            try:
                save_checkpoint(self.checkpoint_path, snap["params"], snap["opt_state"],
                                np.random.Generator(bit_generator), meta, snap["perm"])
            except CheckpointWriteError as err:
                kept = (f"the checkpoint after global step {self.saved_step} is intact"
                        if self.saved_step is not None else "no checkpoint had been written yet")
                cause = err.__cause__ if isinstance(err.__cause__, OSError) else err
                raise CheckpointWriteError(f"could not write the checkpoint {self.checkpoint_path} "
                                           f"({cause.strerror or cause}); {kept}. Make room (or raise the "
                                           "file-size limit) and continue with --resume") from cause
            self.saved_at, self.saved_step, self.saved = time.monotonic(), snap["pos"]["global_step"], snap

    def result(self, status=None):
        return {"params": self.params, "status": status or self.status, "history": self.history,
                "checkpoint": str(self.checkpoint_path), "global_step": self.pos["global_step"]}


def steps_per_pass(state):
    return math.ceil(len(state.train_x) / state.config.batch_size)


def data_fingerprint(dataset):
    """What identifies the training data of a run (sizes and a hash of the mean image), checked on resume."""
    train = np.asarray(dataset.train)
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(dataset.train_mean, dtype=np.float64)).tobytes())
    return {"n_train": int(train.shape[0]), "n_test": int(np.shape(dataset.test)[0]),
            "train_mean_sha256": digest.hexdigest()[:16]}


def _initial_params(dataset, config, params):
    """Glorot init (output bias from the training mean), or ``params`` checked against the configuration."""
    dtype = np.dtype(config.dtype)
    rng = np.random.Generator(np.random.PCG64(config.seed))
    if params is None:
        return init_params(config.architecture, rng, dtype, x_mean=dataset.train_mean), rng
    if architecture_of(params) != config.architecture:
        raise ValueError(f"the initial parameters have architecture {architecture_of(params)}, "
                         f"the configuration says {config.architecture}")
    params = tree_map(lambda p: np.asarray(p, dtype=dtype), params)
    validate_params(params)
    return params, rng


def check_fresh_run_dir(run_dir):
    """A new run may start in ``run_dir``: no checkpoint there, and no ``config.json`` or ``metrics.jsonl`` that
    iwae-np did not write (:class:`~iwae_np.experiments.rundirs.ForeignFileError`). Checks only; writes nothing."""
    run_dir = Path(run_dir)
    check_output_dir(run_dir, "run directory")
    if (run_dir / CHECKPOINT_NAME).exists():
        raise ValueError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}); continue it with "
                         "--resume or choose another output directory")
    for name in (CONFIG_NAME, METRICS_NAME):
        check_not_foreign(run_dir / name)


def start_run(dataset, config, run_dir, params=None):
    """A fresh run: Glorot init (output bias from the training mean) or ``params``, fresh Adam, ``config.json`` written.

    ``run_dir`` must hold no checkpoint, and no ``config.json`` or ``metrics.jsonl`` that iwae-np did
    not write (:class:`~iwae_np.experiments.rundirs.ForeignFileError`): a user's files are never overwritten.
    """
    run_dir = Path(run_dir)
    check_fresh_run_dir(run_dir)
    params, rng = _initial_params(dataset, config, params)
    write_text(run_dir / CONFIG_NAME, json.dumps(config.to_dict(), indent=2) + "\n")
    return RunState(config, run_dir, data_fingerprint(dataset), params, get_engine(config.engine).adam_init(params), rng,
                    train_x=np.asarray(dataset.train))


def config_of_checkpoint(ck):
    """The :class:`TrainConfig` stored in a run's checkpoint; CheckpointError naming the file when it is not one."""
    try:
        return TrainConfig.from_dict(ck["meta"]["config"])
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {ck['path']} holds no valid training configuration: {err}") from err


def resume_run(dataset, config, run_dir):
    """The run in ``run_dir`` as its checkpoint left it; the configuration and the data must be the same."""
    run_dir = Path(run_dir)
    ck = load_run_checkpoint(run_dir / CHECKPOINT_NAME)
    meta = ck["meta"]
    saved = config_of_checkpoint(ck).to_dict()
    if saved != config.to_dict():
        diff = sorted(key for key in saved if saved[key] != config.to_dict()[key])
        raise ValueError(f"the checkpoint {ck['path']} was made with another configuration "
                         f"(differs in {diff}); resume with the run's own config.json")
    fingerprint = data_fingerprint(dataset)
    if meta["data_fingerprint"] != fingerprint:
        raise ValueError(f"the checkpoint {ck['path']} was trained on other data "
                         f"({meta['data_fingerprint']}, now {fingerprint})")
    check_not_foreign(run_dir / METRICS_NAME)
    state = RunState(config, run_dir, fingerprint, ck["params"], ck["opt_state"], ck["rng"], ck["perm"],
                     dict(meta["position"]), list(meta["history"]), float(meta["elapsed"]), meta["status"],
                     np.asarray(dataset.train))
    state.saved_step = state.pos["global_step"]
    return state


# ---------------------------------------------------------------------------------------------
# the loop


def train(dataset, config, run_dir, resume=False, params=None, progress=True, checkpoint_every=300.0,
          callback=None):
    r"""Train a model on ``dataset`` with ``config``, checkpointing into ``run_dir``.

    ``dataset`` has ``train (N, D)`` gray in [0, 1] (or binary with ``fixed_binarization``),
    ``test``, ``train_mean (D,)`` and ``binarized_test(seed)`` (see :mod:`iwae_np.data`).
    ``params``: start from these parameters (``--init-from``) instead of a fresh Glorot init;
    the Adam state and the schedule start afresh. ``resume``: continue the run in ``run_dir``
    from its checkpoint; the final parameters are then bit-identical to an uninterrupted run.

    A checkpoint is written after every stage and whenever ``checkpoint_every`` seconds have
    passed since the last one (0: after every step). After every stage a record (stage, lr,
    passes, mean training bound over the stage, :math:`\mathcal L_{monitor\_k}` on test and training
    examples, wall time) is appended to ``metrics.jsonl``. ``callback(info)``, if given, is called
    after every step with a dict (``global_step``, ``stage``, ``bound``, ``position``,
    ``checkpoint_step``, ``steps_per_pass``, ``schedule``, and ``stage_record``: the metric record when the
    step ended a stage, else None).

    The process holds ``run_dir`` while it trains (another process training there gets a
    ``ValueError``) and first removes the temporary files a killed process left there. A run
    resumed from any interruption ends in the same consistent state: a stage whose steps were all
    taken but whose end (monitor, record, checkpoint) was cut short is ended first, and
    ``metrics.jsonl`` is rewritten from the checkpoint's history when it lacks a record.

    Ctrl-C (``KeyboardInterrupt``) writes a checkpoint of the last consistent state (after the last
    completed step or stage; if that is the end of the last stage, the checkpoint says finished) and
    returns with status ``"interrupted"``. A non-finite bound, log weight or gradient raises
    :class:`NonFiniteLossError` naming the step; a failed checkpoint write raises
    :class:`~iwae_np.experiments.checkpoints.CheckpointWriteError`; in both cases the last good
    checkpoint is left as it is. Returns a dict: ``params``, ``status`` (``"finished"`` or
    ``"interrupted"``), ``history`` (the metric records), ``checkpoint`` (its path), ``global_step``.
    """
    run_dir = Path(run_dir)
    check_output_dir(run_dir, "run directory")
    if not (_is_number(checkpoint_every) and checkpoint_every >= 0):  # NaN fails too
        raise ValueError(f"checkpoint_every must be a number of seconds >= 0, got {checkpoint_every!r}")
    train_x = np.asarray(dataset.train)
    if train_x.ndim != 2 or train_x.shape[1] != config.architecture.x_dim:
        raise ValueError(f"the training data have shape {train_x.shape}; the architecture needs "
                         f"(N, {config.architecture.x_dim})")
    if resume and not (run_dir / CHECKPOINT_NAME).is_file():
        raise CheckpointError(f"no checkpoint at {run_dir / CHECKPOINT_NAME} to resume from")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    with claim_directory(run_dir, (CHECKPOINT_NAME, METRICS_NAME, CONFIG_NAME)):
        try:
            state = resume_run(dataset, config, run_dir) if resume else start_run(dataset, config, run_dir, params)
        except BaseException:
            if created and not any(run_dir.iterdir()):
                run_dir.rmdir()  # leave no empty directory behind a run that never started
            raise
        if state.status == "finished":
            write_metrics(state.run_dir, state.history)
            return state.result()
        state.status = "running"
        return run_steps(state, dataset, progress, checkpoint_every, callback)


def _stage_is_due(state):
    """Whether every step of the current stage has been taken but the stage has not been ended."""
    pos, schedule = state.pos, state.config.schedule
    return pos["stage"] < len(schedule) and pos["pass"] == schedule[pos["stage"]]["passes"]


def run_steps(state, dataset, progress=True, checkpoint_every=300.0, callback=None):
    """Take steps until the schedule ends (or Ctrl-C); every stage ends with :func:`end_stage`."""
    config, pos, schedule = state.config, state.pos, state.config.schedule
    batch = config.batch_size
    dtype = np.dtype(config.dtype)
    monitor = monitor_sets(dataset, config)
    bar, state.latest = None, state.snapshot()
    try:
        if _stage_is_due(state):  # a resumed run whose last stage end was cut short: end it now
            end_stage(state, schedule[pos["stage"]], monitor)
        while pos["stage"] < len(schedule):
            stage = schedule[pos["stage"]]
            if bar is None:
                n_per_pass = steps_per_pass(state)
                bar = tqdm(total=stage["passes"] * n_per_pass, initial=pos["pass"] * n_per_pass + pos["step"],
                           disable=not progress, desc=f"stage {stage['stage']} ({stage['passes']} passes, "
                           f"lr {stage['lr']:.2e})", unit="step", mininterval=0.5, dynamic_ncols=True, leave=True)
            if pos["step"] == 0:
                state.perm = state.rng.permutation(len(state.train_x))  # a fresh data order each pass
            idx = state.perm[pos["step"] * batch:(pos["step"] + 1) * batch]
            x = binarized(dataset, state.train_x[idx], state.rng).astype(dtype)  # (batch, D), drawn afresh
            bound = _step(state, x, stage)
            if pos["step"] == 0 and not _stage_is_due(state) and monitor is not None and config.monitor_every:
                monitor_pass(state, stage, monitor)  # before the snapshot: Ctrl-C in it redoes the step on resume
            state.latest = state.snapshot()
            bar.update(1)
            if pos["global_step"] % 20 == 0:
                bar.set_postfix_str(f"bound {pos['stage_bound_sum'] / pos['stage_steps']:.2f}", refresh=False)
            record = None
            if _stage_is_due(state):
                bar.close()
                bar = None
                record = end_stage(state, stage, monitor)
            elif time.monotonic() - state.saved_at >= checkpoint_every:
                state.save(state.latest)
            if callback is not None:
                callback({"global_step": pos["global_step"], "stage": stage["stage"], "bound": bound,
                          "position": dict(pos), "checkpoint_step": state.saved_step, "stage_record": record,
                          "steps_per_pass": steps_per_pass(state), "schedule": schedule})
    except KeyboardInterrupt:
        return _save_on_interrupt(state)
    finally:
        if bar is not None:
            bar.close()
    return state.result("finished")


def _save_on_interrupt(state):
    """Ctrl-C: checkpoint the last consistent state (unless it is already the checkpoint) and return to it."""
    snap = state.latest
    if snap["status"] != "finished":
        snap = dict(snap, status="interrupted")
    if state.saved is not state.latest or state.saved["status"] != snap["status"]:
        state.save(snap)
    write_metrics(state.run_dir, snap["history"])
    state.params, state.opt_state, state.history = snap["params"], snap["opt_state"], snap["history"]
    state.perm, state.status = snap["perm"], snap["status"]
    state.pos.update(snap["pos"])
    return state.result("interrupted")  # even when the state saved is the end: the user asked to stop


def _step(state, x, stage):
    """One training step on the minibatch ``x``; the position advances only when the step succeeded."""
    config, pos = state.config, state.pos
    step_id = (f"stage {stage['stage']}, pass {pos['pass'] + 1}, step {pos['step'] + 1} "
               f"(global step {pos['global_step'] + 1})")
    try:
        params, opt_state, bound = train_step(state.params, state.opt_state, x, state.rng, config.k, stage["lr"],
                                              config.objective, config.adam, config.engine)
    except (NonFiniteGradientError, NonFiniteLogWeightError) as err:
        raise NonFiniteLossError(_nonfinite_message(step_id, str(err), state)) from err
    if not math.isfinite(bound):
        raise NonFiniteLossError(_nonfinite_message(step_id, f"the bound is {bound}", state))
    state.params, state.opt_state = params, opt_state
    pos["step"] += 1
    pos["global_step"] += 1
    pos["stage_bound_sum"] += bound
    pos["stage_steps"] += 1
    if pos["step"] == steps_per_pass(state):
        pos["step"], pos["pass"] = 0, pos["pass"] + 1
    return bound


def end_stage(state, stage, monitor):
    """The end of a stage: monitor the bound, append the metric record, checkpoint, write ``metrics.jsonl``.

    The state after it becomes ``state.latest`` before the checkpoint is written, so that Ctrl-C
    during the write saves it; Ctrl-C before that saves the state before it (ended again on resume).
    """
    config, pos, schedule = state.config, state.pos, state.config.schedule
    record = {"stage": stage["stage"], "lr": stage["lr"], "passes": stage["passes"],
              "passes_done": sum(s["passes"] for s in schedule[:pos["stage"] + 1]),
              "global_step": pos["global_step"],
              "train_objective": pos["stage_bound_sum"] / pos["stage_steps"],
              "objective": config.objective, "k": config.k}
    if monitor is not None:
        record["monitor_k"] = config.monitor_k
        record.update(monitor_bounds(state.params, monitor, config, stage["stage"]))
    record["wall_time"] = state.elapsed + time.monotonic() - state.started
    state.history.append(record)
    pos.update(stage=pos["stage"] + 1, **{"pass": 0}, stage_bound_sum=0.0, stage_steps=0)
    state.status = "finished" if pos["stage"] == len(schedule) else "running"
    state.latest = state.snapshot(state.status)
    state.save(state.latest)
    write_metrics(state.run_dir, state.history)
    return record


def write_metrics(run_dir, history):
    """Write ``metrics.jsonl`` (one JSON record a line) from ``history``, unless it already holds exactly that.

    The checkpoint's history is the record; this file is its readable copy, rebuilt whenever it is stale.
    """
    path = Path(run_dir) / METRICS_NAME
    text = "".join(json.dumps(r) + "\n" for r in history)
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    check_not_foreign(path)
    try:
        return write_text(path, text)
    except OSError as err:
        raise OSError(f"could not write {path} ({err.strerror or err}); the checkpoint holds every record and "
                      "--resume writes the file again") from err


def monitor_pass(state, stage, monitor):
    """Within a stage, after every ``monitor_every`` passes: a metric record of the monitored bounds only."""
    config, pos = state.config, state.pos
    passes_done = sum(s["passes"] for s in config.schedule[:pos["stage"]]) + pos["pass"]
    if passes_done % config.monitor_every:
        return None
    record = {"stage": stage["stage"], "lr": stage["lr"], "passes_done": passes_done,
              "global_step": pos["global_step"], "within_stage": True, "monitor_k": config.monitor_k,
              **monitor_bounds(state.params, monitor, config, ("pass", passes_done)),
              "wall_time": state.elapsed + time.monotonic() - state.started}
    state.history.append(record)
    write_metrics(state.run_dir, state.history)
    return record


def binarized(dataset, x_gray, rng):
    """Training images as the model sees them: binarized afresh from ``rng`` (dynamic binarization),
    or as they are for a fixed-binarization set."""
    if getattr(dataset, "fixed_binarization", False):
        return np.asarray(x_gray, dtype=np.float64)
    return binarize(x_gray, rng)


def monitor_sets(dataset, config):
    """The fixed examples the per-stage bounds are computed on: test (fixed-seed binarized) and train."""
    n = config.monitor_size
    if n == 0:
        return None
    test = np.asarray(dataset.binarized_test(seed=0))[:n]
    train = binarized(dataset, np.asarray(dataset.train)[:n], np.random.default_rng((config.seed, 1)))
    return {"test": test, "train": train}


def monitor_bounds(params, monitor, config, when):
    r"""``{"test_bound", "train_bound"}``: the mean :math:`\mathcal L_{monitor\_k}` on the monitor sets.

    ``when`` is the stage index at a stage's end, ``("pass", n)`` after pass n within a stage: the noise
    comes from a generator seeded by it, never from the training generator (so monitoring does not change
    the training run).
    """
    key = (config.seed, 2, when) if isinstance(when, int) else (config.seed, 3, when[1])
    rng = np.random.default_rng(key)
    return {f"{part}_bound": float(np.mean(iwae_log_likelihood(params, x, rng, k=config.monitor_k)))
            for part, x in monitor.items()}


def _nonfinite_message(step_id, what, state):
    kept = (f"the last good checkpoint {state.checkpoint_path} (after global step {state.saved_step}) is kept"
            if state.saved_step is not None else "no checkpoint had been written yet")
    return (f"training stopped at {step_id}: {what}. The parameters were not updated; {kept}. "
            "Try a smaller learning rate or float64 (--dtype float64).")
