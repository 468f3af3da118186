"""Making fixtures: a random problem, a hard case, every quantity; the standard suite."""
from pathlib import Path

import numpy as np

from .. import __version__
from ..bounds import normalized_weights
from ..files import write_json
from ..model import PRESETS, Architecture
from ..tree import flatten_tree
from ..verify.problems import random_problem
from .format import (FORMAT_NAME, FORMAT_VERSION, SUITE_INDEX_NAME, SUITE_VERSION, TOLERANCES, Fixture, architecture_manifest,
                     array_checksum, check_fixture_directory, write_fixture)
from .keys import param_key
from .budget import estimate, model_width, refuse_if_too_large
from .hard_cases import HARD_CASES, construct_case
from .quantities import BOUNDS, GRADIENTS, check_settings, compute_outputs, default_settings

__all__ = ["ORACLE_ARCHITECTURES", "SUITE", "make_fixture", "export_fixture", "export_suite"]

#: The paper's two architectures (appendix C) and small models of the same structure.
ORACLE_ARCHITECTURES = {
    "one-layer": PRESETS["one-layer"],
    "two-layer": PRESETS["two-layer"],
    "small-one-layer": Architecture(20, (4,), ((8, 6),), ((6, 8),)),
    "small-two-layer": Architecture(20, (5, 3), ((8, 6), (5, 4)), ((6, 8), (4, 5))),
}


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
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"the seed must be an integer >= 0, got {seed!r}")
    if case not in HARD_CASES:
        raise ValueError(f"unknown hard case {case!r}; choose one of {sorted(HARD_CASES)}")
    settings = check_settings({**default_settings(k), **(settings or {})}, k, ValueError)
    rows, width = int(k) * int(batch), model_width(arch.x_dim, arch.latent_dims, arch.q_hidden, arch.p_hidden)
    nbytes, seconds = estimate(rows, width)
    refuse_if_too_large(f"a fixture with k = {k} and batch = {batch} ({arch_name or 'custom'})", nbytes, seconds,
                        "use a smaller k or batch")
    params, x, eps = random_problem(arch, k, batch, np.random.default_rng(seed), dtype, fan_in=True)
    params, x, eps, details = construct_case(case, params, x, eps, dtype)
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
        "architecture": architecture_manifest(arch),
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
    # suite version 2: appended, so the first 16 names and seeds stay those of version 1
    for arch in ("small-one-layer", "small-two-layer"):
        specs.append({"arch": arch, "k": 5, "batch": 3, "case": "softplus-threshold"})
    for i, spec in enumerate(specs):
        spec["seed"] = 1000 + i
        case = spec.get("case", "none")
        spec["name"] = (f"{i:02d}_{spec['arch']}_k{spec['k']}_b{spec['batch']}"
                        + ("" if case == "none" else f"_{case}"))
    return specs


#: The standard suite (version :data:`~iwae_np.oracle.format.SUITE_VERSION`): both architectures (small and
#: paper-sized), k in {1, 5, 50}, batch 1 and 3, the hard cases.
SUITE = _suite()


def export_suite(directory, dtype="float64", names=None):
    """Write every fixture of :data:`SUITE` (or those in ``names``) under ``directory``, plus ``suite.json``."""
    directory = Path(directory)
    specs = [s for s in SUITE if names is None or s["name"] in names]
    check_fixture_directory(directory, index=True)  # every place written, checked before the first is
    for spec in specs:
        check_fixture_directory(directory / spec["name"])
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in specs:
        export_fixture(directory / spec["name"], spec["arch"], spec["k"], spec["batch"], spec["seed"], dtype,
                       spec.get("case", "none"), name=spec["name"])
        written.append(spec["name"])
    index = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "suite_version": SUITE_VERSION,
             "iwae_np_version": __version__,
             "dtype": np.dtype(dtype).name, "fixtures": written}
    write_json(directory / SUITE_INDEX_NAME, index)
    return written


