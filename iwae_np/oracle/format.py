"""The fixture format (``iwae-np-oracle``, version 1; ``docs/oracle.md``): names, checksums, reading and writing.

A *fixture* is one directory with two files:

- ``arrays.npz``: every array, numpy's ``.npz`` format, no pickles;
- ``manifest.json``: the format and version, the architecture, the dense-layer convention, the
  parameter names in order, the noise layout, ``k``, the batch size, the seed, the settings of the
  extra bounds, how a hard case was constructed, the iwae_np version, and for every array its
  shape, dtype, role (input or output) and SHA-256 checksum.
"""
import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..files import atomic_write, read_json, write_json
from ..model import network_names
from ..tree import unflatten_tree
from .keys import manifest_output_shapes, param_key

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SUITE_VERSION", "MANIFEST_NAME", "ARRAYS_NAME", "SUITE_INDEX_NAME",
           "TOLERANCES", "OracleInputError", "Fixture", "array_checksum",
           "architecture_manifest", "write_fixture", "load_fixture", "load_results", "load_npz", "read_suite_index",
           "expected_outputs", "check_real_arrays"]

FORMAT_NAME = "iwae-np-oracle"
FORMAT_VERSION = 1
#: The standard suite's version (``suite.json``'s ``suite_version``; absent means 1): 2 changed the suite's
#: CIWAE beta and Renyi alpha from 0.5 to 0.3 and 0.2 and added the softplus-threshold fixtures (CHANGELOG.md).
SUITE_VERSION = 2
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

    @property
    def tolerance(self):
        """``{"rtol", "atol"}`` of the fixture's arrays' own dtype (never of a manifest field alone, see :func:`load_fixture`)."""
        dtypes = {np.asarray(a).dtype.name for a in self.arrays.values()}
        if len(dtypes) != 1 or next(iter(dtypes)) not in TOLERANCES:
            raise OracleInputError(f"fixture {self.manifest.get('name')!r} holds arrays of dtypes {sorted(dtypes)}; "
                                   "a fixture is all float32 or all float64")
        return dict(TOLERANCES[dtypes.pop()])

    def model_inputs(self):
        """``(params, x, eps)`` for iwae_np, read from the arrays by the manifest."""
        m, a = self.manifest, self.arrays
        params = unflatten_tree({p["name"]: a[p["key"]] for p in m["parameters"]})
        return params, a["x"], [a[e["key"]] for e in m["eps"]]


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


def _written_by_the_oracle(path):
    """Whether the JSON file at ``path`` is one the oracle wrote: an object whose ``format`` is :data:`FORMAT_NAME`."""
    try:
        content = read_json(path)
    except ValueError:
        return False
    return isinstance(content, dict) and content.get("format") == FORMAT_NAME


