r"""The test oracle: versioned golden fixtures for IWAE implementations in other frameworks.

A *fixture* is one directory with two files (format ``iwae-np-oracle``, version 1, specified in
full in ``docs/oracle.md``):

- ``arrays.npz``: every array, numpy's ``.npz`` format, no pickles;
- ``manifest.json``: the format and version, the architecture, the dense-layer convention, the
  parameter names in order, the noise layout, ``k``, the batch size, the seed, the settings of the
  extra bounds, how a hard case was constructed, the iwae_np version, and for every array its
  shape, dtype, role (input or output) and SHA-256 checksum.

The inputs are ``x``, the noise ``eps`` of each stochastic layer and every parameter; the outputs
are everything iwae_np computes from them: the latents, each log-density term, ``log w``, the
normalized weights, every bound (per example and batch mean) and the gradient of each objective
and estimator with respect to every parameter. Another implementation reads the inputs, computes
the outputs, writes them to a results ``.npz`` under the same keys, and :func:`check_results`
compares them (``iwae-np oracle check``).

- :func:`make_fixture`, :func:`write_fixture`, :func:`export_fixture`: one fixture.
- :func:`export_suite`, :data:`SUITE`: the standard suite, including the hard cases.
- :func:`load_fixture`: read and verify (format, version, shapes, dtypes, checksums).
- :func:`check_results`, :func:`compare_arrays`, :data:`TOLERANCES`: the comparison.
"""
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .bounds import ciwae_bound, iwae_bound, miwae_bound, normalized_weights, renyi_bound, vae_bound
from .estimators import (ciwae_gradient, dreg_gradient, miwae_gradient, piwae_gradient, renyi_gradient,
                         rws_gradient, stl_gradient)
from .gradients import iwae_gradient, vae_gradient
from .model import Architecture, PRESETS, init_params, log_weight_terms, network_names, sample_eps
from .tree import flatten_tree, tree_map, unflatten_tree

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "TOLERANCES", "ORACLE_ARCHITECTURES", "HARD_CASES", "SUITE",
           "OracleInputError", "Fixture", "compute_outputs", "make_fixture", "write_fixture", "export_fixture", "export_suite",
           "load_fixture", "load_results", "compare_arrays", "ComparisonRow", "check_results", "check_suite",
           "suite_fixtures", "worst_errors",
           "param_key", "default_settings", "array_checksum", "quantity_group"]

FORMAT_NAME = "iwae-np-oracle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ARRAYS_NAME = "arrays.npz"
SUITE_INDEX_NAME = "suite.json"

#: Agreement, per array: ``max|a - r| <= rtol * max|r| + atol`` (see :func:`compare_arrays`).
TOLERANCES = {"float64": {"rtol": 1e-10, "atol": 1e-14},
              "float32": {"rtol": 1e-4, "atol": 1e-6}}

#: The paper's two architectures (appendix C) and small models of the same structure.
ORACLE_ARCHITECTURES = {
    "one-layer": PRESETS["one-layer"],
    "two-layer": PRESETS["two-layer"],
    "small-one-layer": Architecture(20, (4,), ((8, 6),), ((6, 8),)),
    "small-two-layer": Architecture(20, (5, 3), ((8, 6), (5, 4)), ((6, 8), (4, 5))),
}


class OracleInputError(ValueError):
    """A fixture or results file that cannot be compared: missing key, wrong shape, version, checksum."""


# ---------------------------------------------------------------------------------------------
# names


def param_key(name):
    """npz key of a parameter: ``"q_h1/hidden_0/W"`` -> ``"param.q_h1.hidden_0.W"`` ('/' becomes '.')."""
    return "param." + name.replace("/", ".")


def _grad_key(objective, name):
    return f"grad.{objective}." + name.replace("/", ".")


