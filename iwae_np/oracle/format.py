"""The fixture format (``iwae-np-oracle``, version 1; ``docs/oracle.md``): names, checksums, reading and writing.

A *fixture* is one directory with two files:

- ``arrays.npz``: every array, numpy's ``.npz`` format, no pickles;
- ``manifest.json``: the format and version, the architecture, the dense-layer convention, the
  parameter names in order, the noise layout, ``k``, the batch size, the seed, the settings of the
  extra bounds, how a hard case was constructed, the iwae_np version, and for every array its
  shape, dtype, role (input or output) and SHA-256 checksum.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..files import atomic_write, read_json, write_json
from ..model import network_names
from ..tree import unflatten_tree

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_NAME", "ARRAYS_NAME", "SUITE_INDEX_NAME", "TOLERANCES",
           "OracleInputError", "Fixture", "param_key", "grad_key", "quantity_group", "array_checksum",
           "architecture_manifest", "write_fixture", "load_fixture", "load_results", "read_suite_index"]

FORMAT_NAME = "iwae-np-oracle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ARRAYS_NAME = "arrays.npz"
SUITE_INDEX_NAME = "suite.json"

#: Agreement, per array: ``max|a - r| <= rtol * max|r| + atol`` (see :func:`iwae_np.oracle.compare.compare_arrays`).
TOLERANCES = {"float64": {"rtol": 1e-10, "atol": 1e-14},
              "float32": {"rtol": 1e-4, "atol": 1e-6}}


class OracleInputError(ValueError):
    """A fixture or results file that cannot be compared: missing key, wrong shape, version, checksum."""


@dataclass
class Fixture:
    """A fixture in memory: its manifest (a JSON-ready dict) and its arrays by key."""
    manifest: dict
    arrays: dict

    @property
    def inputs(self):
        return [k for k, v in self.manifest["arrays"].items() if v["role"] == "input"]

    @property
    def outputs(self):
        return [k for k, v in self.manifest["arrays"].items() if v["role"] == "output"]

    def model_inputs(self):
        """``(params, x, eps)`` for iwae_np, read from the arrays by the manifest."""
        m, a = self.manifest, self.arrays
        params = unflatten_tree({p["name"]: a[p["key"]] for p in m["parameters"]})
        return params, a["x"], [a[e["key"]] for e in m["eps"]]


def param_key(name):
    """npz key of a parameter: ``"q_h1/hidden_0/W"`` -> ``"param.q_h1.hidden_0.W"`` ('/' becomes '.')."""
    return "param." + name.replace("/", ".")


def grad_key(objective, name):
    return f"grad.{objective}." + name.replace("/", ".")


def quantity_group(key):
    """The quantity an array belongs to: ``grad.<objective>`` for gradients, the key itself otherwise."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "grad" else key