def check_fixture_directory(directory, index=False):
    """Refuse, before anything is written, a ``directory`` where writing a fixture (``index``: a suite's
    ``suite.json``) would replace a file the oracle did not write (:class:`OracleInputError` naming it): a
    ``manifest.json`` or ``suite.json`` that is not the oracle's, or an ``arrays.npz`` without the oracle's
    manifest beside it. A fixture the oracle wrote there before is replaced."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OracleInputError(f"{directory} is a file; a fixture is written into a directory")
    manifest, arrays = directory / MANIFEST_NAME, directory / ARRAYS_NAME
    names = [SUITE_INDEX_NAME] if index else [MANIFEST_NAME]
    for name in names:
        if (directory / name).exists() and not _written_by_the_oracle(directory / name):
            raise OracleInputError(f"{directory / name} was not written by iwae-np's oracle; it is left alone "
                                   "(write the fixtures into another directory)")
    if not index and arrays.exists() and not (manifest.exists() and _written_by_the_oracle(manifest)):
        raise OracleInputError(f"{arrays} is not beside an iwae-np fixture's {MANIFEST_NAME}; it is left alone "
                               "(write the fixture into another directory)")


def write_fixture(fixture, directory):
    """Write ``manifest.json`` and ``arrays.npz`` into ``directory`` (created if needed); never over a file the
    oracle did not write (:func:`check_fixture_directory`)."""
    directory = Path(directory)
    check_fixture_directory(directory)
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


_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def load_npz(path, what):
    """Every array of the ``.npz`` at ``path``, read without pickles; a one-line :class:`OracleInputError` naming
    ``what`` and the file when it is missing, a directory, empty, truncated, corrupt, a single ``.npy`` array,
    or holds an object array."""
    path = Path(path)
    if path.is_dir():
        raise OracleInputError(f"{what} {path} is a directory, expected a .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise OracleInputError(f"{what} {path} does not exist") from None
    except _NPZ_ERRORS as err:  # empty (EOFError), not a zip, a truncated zip
        raise OracleInputError(f"{what} {path} is not a readable .npz without pickles: {_reason(err)}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise OracleInputError(f"{what} {path} is a single .npy array, not a .npz of named arrays "
                               "(write it with numpy.savez(path, **{key: array}))")
    try:
        with loaded as data:
            return {key: data[key] for key in data.files}
    except _NPZ_ERRORS as err:  # a member that is truncated, fails its CRC, or holds objects
        raise OracleInputError(f"{what} {path} is not a readable .npz without pickles: {_reason(err)}") from None


def _reason(err):
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _malformed(manifest_path, what):
    return OracleInputError(f"{manifest_path}: malformed manifest: {what}")


def _check_manifest(manifest, manifest_path):
    """The manifest fields the checker relies on exist and have the right types; the dtype is a fixture dtype."""
    if not isinstance(manifest.get("arrays"), dict) or not manifest["arrays"]:
        raise _malformed(manifest_path, "'arrays' must be a non-empty object")
    for key, meta in manifest["arrays"].items():
        if (not isinstance(meta, dict) or meta.get("role") not in ("input", "output")
                or not isinstance(meta.get("shape"), list) or not isinstance(meta.get("dtype"), str)
                or not isinstance(meta.get("sha256"), str)):
            raise _malformed(manifest_path, f"array {key!r} needs role (input or output), shape, dtype and sha256")
    dtype = manifest.get("dtype")
    if dtype not in TOLERANCES:
        raise OracleInputError(f"{manifest_path}: fixture dtype {dtype!r} is not supported; "
                               f"fixtures are {' or '.join(sorted(TOLERANCES))}")
    for field in ("parameters", "eps"):
        if not isinstance(manifest.get(field), list):
            raise _malformed(manifest_path, f"{field!r} must be a list")
    for field in ("k", "batch"):
        if isinstance(manifest.get(field), bool) or not isinstance(manifest.get(field), int) or manifest[field] < 1:
            raise _malformed(manifest_path, f"{field!r} must be an integer >= 1")
    if not isinstance(manifest.get("settings"), dict):
        raise _malformed(manifest_path, "'settings' must be an object")
    arch = manifest.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("latent_dims"), list):
        raise _malformed(manifest_path, "'architecture' must be an object with 'latent_dims'")


def _check_fields_against_arrays(manifest, arrays, path):
    """The manifest fields a verdict depends on and that no checksum covers directly (``k``, ``batch``, the
    layer sizes, the parameter keys) must be those of the checksummed arrays: editing ``k`` from 5 to 6 must
    not let a candidate drawing 6 samples pass (issue 20). The settings are checked against the stored bounds
    by :func:`iwae_np.oracle.quantities.verified_settings`."""
    def edited(what):
        return OracleInputError(f"fixture {path}: the manifest's {what}: the manifest was edited")

    eps = [arrays.get(e.get("key")) if isinstance(e, dict) else None for e in manifest["eps"]]
    if not eps or any(e is None or np.ndim(e) != 3 for e in eps) or "x" not in arrays:
        raise edited("'eps' does not list the noise arrays (k, batch, d_l) of every stochastic layer")
    if manifest["k"] != eps[0].shape[0]:
        raise edited(f"k = {manifest['k']} is not the noise's {eps[0].shape[0]} samples")
    if manifest["batch"] != np.shape(arrays["x"])[0]:
        raise edited(f"batch = {manifest['batch']} is not x's {np.shape(arrays['x'])[0]} examples")
    arch = manifest["architecture"]
    dims = [e.shape[-1] for e in eps]
    if list(arch["latent_dims"]) != dims or arch.get("n_stochastic_layers") != len(dims):
        raise edited(f"latent sizes {arch['latent_dims']} (n_stochastic_layers {arch.get('n_stochastic_layers')}) "
                     f"are not the noise's {dims}")
    for e, a in zip(manifest["eps"], eps):
        if list(e.get("shape", [])) != list(a.shape):
            raise edited(f"noise {e.get('key')!r} shape {e.get('shape')} is not the array's {list(a.shape)}")
    for p in manifest["parameters"]:
        if not isinstance(p, dict) or p.get("key") != param_key(str(p.get("name"))) or p["key"] not in arrays:
            raise edited(f"parameter {p!r} does not name its array (key = param. + name with '/' as '.')")
        if list(p.get("shape", [])) != list(arrays[p["key"]].shape):
            raise edited(f"parameter {p['name']!r} shape {p.get('shape')} is not the array's "
                         f"{list(arrays[p['key']].shape)}")


def expected_outputs(manifest):
    """The output keys every fixture of the manifest's architecture holds (section 3 of docs/oracle.md, names from
    :mod:`iwae_np.oracle.keys`); the checker refuses a manifest that marks fewer (relabelling an output as an
    input must not drop it from the comparison)."""
    return set(manifest_output_shapes(manifest))


def load_fixture(path, verify=True):
    """Read a fixture directory; with ``verify``, check format, version, and each array's shape, dtype, checksum.

    The tolerance a fixture is checked at comes from its arrays' dtype (:attr:`Fixture.tolerance`), and the
    manifest's ``dtype`` must be that dtype: editing the manifest's dtype (whose checksums stay valid) can
    only make the fixture unreadable, never loosen its tolerance.
    """
    manifest_path, arrays_path = _fixture_paths(path)
    manifest = read_json(manifest_path, OracleInputError, f"fixture manifest {manifest_path} does not exist")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise OracleInputError(f"{manifest_path}: not an {FORMAT_NAME} manifest "
                               f"(format = {manifest.get('format') if isinstance(manifest, dict) else None!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise OracleInputError(f"{manifest_path}: fixture format version {manifest.get('format_version')!r} "
                               f"is not supported; this iwae-np ({__version__}) reads version {FORMAT_VERSION}")
    _check_manifest(manifest, manifest_path)
    arrays = load_npz(arrays_path, "fixture arrays")
    if verify:
        listed = manifest["arrays"]
        try:
            unlisted = sorted(expected_outputs(manifest) - {k for k, v in listed.items() if v["role"] == "output"})
        except (KeyError, TypeError):
            raise _malformed(manifest_path, "'eps' and 'parameters' must list the noise and the parameters") from None
        if unlisted:
            raise OracleInputError(f"{manifest_path}: {len(unlisted)} of the fixture's output quantities are not "
                                   f"listed as outputs, e.g. {unlisted[0]!r}: the manifest was edited or is "
                                   "not a complete fixture")
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
            if a.dtype.name != manifest["dtype"]:
                raise OracleInputError(f"fixture {path}: the manifest's dtype is {manifest['dtype']} but array "
                                       f"{key!r} is {a.dtype.name}; the tolerance follows the arrays, so the "
                                       "manifest was edited or the fixture is corrupt")
            if array_checksum(a) != meta["sha256"]:
                raise OracleInputError(f"fixture {path}: checksum mismatch for array {key!r} "
                                       "(the fixture is corrupt or was edited)")
        _check_fields_against_arrays(manifest, arrays, path)
    return Fixture(manifest, arrays)


def check_real_arrays(results, what, keys=None):
    """Refuse (one line) any array of ``results`` (those in ``keys``, default all) that is not real numbers:
    strings, complex numbers, booleans, structured or object arrays. Every mode reads numbers; a string "1.5"
    or a complex value must be an error, not a comparison or a TypeError."""
    for key in (results if keys is None else keys):
        dtype = np.asarray(results[key]).dtype
        if dtype.kind not in "fiu":
            kind = {"U": "strings", "S": "bytes", "c": "complex numbers", "b": "booleans", "V": "a structured dtype",
                    "O": "objects"}.get(dtype.kind, f"dtype {dtype}")
            raise OracleInputError(f"{what}: {key!r} holds {kind} ({dtype}); expected an array of real numbers")
    return results


def load_results(path):
    """A results ``.npz`` (keys as the fixture's outputs), read without pickles."""
    return load_npz(Path(path), "results file")


def read_suite_index(directory):
    """The fixture names a suite directory's ``suite.json`` lists, in order."""
    index_path = Path(directory) / SUITE_INDEX_NAME
    index = read_json(index_path, OracleInputError, f"{directory} is not a suite: {SUITE_INDEX_NAME} does not exist")
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME or index.get("format_version") != FORMAT_VERSION:
        raise OracleInputError(f"{index_path}: not an {FORMAT_NAME} version {FORMAT_VERSION} suite")
    names = index.get("fixtures")
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                              for n in names):
        raise OracleInputError(f"{index_path}: 'fixtures' must be a list of fixture directory names")
    if not names:
        raise OracleInputError(f"{index_path}: the suite lists no fixtures; an empty suite checks nothing")
    return list(names)