def quantity_group(key):
    """The quantity an array belongs to: ``grad.<objective>`` for gradients, the key itself otherwise."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "grad" else key


def default_settings(k):
    """Settings of the extra bounds for ``k`` samples.

    ``M`` (MIWAE and PIWAE) is the largest divisor of ``k`` not above ``sqrt(k)``, so ``K = k / M``
    samples per group: k = 50 gives M = 5, K = 10; a prime k (1, 5) gives M = 1 (MIWAE = IWAE).
    """
    M = max(m for m in range(1, math.isqrt(k) + 1) if k % m == 0)
    return {"miwae_M": M, "piwae_M": M, "ciwae_beta": 0.5, "renyi_alpha": 0.5}


# ---------------------------------------------------------------------------------------------
# computing a fixture


#: Gradients stored, name -> function (params, x, eps, settings) -> tree: the ascent direction of the
#: batch-mean bound. The first five by autograd of the objective; the IWAE estimator is ``iwae``
#: itself (paper eq. 14); ``stl``, ``dreg``, ``rws`` estimate IWAE's gradient (theta as ``iwae``);
#: ``piwae`` is IWAE over all k samples for theta, MIWAE(M, K) for phi.
GRADIENTS = {
    "vae": lambda params, x, eps, s: vae_gradient(params, x, eps),
    "iwae": lambda params, x, eps, s: iwae_gradient(params, x, eps),
    "miwae": lambda params, x, eps, s: miwae_gradient(params, x, eps, s["miwae_M"]),
    "ciwae": lambda params, x, eps, s: ciwae_gradient(params, x, eps, s["ciwae_beta"]),
    "renyi": lambda params, x, eps, s: renyi_gradient(params, x, eps, s["renyi_alpha"]),
    "stl": lambda params, x, eps, s: stl_gradient(params, x, eps),
    "dreg": lambda params, x, eps, s: dreg_gradient(params, x, eps),
    "rws": lambda params, x, eps, s: rws_gradient(params, x, eps),
    "piwae": lambda params, x, eps, s: piwae_gradient(params, x, eps, s["piwae_M"]),
}

#: Per-example bounds, name -> function (log_w, settings) -> (batch,).
BOUNDS = {
    "vae": lambda log_w, s: vae_bound(log_w),
    "iwae": lambda log_w, s: iwae_bound(log_w),
    "miwae": lambda log_w, s: miwae_bound(log_w, s["miwae_M"]),
    "ciwae": lambda log_w, s: ciwae_bound(log_w, s["ciwae_beta"]),
    "renyi": lambda log_w, s: renyi_bound(log_w, s["renyi_alpha"]),
}

HARD_CASES = {
    "none": "a random model, x ~ Bernoulli(0.5), eps ~ N(0, I)",
    "log-w-1e4": ("the output layer made confidently wrong: p_x/logits/b += s for every pixel, with "
                  "s = 1e4 / (mean number of zero pixels per image), so log p(x|h1) and log w are near -1e4 "
                  "and exp(log w) underflows to 0 in float64"),
    "extreme-images": "example 0 is the all-zero image, example 1 the all-one image, any others random",
    "degenerate-weights": ("sample 0 of every example has eps = 0 (h at the mean of q), the others are spread "
                           "by raising every q log_sigma bias by c (c = 1, 2, ... until the largest normalized "
                           "weight of every example is above 1 - 1e-8): one sample takes almost all the mass"),
}


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


def _random_problem(arch, k, batch, rng, dtype):
    # Glorot weights and zero biases, then a perturbation so no bias is zero: N(0, 0.3^2) for
    # biases, N(0, 0.3^2 / n_in) for weights (so pre-activations stay O(1) at D = 784)
    params = init_params(arch, rng, dtype)
    params = tree_map(lambda p: p + (0.3 / math.sqrt(p.shape[0] if p.ndim == 2 else 1)
                                     * rng.standard_normal(p.shape)).astype(dtype), params)
    x = (rng.uniform(size=(batch, arch.x_dim)) < 0.5).astype(dtype)
    eps = sample_eps(rng, params, k, batch)
    return params, x, eps


def _construct_case(case, params, x, eps, dtype):
    """Apply a hard case's construction; returns ``(params, x, eps, details)``."""
    if case == "none":
        return params, x, eps, {}
    if case == "log-w-1e4":
        zeros_per_image = float(np.mean(np.sum(x == 0, axis=1)))
        if zeros_per_image == 0:
            raise ValueError("the log-w-1e4 case needs images with zero pixels")
        s = 1e4 / zeros_per_image
        params["p_x"]["logits"]["b"] = params["p_x"]["logits"]["b"] + np.asarray(s, dtype)
        return params, x, eps, {"logits_bias_shift": s}
    if case == "extreme-images":
        if x.shape[0] < 2:
            raise ValueError("the extreme-images case needs batch >= 2 (an all-zero and an all-one image)")
        x = np.concatenate([np.zeros((1, x.shape[1]), dtype), np.ones((1, x.shape[1]), dtype), x[2:]])
        return params, x, eps, {}
    if case == "degenerate-weights":
        if eps[0].shape[0] < 2:
            raise ValueError("the degenerate-weights case needs k >= 2")
        eps = [np.concatenate([np.zeros_like(e[:1]), e[1:]]) for e in eps]
        for c in range(1, 65):
            shifted = {net: {layer: dict(v) for layer, v in layers.items()} for net, layers in params.items()}
            for net in shifted:
                if net.startswith("q_"):
                    shifted[net]["log_sigma"]["b"] = shifted[net]["log_sigma"]["b"] + np.asarray(c, dtype)
            top = float(np.min(np.max(normalized_weights(log_weight_terms(shifted, x, eps)["log_w"]), axis=0)))
            if top > 1 - 1e-8:  # (compared in float64: 1 - 1e-8 is 1 in float32)
                return shifted, x, eps, {"log_sigma_bias_shift": c, "min_max_normalized_weight": float(top)}
        raise ValueError("could not make the weights degenerate")
    raise ValueError(f"unknown hard case {case!r}; choose one of {sorted(HARD_CASES)}")