def array_checksum(a):
    """SHA-256 (hex) of the array's raw bytes: C order, little-endian, its own dtype."""
    a = np.asarray(a)
    return hashlib.sha256(np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C").tobytes()).hexdigest()


def architecture_manifest(arch):
    L = arch.n_stochastic
    networks = []
    for name in network_names(arch):
        if name.startswith("q_"):
            l = int(name[3:])
            hidden, inp, out = arch.q_hidden[l - 1], ("x" if l == 1 else f"h{l - 1}"), f"h{l}"
            heads = ["mu", "log_sigma"]
        elif name == "p_x":
            hidden, inp, out, heads = arch.p_hidden[0], "h1", "x", ["logits"]
        else:
            l = int(name[3:])
            hidden, inp, out, heads = arch.p_hidden[l], f"h{l + 1}", f"h{l}", ["mu", "log_sigma"]
        layers = ([{"name": f"hidden_{i}", "width": w, "activation": "tanh"} for i, w in enumerate(hidden)]
                  + [{"name": h, "width": arch.x_dim if h == "logits" else arch.latent_dims[int(out[1:]) - 1],
                      "activation": "identity", "input": "last hidden layer" if hidden else inp} for h in heads])
        networks.append({"name": name, "role": "phi" if name.startswith("q_") else "theta",
                         "input": inp, "output": out,
                         "distribution": "bernoulli_logits" if name == "p_x" else "diagonal_gaussian",
                         "layers": layers})
    return {
        "x_dim": arch.x_dim, "latent_dims": list(arch.latent_dims), "n_stochastic_layers": L,
        "q_hidden": [list(h) for h in arch.q_hidden], "p_hidden": [list(h) for h in arch.p_hidden],
        "hidden_activation": "tanh",
        "sigma": "sigma = exp(log_sigma), log_sigma a linear head (log standard deviation)",
        "prior": f"p(h{L}) = N(0, I)",
        "x_likelihood": "Bernoulli with logits: log p(x|h1) = sum_j x_j l_j - softplus(l_j)",
        "networks": networks,
    }


def write_fixture(fixture, directory):
    """Write ``manifest.json`` and ``arrays.npz`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / ARRAYS_NAME, lambda f: np.savez(f, **fixture.arrays))
    write_json(directory / MANIFEST_NAME, fixture.manifest)
    return directory


def _fixture_paths(path):
    path = Path(path)
    if not path.exists():
        raise OracleInputError(f"fixture directory {path} does not exist")
    if path.is_dir():
        return path / MANIFEST_NAME, path / ARRAYS_NAME
    if path.name == MANIFEST_NAME:
        return path, path.parent / ARRAYS_NAME
    raise OracleInputError(f"{path}: a fixture is a directory holding {MANIFEST_NAME} and {ARRAYS_NAME}")


def _load_npz(path, what):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise OracleInputError(f"{what} {path} does not exist") from None
    except (OSError, ValueError) as err:  # not a zip, a truncated file, an object array
        raise OracleInputError(f"{what} {path} is not a readable .npz without pickles: {err}") from None


def load_fixture(path, verify=True):
    """Read a fixture directory; with ``verify``, check format, version, and each array's shape, dtype, checksum."""
    manifest_path, arrays_path = _fixture_paths(path)
    manifest = read_json(manifest_path, OracleInputError, f"fixture manifest {manifest_path} does not exist")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise OracleInputError(f"{manifest_path}: not an {FORMAT_NAME} manifest "
                               f"(format = {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise OracleInputError(f"{manifest_path}: fixture format version {manifest.get('format_version')!r} "
                               f"is not supported; this iwae-np ({__version__}) reads version {FORMAT_VERSION}")
    arrays = _load_npz(arrays_path, "fixture arrays")
    if verify:
        listed = manifest.get("arrays", {})
        for key in arrays:
            if key not in listed:
                raise OracleInputError(f"fixture {path}: array {key!r} is not listed in the manifest")
        for key, meta in listed.items():
            if key not in arrays:
                raise OracleInputError(f"fixture {path}: array {key!r} listed in the manifest is missing "
                                       f"from {ARRAYS_NAME}")
            a = arrays[key]
            if list(a.shape) != list(meta["shape"]) or a.dtype.name != meta["dtype"]:
                raise OracleInputError(f"fixture {path}: array {key!r} is {a.dtype.name} {list(a.shape)}, "
                                       f"the manifest says {meta['dtype']} {meta['shape']}")
            if array_checksum(a) != meta["sha256"]:
                raise OracleInputError(f"fixture {path}: checksum mismatch for array {key!r} "
                                       "(the fixture is corrupt or was edited)")
    return Fixture(manifest, arrays)


def load_results(path):
    """A results ``.npz`` (keys as the fixture's outputs), read without pickles."""
    return _load_npz(Path(path), "results file")




def read_suite_index(directory):
    """The fixture names a suite directory's ``suite.json`` lists, in order."""
    index_path = Path(directory) / SUITE_INDEX_NAME
    index = read_json(index_path, OracleInputError, f"{directory} is not a suite: {SUITE_INDEX_NAME} does not exist")
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME or index.get("format_version") != FORMAT_VERSION:
        raise OracleInputError(f"{index_path}: not an {FORMAT_NAME} version {FORMAT_VERSION} suite")
    return list(index["fixtures"])
