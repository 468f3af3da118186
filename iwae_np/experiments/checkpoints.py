"""Training checkpoints: one ``.npz`` (no pickles) with the arrays and a JSON string of metadata.

A checkpoint holds the parameters, the Adam state, the generator state and the position in the
schedule, so that a resumed run ends with bit-identical parameters. It is written with the
package's one atomic writer (:func:`iwae_np.files.atomic_write`): a crash, Ctrl-C, a full disk or
a file-size limit during a save leaves the previous checkpoint intact.

Ctrl-C during a save is held back until the file is complete (:func:`interrupts_deferred`), then
raised: a ``KeyboardInterrupt`` inside ``np.savez`` would surface as zipfile's "Can't close the ZIP
file while there is an open writing handle" ``ValueError`` instead, and the save would be lost.

Errors are typed: :class:`CheckpointError` (a ``ValueError``) for a checkpoint that is missing,
unreadable, damaged, incomplete or from a newer checkpoint format, always naming the file;
:class:`CheckpointWriteError` (an ``OSError``) for a save that failed. Anything else (``MemoryError``,
``KeyboardInterrupt``) is not a fault of the file and passes through unchanged.
"""
import contextlib
import json
import signal
import threading
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..validation import validate_params
from ..tree import check_same_structure, flatten_tree, tree_map, unflatten_tree
from ..version import __version__

__all__ = ["CHECKPOINT_NAME", "FORMAT_VERSION", "CheckpointError", "CheckpointWriteError",
           "CheckpointVersionWarning", "RUN_STATUSES", "interrupts_deferred", "save_checkpoint", "load_checkpoint", "load_run_checkpoint",
           "load_params"]

CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = "iwae-np-checkpoint"
#: The layout of the arrays and metadata this version writes; a reader refuses a newer one.
#: Checkpoints without the field (iwae-np 0.1.0) are format 1.
FORMAT_VERSION = 1
#: ``meta["status"]`` of a training run's checkpoint.
RUN_STATUSES = ("running", "interrupted", "finished")
_POSITION_KEYS = ("stage", "pass", "step", "global_step", "stage_bound_sum", "stage_steps")


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, damaged, incomplete, from a newer format or not an iwae-np
    checkpoint (the message names the file)."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, file-size limit, permissions); the previous one is intact."""


class CheckpointVersionWarning(UserWarning):
    """A checkpoint written by a newer iwae-np in a format this version reads."""


#: The signals held back during a save: Ctrl-C, and the signal with which ``iwae-np table`` stops a worker's cell.
DEFERRED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGUSR1") if hasattr(signal, name))
_deferring = threading.local()


@contextlib.contextmanager
def interrupts_deferred():
    """Hold back the signals of :data:`DEFERRED_SIGNALS` that have a Python handler (Ctrl-C's KeyboardInterrupt)
    while the block runs; when it ends, run the handler of each that came (raising KeyboardInterrupt).

    Nests (an inner block does nothing). Only the main thread receives signals; elsewhere it does nothing. If the
    block raises, that exception goes on and a held-back Ctrl-C is dropped (the caller is already stopping).
    """
    if threading.current_thread() is not threading.main_thread() or getattr(_deferring, "on", False):
        yield
        return
    received, previous = [], {}

    def hold(signum, frame):
        received.append(signum)

    for signum in DEFERRED_SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler):  # a Python handler; SIG_DFL and SIG_IGN are left as they are
            previous[signum] = signal.signal(signum, hold)
    _deferring.on = True
    try:
        yield
    finally:
        _deferring.on = False
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in dict.fromkeys(received):
        previous[signum](signum, None)


def save_checkpoint(path, params, opt_state, rng, meta, perm=None):
    """Write a checkpoint atomically: arrays ``params/<name>``, ``adam_m/<name>``, ``adam_v/<name>``,
    ``perm`` (the data order of the current pass) and ``meta``, a JSON string holding ``meta`` plus the
    Adam step count and the generator state (``rng.bit_generator.state``).

    A failed write raises :class:`CheckpointWriteError` naming the file; what was at ``path`` before is unchanged.
    Ctrl-C during the write is raised once the file is complete (:func:`interrupts_deferred`).
    """
    arrays = {}
    for prefix, tree in (("params", params), ("adam_m", opt_state["m"]), ("adam_v", opt_state["v"])):
        arrays.update({f"{prefix}/{name}": np.asarray(v) for name, v in flatten_tree(tree).items()})
    arrays["perm"] = np.asarray(perm if perm is not None else np.zeros(0), dtype=np.int64)
    meta = dict(meta, format=_FORMAT, format_version=FORMAT_VERSION, iwae_np_version=__version__,
                adam_t=int(opt_state["t"]), rng_state=rng.bit_generator.state, has_perm=perm is not None)
    arrays["meta"] = np.array(json.dumps(meta))
    try:
        with interrupts_deferred():
            atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError as err:
        raise CheckpointWriteError(f"could not write the checkpoint {path}: {err.strerror or err}; "
                                   "the file that was there (if any) is unchanged") from err  # the errno: __cause__