def _architecture_manifest(arch):
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


def compute_outputs(params, x, eps, settings):
    """Every output quantity of a fixture, by key, as iwae_np computes it from the inputs (docs/oracle.md section 3)."""
    out = log_weight_terms(params, x, eps)
    log_w = np.asarray(out["log_w"])  # (k, batch)
    outputs = {f"h.h{l}": np.asarray(h) for l, h in enumerate(out["h"], start=1)}
    outputs.update({f"term.{name}": np.asarray(term) for name, term in out["terms"].items()})
    outputs["log_w"] = log_w
    outputs["normalized_weights"] = np.asarray(normalized_weights(log_w))
    for bname, bound in BOUNDS.items():
        per_example = np.asarray(bound(log_w, settings))  # (batch,)
        outputs[f"bound.{bname}"] = per_example
        outputs[f"bound_mean.{bname}"] = np.mean(per_example)
    for gname, gradient in GRADIENTS.items():
        for pname, value in flatten_tree(gradient(params, x, eps, settings)).items():
            outputs[_grad_key(gname, pname)] = np.asarray(value)
    return outputs


def make_fixture(arch, k, batch, seed, dtype="float64", case="none", settings=None, name=None):
    """Compute a fixture in memory: a random problem from ``seed``, the hard case, every quantity."""
    arch_name = arch if isinstance(arch, str) else None
    if isinstance(arch, str):
        if arch not in ORACLE_ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ORACLE_ARCHITECTURES)}")
        arch = ORACLE_ARCHITECTURES[arch]
    dtype = np.dtype(dtype)
    if dtype.name not in TOLERANCES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if int(k) != k or k < 1 or int(batch) != batch or batch < 1:
        raise ValueError(f"k and batch must be integers >= 1, got k = {k}, batch = {batch}")
    if case not in HARD_CASES:
        raise ValueError(f"unknown hard case {case!r}; choose one of {sorted(HARD_CASES)}")
    settings = {**default_settings(k), **(settings or {})}
    unknown = sorted(set(settings) - set(default_settings(1)))
    if unknown:
        raise ValueError(f"unknown settings {unknown}; the settings are {sorted(default_settings(1))}")
    for m in ("miwae_M", "piwae_M"):
        if k % settings[m]:
            raise ValueError(f"{m} = {settings[m]} must divide k = {k}")
    rng = np.random.default_rng(seed)
    params, x, eps = _random_problem(arch, k, batch, rng, dtype)
    params, x, eps, details = _construct_case(case, params, x, eps, dtype)
    L = arch.n_stochastic

    arrays, roles = {}, {}

    def put(key, value, role):
        value = np.asarray(value)
        if value.dtype != dtype:
            raise AssertionError(f"{key} has dtype {value.dtype}, expected {dtype}")
        arrays[key], roles[key] = np.array(value, order="C"), role  # (ascontiguousarray makes 0-d 1-d)

    put("x", x, "input")
    for l in range(1, L + 1):
        put(f"eps.h{l}", eps[l - 1], "input")
    flat = flatten_tree(params)
    for pname, value in flat.items():
        put(param_key(pname), value, "input")
    for key, value in compute_outputs(params, x, eps, settings).items():
        put(key, value, "output")
    log_w = arrays["log_w"]

    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": name or f"{arch_name or 'custom'}_k{k}_b{batch}_s{seed}" + ("" if case == "none" else f"_{case}"),
        "iwae_np_version": __version__,
        "dtype": dtype.name,
        "seed": int(seed),
        "generator": "numpy.random.default_rng(seed) (PCG64); informative only: the arrays are the data",
        "k": int(k),
        "batch": int(batch),
        "architecture_name": arch_name,
        "architecture": _architecture_manifest(arch),
        "dense_layer": {"formula": "y = x @ W + b", "W_shape": "(n_in, n_out)", "b_shape": "(n_out,)",
                        "note": "W is the transpose of torch.nn.Linear.weight"},
        "parameters": [{"name": pname, "key": param_key(pname), "shape": list(value.shape)}
                       for pname, value in flat.items()],
        "eps": [{"key": f"eps.h{l}", "layer": f"h{l}", "shape": [int(k), int(batch), arch.latent_dims[l - 1]],
                 "axes": ["sample i", "example b", "unit j"],
                 "use": (f"h{l}[i, b] = mu(x[b]) + exp(log_sigma(x[b])) * eps.h{l}[i, b]" if l == 1 else
                         f"h{l}[i, b] = mu(h{l - 1}[i, b]) + exp(log_sigma(h{l - 1}[i, b])) * eps.h{l}[i, b]")}
                for l in range(1, L + 1)],
        "settings": settings,
        "bounds": list(BOUNDS),
        "gradients": list(GRADIENTS),
        "case": {"name": case, "construction": HARD_CASES[case], **details,
                 "log_w_min": float(np.min(log_w)), "log_w_max": float(np.max(log_w)),
                 "min_max_normalized_weight": float(np.min(np.max(normalized_weights(log_w), axis=0)))},
        "tolerance": {**TOLERANCES[dtype.name],
                      "rule": "max|a - r| <= rtol * max|r| + atol per array, r the fixture's array"},
        "arrays": {key: {"role": roles[key], "shape": list(value.shape), "dtype": value.dtype.name,
                         "sha256": array_checksum(value)} for key, value in arrays.items()},
    }
    return Fixture(manifest, arrays)


