"""Training checkpoints: one ``.npz`` (no pickles) with the arrays and a JSON string of metadata.

A checkpoint holds the parameters, the Adam state, the generator state and the position in the
schedule, so that a resumed run ends with bit-identical parameters. It is written with the
package's one atomic writer (:func:`iwae_np.files.atomic_write`): a crash or Ctrl-C during a save
leaves the previous checkpoint intact.
"""
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..files import atomic_write
from ..model import validate_params
from ..tree import check_same_structure, flatten_tree, tree_map, unflatten_tree

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "save_checkpoint", "load_checkpoint", "load_params"]

CHECKPOINT_NAME = "checkpoint.npz"
_FORMAT = "iwae-np-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, damaged or not an iwae-np checkpoint (the message names the file)."""


def save_checkpoint(path, params, opt_state, rng, meta, perm=None):
    """Write a checkpoint atomically: arrays ``params/<name>``, ``adam_m/<name>``, ``adam_v/<name>``,
    ``perm`` (the data order of the current pass) and ``meta``, a JSON string holding ``meta`` plus the
    Adam step count and the generator state (``rng.bit_generator.state``)."""
    from .. import __version__
    arrays = {}
    for prefix, tree in (("params", params), ("adam_m", opt_state["m"]), ("adam_v", opt_state["v"])):
        arrays.update({f"{prefix}/{name}": np.asarray(v) for name, v in flatten_tree(tree).items()})
    arrays["perm"] = np.asarray(perm if perm is not None else np.zeros(0), dtype=np.int64)
    meta = dict(meta, format=_FORMAT, iwae_np_version=__version__, adam_t=int(opt_state["t"]),
                rng_state=rng.bit_generator.state, has_perm=perm is not None)
    arrays["meta"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _read_arrays(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
        return arrays, json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # truncated, not a zip, no meta
        raise CheckpointError(f"checkpoint {path} is unreadable or damaged: {type(err).__name__}: {err}") from err


def load_checkpoint(path):
    """Read a checkpoint (a file, or a run directory holding ``checkpoint.npz``).

    Returns a dict with ``params``, ``opt_state``, ``rng`` (a Generator in the saved state),
    ``perm`` (or None) and ``meta``. A missing or damaged file gives a :class:`CheckpointError`
    (a ``ValueError``) naming it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    arrays, meta = _read_arrays(path)
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not an iwae-np checkpoint")

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