def _read_arrays(path):
    try:
        f = open(path, "rb")  # closed by the with below
    except OSError as err:  # permissions, a directory: the file cannot be read, it is not damaged
        raise CheckpointError(f"cannot read the checkpoint {path}: {err.strerror or err}") from err
    try:
        with f, np.load(f, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # truncated, not a zip
        raise CheckpointError(f"checkpoint {path} is unreadable or damaged: {type(err).__name__}: {err}") from err
    if "meta" not in arrays:
        raise CheckpointError(f"{path} is not an iwae-np checkpoint (it has no 'meta' entry)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path} is damaged: its metadata is not JSON ({err})") from err
    return arrays, meta


def _version_tuple(version):
    try:
        return tuple(int(part) for part in str(version).split("."))
    except ValueError:
        return None


def _check_format(meta, path):
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not an iwae-np checkpoint")
    written_by = meta.get("iwae_np_version", "unknown")
    fmt = meta.get("format_version", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise CheckpointError(f"checkpoint {path} is damaged: format_version is {fmt!r}")
    if fmt > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by iwae-np {written_by} in checkpoint format {fmt}; this is "
                              f"iwae-np {__version__}, which reads formats up to {FORMAT_VERSION}: upgrade iwae-np")
    theirs, ours = _version_tuple(written_by), _version_tuple(__version__)
    if theirs is None or (ours is not None and theirs > ours):
        warnings.warn(f"{path} was written by iwae-np {written_by}, this is {__version__}; reading it as "
                      f"checkpoint format {fmt}, which both write", CheckpointVersionWarning, stacklevel=3)
    for key, kind in (("adam_t", int), ("rng_state", dict), ("has_perm", bool)):
        if key not in meta:
            raise CheckpointError(f"checkpoint {path} is damaged or incomplete: its metadata has no {key!r}")
        if not isinstance(meta[key], kind):
            raise CheckpointError(f"checkpoint {path} is damaged: {key!r} is {meta[key]!r}")


def _generator(state, path):
    """A Generator in the saved ``bit_generator.state``; CheckpointError when the state is not one."""
    name = state.get("bit_generator")
    bit_generator_class = getattr(np.random, name, None) if isinstance(name, str) else None
    if not (isinstance(bit_generator_class, type) and issubclass(bit_generator_class, np.random.BitGenerator)):
        raise CheckpointError(f"checkpoint {path} is damaged: rng_state names no numpy bit generator ({name!r})")
    bit_generator = bit_generator_class()
    try:
        bit_generator.state = state
    except (ValueError, TypeError, KeyError, OverflowError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged: its rng_state is not a {name} state ({err})") from err
    return np.random.Generator(bit_generator)


def load_checkpoint(path):
    """Read a checkpoint (a file, or a run directory holding ``checkpoint.npz``).

    Returns a dict with ``params``, ``opt_state``, ``rng`` (a Generator in the saved state),
    ``perm`` (or None) and ``meta``. A missing, unreadable, damaged or incomplete file, or one in a
    newer checkpoint format, gives a :class:`CheckpointError` (a ``ValueError``) naming it; a
    checkpoint from a newer iwae-np in this format gives a :class:`CheckpointVersionWarning`.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    arrays, meta = _read_arrays(path)
    _check_format(meta, path)

    def tree(prefix):
        return unflatten_tree({name[len(prefix) + 1:]: v for name, v in arrays.items()
                               if name.startswith(prefix + "/")})

    try:
        params = tree("params")
        validate_params(params, check_values=False)
        opt_state = {"m": tree("adam_m"), "v": tree("adam_v"), "t": int(meta["adam_t"])}
        check_same_structure(opt_state["m"], params, what="its Adam state 'm'")
        check_same_structure(opt_state["v"], params, what="its Adam state 'v'")
    except ValueError as err:
        raise CheckpointError(f"checkpoint {path} is damaged: {err}") from err
    if meta["has_perm"] and ("perm" not in arrays or arrays["perm"].ndim != 1):
        raise CheckpointError(f"checkpoint {path} is damaged: it has no data order 'perm'")
    perm = arrays["perm"] if meta["has_perm"] else None
    return {"params": params, "opt_state": opt_state, "rng": _generator(meta["rng_state"], path),
            "perm": perm, "meta": meta, "path": str(path)}


def load_run_checkpoint(path):
    """:func:`load_checkpoint` of a training run's checkpoint: also checks the metadata a run needs
    (configuration, position, history, status, elapsed time, data fingerprint); CheckpointError naming what is missing."""
    ck = load_checkpoint(path)
    meta, where = ck["meta"], ck["path"]
    for key, kind in (("config", dict), ("position", dict), ("history", list), ("status", str),
                      ("elapsed", (int, float)), ("data_fingerprint", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{where} is not the checkpoint of a training run, or it is damaged: "
                                  f"its metadata has no valid {key!r}")
    missing = [key for key in _POSITION_KEYS if not isinstance(meta["position"].get(key), (int, float))]
    if missing:
        raise CheckpointError(f"checkpoint {where} is damaged: its position lacks {missing}")
    if meta["status"] not in RUN_STATUSES:
        raise CheckpointError(f"checkpoint {where} is damaged: status {meta['status']!r} is not one of {RUN_STATUSES}")
    if not all(isinstance(r, dict) for r in meta["history"]):
        raise CheckpointError(f"checkpoint {where} is damaged: its history holds something other than records")
    return ck


def load_params(path, dtype=None):
    """The parameters of a checkpoint (file or run directory), cast to ``dtype`` if given."""
    params = load_checkpoint(path)["params"]
    return params if dtype is None else tree_map(lambda p: p.astype(dtype), params)
