"""An independent JAX implementation of the IWAE model, checked against iwae-np oracle fixtures.

Written from docs/oracle.md alone: it imports nothing from iwae_np. For each fixture it reads
manifest.json and arrays.npz, computes every output quantity with jax.numpy (64-bit enabled,
the fixture's dtype, gradients by jax.grad, no jit) and writes a results .npz under the same keys:

    python examples/jax_adapter.py FIXTURE_OR_SUITE_DIR [...] --out RESULTS_DIR
    iwae-np oracle check FIXTURE RESULTS_DIR/<fixture name>.npz

A directory holding suite.json stands for all the fixtures it lists.
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

# Each fixture has new shapes, so each one is a fresh XLA compilation: cheap LLVM passes make
# that several times faster (the arithmetic is the same IEEE float64).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")
import jax.numpy as jnp  # noqa: E402

LOG_2PI = math.log(2.0 * math.pi)
stop = jax.lax.stop_gradient


# ---------------------------------------------------------------------------------------------
# the model (docs/oracle.md, "The model"); parameters are a flat dict {"q_h1/hidden_0/W": array}


def softplus(l):
    return jnp.maximum(l, 0) + jnp.log1p(jnp.exp(-jnp.abs(l)))  # exact log(1 + e^l)


def logsumexp(a, axis):
    m = stop(jnp.max(a, axis=axis, keepdims=True))
    return jnp.squeeze(m, axis) + jnp.log(jnp.sum(jnp.exp(a - m), axis=axis))


def network(params, name, layers, a):
    """tanh hidden layers, then the linear heads (y = a @ W + b); returns {head: output}."""
    out = {}
    for layer in layers:
        W, b = params[f"{name}/{layer['name']}/W"], params[f"{name}/{layer['name']}/b"]
        if layer["activation"] == "tanh":
            a = jnp.tanh(a @ W + b)
        else:
            out[layer["name"]] = a @ W + b
    return out


def gaussian_log_density(h, mu, log_sigma):
    z = (h - mu) / jnp.exp(log_sigma)
    return -0.5 * jnp.sum(LOG_2PI + 2 * log_sigma + z * z, axis=-1)


def log_weight_terms(params, nets, x, eps, q_params=None, stop_h=False):
    """h, the density terms, log w and the summed log q; ``q_params`` evaluates log q (sampling
    still uses ``params``); ``stop_h`` stops the latents before any density is evaluated."""
    q_params = params if q_params is None else q_params
    L = len(eps)
    h, below = [], x
    for l in range(1, L + 1):
        out = network(params, f"q_h{l}", nets[f"q_h{l}"], below)
        below = out["mu"] + jnp.exp(out["log_sigma"]) * eps[l - 1]  # (k, batch, d_l)
        h.append(below)
    if stop_h:
        h = [stop(hl) for hl in h]
    terms = {}
    logits = network(params, "p_x", nets["p_x"], h[0])["logits"]
    terms["log_p_x_given_h1"] = jnp.sum(x * logits - softplus(logits), axis=-1)
    for l in range(1, L):
        out = network(params, f"p_h{l}", nets[f"p_h{l}"], h[l])
        terms[f"log_p_h{l}_given_h{l + 1}"] = gaussian_log_density(h[l - 1], out["mu"], out["log_sigma"])
    terms[f"log_p_h{L}"] = -0.5 * jnp.sum(LOG_2PI + h[L - 1] * h[L - 1], axis=-1)
    below = x
    for l in range(1, L + 1):
        out = network(q_params, f"q_h{l}", nets[f"q_h{l}"], below)
        given = "x" if l == 1 else f"h{l - 1}"
        terms[f"log_q_h{l}_given_{given}"] = gaussian_log_density(h[l - 1], out["mu"], out["log_sigma"])
        below = h[l - 1]
    log_p = sum(t for n, t in terms.items() if n.startswith("log_p"))
    log_q = sum(t for n, t in terms.items() if n.startswith("log_q"))
    return h, terms, log_p - log_q, log_q


# ---------------------------------------------------------------------------------------------
# bounds (docs/oracle.md, "Bounds"): log_w (k, batch) -> (batch,)


def vae_bound(log_w):
    return jnp.mean(log_w, axis=0)


def iwae_bound(log_w):
    return logsumexp(log_w, 0) - math.log(log_w.shape[0])


def miwae_bound(log_w, M):
    k, batch = log_w.shape
    groups = log_w.reshape(M, k // M, batch)  # sample i = m K + j
    return jnp.mean(logsumexp(groups, 1) - math.log(k // M), axis=0)


def ciwae_bound(log_w, beta):
    return beta * vae_bound(log_w) + (1 - beta) * iwae_bound(log_w)


def renyi_bound(log_w, alpha):
    if alpha == 1:  # the limit alpha -> 1 is the VAE estimate
        return vae_bound(log_w)
    return (logsumexp((1 - alpha) * log_w, 0) - math.log(log_w.shape[0])) / (1 - alpha)


def bound_functions(s):
    return {"vae": vae_bound, "iwae": iwae_bound, "miwae": lambda lw: miwae_bound(lw, s["miwae_M"]),
            "ciwae": lambda lw: ciwae_bound(lw, s["ciwae_beta"]),
            "renyi": lambda lw: renyi_bound(lw, s["renyi_alpha"])}


# ---------------------------------------------------------------------------------------------
# the adapter


def read_fixture(path):
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != "iwae-np-oracle" or manifest.get("format_version") != 1:
        raise SystemExit(f"{path}: not an iwae-np-oracle version 1 fixture")
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return manifest, arrays


def softmax0(a):
    e = jnp.exp(a - jnp.max(a, axis=0, keepdims=True))
    return e / jnp.sum(e, axis=0, keepdims=True)


def compute(manifest, arrays):
    """Every output quantity of the fixture, as numpy arrays by key: one jit-compiled function."""
    dtype = {"float64": jnp.float64, "float32": jnp.float32}[manifest["dtype"]]
    x = jnp.asarray(arrays["x"], dtype)
    eps = [jnp.asarray(arrays[e["key"]], dtype) for e in manifest["eps"]]
    params = {p["name"]: jnp.asarray(arrays[p["key"]], dtype) for p in manifest["parameters"]}
    # one compiled function per model structure; jit's own cache then reuses it for equal shapes
    structure = {key: manifest[key] for key in ("dtype", "architecture", "parameters", "eps", "settings",
                                                 "gradients")}
    key = json.dumps({**structure, "parameters": [p["name"] for p in manifest["parameters"]],
                      "eps": [e["key"] for e in manifest["eps"]]}, sort_keys=True)
    if key not in _COMPILED:
        _COMPILED[key] = jax.jit(lambda params, x, eps: quantities(structure, params, x, eps))
    results = _COMPILED[key](params, x, eps)
    return {key: np.asarray(value) for key, value in results.items()}


_COMPILED = {}


def quantities(manifest, params, x, eps):
    nets = {net["name"]: net["layers"] for net in manifest["architecture"]["networks"]}
    names = [p["name"] for p in manifest["parameters"]]
    s = manifest["settings"]
    bounds = bound_functions(s)
    L = len(eps)
    results = {}

    h, terms, log_w, _ = log_weight_terms(params, nets, x, eps)
    for l in range(1, L + 1):
        results[f"h.h{l}"] = h[l - 1]
    for n, term in terms.items():
        results[f"term.{n}"] = term
    results["log_w"] = log_w
    w_tilde = softmax0(log_w)  # (k, batch)
    results["normalized_weights"] = w_tilde
    batch = log_w.shape[1]
    for n, f in bounds.items():
        results[f"bound.{n}"] = f(log_w)
        results[f"bound_mean.{n}"] = jnp.mean(results[f"bound.{n}"])

    # Each gradient is a weighted sum over samples of per-sample gradients: one vector-Jacobian
    # product (reverse-mode autodiff) of per-sample values with a cotangent. Three per-sample
    # functions, stacked into one output (3, k, batch) so that a single batched backward pass
    # (jax.vmap of one vjp) gives every gradient:
    #   0: log w;
    #   1: log p(x, h) - log q_stop(h | x), log q with a stopped copy of phi, h live (STL, DReG);
    #   2: log q_phi(stop(h) | x), the latents stopped (RWS wake-phi).
    def per_sample(p):
        return jnp.stack([log_weight_terms(p, nets, x, eps)[2],
                          log_weight_terms(p, nets, x, eps, q_params={n: stop(v) for n, v in p.items()})[2],
                          log_weight_terms(p, nets, x, eps, stop_h=True)[3]])

    def bound_cotangent(f):  # d(batch mean of the bound) / d(log w), by jax.grad
        return jax.grad(lambda lw: jnp.mean(f(lw)))(log_w)

    wanted = manifest.get("gradients", [])
    # objectives, and PIWAE's phi part (MIWAE with M = piwae_M): autodiff through log w
    objective_fns = {n: bounds[n] for n in wanted if n in bounds}
    if "iwae" not in objective_fns:
        objective_fns["iwae"] = bounds["iwae"]  # theta of every estimator
    if "piwae" in wanted:
        objective_fns["piwae_phi"] = lambda lw: miwae_bound(lw, s["piwae_M"])
    zero = jnp.zeros_like(log_w)
    cotangents = {n: jnp.stack([bound_cotangent(f), zero, zero]) for n, f in objective_fns.items()}
    cotangents["stl"] = jnp.stack([zero, w_tilde / batch, zero])
    cotangents["dreg"] = jnp.stack([zero, w_tilde ** 2 / batch, zero])
    cotangents["rws"] = jnp.stack([zero, zero, w_tilde / batch])
    _, vjp = jax.vjp(per_sample, params)
    stacked = jax.vmap(vjp)(jnp.stack(list(cotangents.values())))[0]  # {name: (n_cotangents, *shape)}
    g_all = {c: {n: stacked[n][j] for n in names} for j, c in enumerate(cotangents)}
    full = {n: g_all[n] for n in objective_fns}
    path, rws = {"stl": g_all["stl"], "dreg": g_all["dreg"]}, g_all["rws"]
    phi_parts = {"stl": path["stl"], "dreg": path["dreg"], "rws": rws, "piwae": full.get("piwae_phi")}
    for gname in wanted:
        if gname in bounds:
            g = full[gname]
        else:  # theta as IWAE, phi from the estimator
            g = {n: (phi_parts[gname][n] if n.startswith("q_") else full["iwae"][n]) for n in names}
        for n in names:
            results[f"grad.{gname}." + n.replace("/", ".")] = g[n]
    return results


def fixture_dirs(paths):
    for path in map(Path, paths):
        if (path / "suite.json").exists():
            yield from (path / name for name in json.loads((path / "suite.json").read_text())["fixtures"])
        else:
            yield path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixtures", nargs="+", help="fixture directories, or suite directories (with suite.json)")
    parser.add_argument("--out", required=True, help="directory for the results files, one <fixture>.npz each")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in fixture_dirs(args.fixtures):
        manifest, arrays = read_fixture(path)
        np.savez(out / f"{path.name}.npz", **compute(manifest, arrays))
        print(f"{path.name}: wrote {out / (path.name + '.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