def array_checksum(a):
    """SHA-256 (hex) of the array's raw bytes: C order, little-endian, its own dtype."""
    a = np.asarray(a)
    return hashlib.sha256(np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C").tobytes()).hexdigest()


def write_fixture(fixture, directory):
    """Write ``manifest.json`` and ``arrays.npz`` into ``directory`` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / ARRAYS_NAME, **fixture.arrays)
    tmp = directory / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(fixture.manifest, indent=1) + "\n")
    os.replace(tmp, directory / MANIFEST_NAME)
    return directory


def export_fixture(directory, arch, k, batch, seed, dtype="float64", case="none", settings=None, name=None):
    """:func:`make_fixture` then :func:`write_fixture`; returns the manifest."""
    fixture = make_fixture(arch, k, batch, seed, dtype, case, settings, name)
    write_fixture(fixture, directory)
    return fixture.manifest


def _suite():
    # (the hard cases reuse the shapes of standard fixtures: a compiling adapter compiles fewer graphs)
    specs = []
    for arch in ("small-one-layer", "small-two-layer"):
        for k, batch in ((1, 3), (5, 1), (5, 3), (50, 3)):
            specs.append({"arch": arch, "k": k, "batch": batch})
        specs.append({"arch": arch, "k": 5, "batch": 3, "case": "log-w-1e4"})
        specs.append({"arch": arch, "k": 5, "batch": 3, "case": "extreme-images"})
        specs.append({"arch": arch, "k": 50, "batch": 3, "case": "degenerate-weights"})
    # the paper's sizes, D = 784 (large files: 10 copies of 0.4 to 0.5 M parameters)
    specs.append({"arch": "two-layer", "k": 5, "batch": 2})
    specs.append({"arch": "one-layer", "k": 5, "batch": 2, "case": "log-w-1e4"})
    for i, spec in enumerate(specs):
        spec["seed"] = 1000 + i
        case = spec.get("case", "none")
        spec["name"] = (f"{i:02d}_{spec['arch']}_k{spec['k']}_b{spec['batch']}"
                        + ("" if case == "none" else f"_{case}"))
    return specs


#: The standard suite: both architectures (small and paper-sized), k in {1, 5, 50}, batch 1 and 3, hard cases.
SUITE = _suite()


def export_suite(directory, dtype="float64", names=None):
    """Write every fixture of :data:`SUITE` (or those in ``names``) under ``directory``, plus ``suite.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specs = [s for s in SUITE if names is None or s["name"] in names]
    written = []
    for spec in specs:
        export_fixture(directory / spec["name"], spec["arch"], spec["k"], spec["batch"], spec["seed"], dtype,
                       spec.get("case", "none"), name=spec["name"])
        written.append(spec["name"])
    index = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "iwae_np_version": __version__,
             "dtype": np.dtype(dtype).name, "fixtures": written}
    (directory / SUITE_INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n")
    return written


# ---------------------------------------------------------------------------------------------
# reading and checking


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


def _read_json(path, missing_message):
    """Parse the JSON file ``path``; OracleInputError with ``missing_message`` if it is absent, or naming the file if it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise OracleInputError(missing_message) from None
    except json.JSONDecodeError as err:
        raise OracleInputError(f"{path} is not valid JSON: {err}") from None


def load_fixture(path, verify=True):
    """Read a fixture directory; with ``verify``, check format, version, and each array's shape, dtype, checksum."""
    manifest_path, arrays_path = _fixture_paths(path)
    manifest = _read_json(manifest_path, f"fixture manifest {manifest_path} does not exist")
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


@dataclass
class ComparisonRow:
    key: str
    shape: tuple
    max_abs_reference: float
    max_abs_error: float
    max_rel_error: float
    rtol: float
    atol: float

    @property
    def passed(self):
        return bool(self.max_abs_error <= self.rtol * self.max_abs_reference + self.atol)


def compare_arrays(test, reference, rtol, atol, key=""):
    r"""One row of the comparison of ``test`` against the fixture's ``reference``.

    .. math::
        e_{abs} = \max_j |a_j - r_j|, \qquad e_{rel} = e_{abs} / \max_j |r_j|, \qquad
        \text{agree} \iff e_{abs} \le rtol \cdot \max_j |r_j| + atol

    computed in float64 (``e_rel`` is 0 when both are 0 and inf when only ``max|r|`` is). Non-finite
    entries agree only where both arrays hold the same value (a NaN never agrees).
    """
    a = np.asarray(test, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    finite = np.isfinite(r)
    same_nonfinite = bool(np.all((a[~finite] == r[~finite]))) and bool(np.all(np.isfinite(a[finite])))
    if not same_nonfinite:
        abs_err = math.inf
    else:
        abs_err = float(np.max(np.abs(a[finite] - r[finite]))) if np.any(finite) else 0.0
    scale = float(np.max(np.abs(r[finite]))) if np.any(finite) else 0.0
    rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else math.inf)
    return ComparisonRow(key, tuple(r.shape), scale, abs_err, rel_err, rtol, atol)


def check_results(fixture, results, rtol=None, atol=None):
    """Compare every output of ``fixture`` with ``results`` (a dict of arrays); a list of rows.

    Tolerances default to the fixture's dtype (:data:`TOLERANCES`). A missing key or a shape that
    differs is an :class:`OracleInputError`; keys of ``results`` the fixture does not have are ignored.
    """
    if not isinstance(fixture, Fixture):
        fixture = load_fixture(fixture)
    if not isinstance(results, dict):
        results = load_results(results)
    tol = TOLERANCES[fixture.manifest["dtype"]]
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    outputs = fixture.outputs
    missing = [key for key in outputs if key not in results]
    if missing:
        raise OracleInputError(f"results lack {len(missing)} of the fixture's {len(outputs)} quantities, "
                               f"e.g. missing key {missing[0]!r}" + (f" (and {missing[1:4]})" if len(missing) > 1 else ""))
    rows = []
    for key in outputs:
        ref, got = fixture.arrays[key], np.asarray(results[key])
        if got.shape != ref.shape:
            raise OracleInputError(f"shape mismatch for {key!r}: results have {list(got.shape)}, "
                                   f"the fixture has {list(ref.shape)}")
        if not (np.issubdtype(got.dtype, np.floating) or np.issubdtype(got.dtype, np.integer)):
            raise OracleInputError(f"results key {key!r} has dtype {got.dtype}, expected a floating array")
        rows.append(compare_arrays(got, ref, rtol, atol, key))
    return rows


def suite_fixtures(directory):
    """The fixture names a suite directory's ``suite.json`` lists, in order."""
    index_path = Path(directory) / SUITE_INDEX_NAME
    index = _read_json(index_path, f"{directory} is not a suite: {SUITE_INDEX_NAME} does not exist")
    if index.get("format") != FORMAT_NAME or index.get("format_version") != FORMAT_VERSION:
        raise OracleInputError(f"{index_path}: not an {FORMAT_NAME} version {FORMAT_VERSION} suite")
    return list(index["fixtures"])


def check_suite(directory, results_directory, rtol=None, atol=None):
    """:func:`check_results` for every fixture of a suite against ``<results_directory>/<name>.npz``;
    ``{name: rows}``."""
    directory, results_directory = Path(directory), Path(results_directory)
    return {name: check_results(load_fixture(directory / name), load_results(results_directory / f"{name}.npz"),
                                rtol, atol)
            for name in suite_fixtures(directory)}


def worst_errors(rows):
    """``{quantity group: largest relative error}`` over comparison rows (see :func:`quantity_group`)."""
    worst = {}
    for r in rows:
        group = quantity_group(r.key)
        worst[group] = max(worst.get(group, 0.0), r.max_rel_error)
    return worst
