"""An independent PyTorch implementation of the IWAE model, checked against iwae-np oracle fixtures.

Written from docs/oracle.md alone: it imports nothing from iwae_np. For each fixture it reads
manifest.json and arrays.npz, computes every output quantity with torch (in the fixture's dtype,
gradients by torch.autograd) and writes a results .npz under the same keys:

    python examples/torch_adapter.py FIXTURE_OR_SUITE_DIR [...] --out RESULTS_DIR
    iwae-np oracle check FIXTURE RESULTS_DIR/<fixture name>.npz

A directory holding suite.json stands for all the fixtures it lists.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# the model (docs/oracle.md, "The model")


def softplus(l):
    # exact log(1 + e^l) = max(l, 0) + log1p(e^-|l|); torch's F.softplus switches to l above a threshold
    return torch.clamp(l, min=0) + torch.log1p(torch.exp(-torch.abs(l)))


def logsumexp(a, dim):
    m = torch.max(a, dim=dim, keepdim=True).values.detach()
    return torch.squeeze(m, dim) + torch.log(torch.sum(torch.exp(a - m), dim=dim))


def dense(layer, a):
    return a @ layer["W"] + layer["b"]  # W: (n_in, n_out)


def mlp(net, a):
    """tanh hidden layers, then the linear heads; returns {head: output}."""
    for layer in net["hidden"]:
        a = torch.tanh(dense(layer, a))
    return {name: dense(layer, a) for name, layer in net["heads"].items()}


def gaussian_log_density(h, mu, log_sigma):
    z = (h - mu) / torch.exp(log_sigma)
    return -0.5 * torch.sum(LOG_2PI + 2 * log_sigma + z * z, dim=-1)


def log_weight_terms(P, x, eps, L, q_params=None, stop_h=False):
    """h, the density terms and log w; ``q_params`` evaluates log q (sampling still uses P);
    ``stop_h`` detaches the latents before any density is evaluated."""
    q_params = q_params or P
    h, below = [], x
    for l in range(1, L + 1):
        out = mlp(P[f"q_h{l}"], below)
        below = out["mu"] + torch.exp(out["log_sigma"]) * eps[l - 1]  # (k, batch, d_l)
        h.append(below)
    if stop_h:
        h = [hl.detach() for hl in h]
    terms = {}
    logits = mlp(P["p_x"], h[0])["logits"]
    terms["log_p_x_given_h1"] = torch.sum(x * logits - softplus(logits), dim=-1)
    for l in range(1, L):
        out = mlp(P[f"p_h{l}"], h[l])
        terms[f"log_p_h{l}_given_h{l + 1}"] = gaussian_log_density(h[l - 1], out["mu"], out["log_sigma"])
    terms[f"log_p_h{L}"] = -0.5 * torch.sum(LOG_2PI + h[L - 1] * h[L - 1], dim=-1)
    below = x
    for l in range(1, L + 1):
        out = mlp(q_params[f"q_h{l}"], below)
        given = "x" if l == 1 else f"h{l - 1}"
        terms[f"log_q_h{l}_given_{given}"] = gaussian_log_density(h[l - 1], out["mu"], out["log_sigma"])
        below = h[l - 1]
    log_p = sum(t for n, t in terms.items() if n.startswith("log_p"))
    log_q = sum(t for n, t in terms.items() if n.startswith("log_q"))
    return h, terms, log_p - log_q, log_p, log_q


# ---------------------------------------------------------------------------------------------
# bounds (docs/oracle.md, "Bounds"): log_w (k, batch) -> (batch,)


def vae_bound(log_w):
    return torch.mean(log_w, dim=0)


def iwae_bound(log_w):
    return logsumexp(log_w, 0) - math.log(log_w.shape[0])


def miwae_bound(log_w, M):
    k, batch = log_w.shape
    groups = log_w.reshape(M, k // M, batch)  # sample i = m K + j
    return torch.mean(logsumexp(groups, 1) - math.log(k // M), dim=0)


def ciwae_bound(log_w, beta):
    return beta * vae_bound(log_w) + (1 - beta) * iwae_bound(log_w)


def renyi_bound(log_w, alpha):
    if alpha == 1:  # the limit alpha -> 1 is the VAE estimate
        return vae_bound(log_w)
    return (logsumexp((1 - alpha) * log_w, 0) - math.log(log_w.shape[0])) / (1 - alpha)


def bounds(log_w, s):
    return {"vae": vae_bound(log_w), "iwae": iwae_bound(log_w), "miwae": miwae_bound(log_w, s["miwae_M"]),
            "ciwae": ciwae_bound(log_w, s["ciwae_beta"]), "renyi": renyi_bound(log_w, s["renyi_alpha"])}


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


def compute(manifest, arrays):
    dtype = {"float64": torch.float64, "float32": torch.float32}[manifest["dtype"]]
    arch = manifest["architecture"]
    L = arch["n_stochastic_layers"]
    t = lambda a: torch.tensor(a, dtype=dtype)
    x = t(arrays["x"])
    eps = [t(arrays[e["key"]]) for e in manifest["eps"]]
    names = [p["name"] for p in manifest["parameters"]]
    leaves = {p["name"]: t(arrays[p["key"]]).requires_grad_(True) for p in manifest["parameters"]}
    phi = [n for n in names if n.startswith("q_")]
    theta = [n for n in names if n.startswith("p_")]

    def tree(source):
        P = {}
        for net in arch["networks"]:
            get = lambda layer: {w: source[f"{net['name']}/{layer}/{w}"] for w in ("W", "b")}
            P[net["name"]] = {"hidden": [get(ly["name"]) for ly in net["layers"] if ly["activation"] == "tanh"],
                              "heads": {ly["name"]: get(ly["name"]) for ly in net["layers"]
                                        if ly["activation"] == "identity"}}
        return P

    P = tree(leaves)
    P_stop = tree({n: v.detach() for n, v in leaves.items()})
    s = manifest["settings"]
    results = {}

    def grad(objective, wrt):
        gs = torch.autograd.grad(objective, [leaves[n] for n in wrt], allow_unused=True, retain_graph=True)
        return {n: (torch.zeros_like(leaves[n]) if g is None else g) for n, g in zip(wrt, gs)}

    def put_grad(name, g):
        for n in names:
            results[f"grad.{name}." + n.replace("/", ".")] = g[n]

    h, terms, log_w, log_p, _ = log_weight_terms(P, x, eps, L)
    for l in range(1, L + 1):
        results[f"h.h{l}"] = h[l - 1]
    for n, term in terms.items():
        results[f"term.{n}"] = term
    results["log_w"] = log_w
    w_tilde = torch.softmax(log_w, dim=0)  # (k, batch)
    results["normalized_weights"] = w_tilde
    batch = log_w.shape[1]
    b = bounds(log_w, s)
    for n, value in b.items():
        results[f"bound.{n}"] = value
        results[f"bound_mean.{n}"] = torch.mean(value)
    for n in manifest.get("gradients", []):
        if n in b:  # objectives: autograd of the batch-mean bound
            put_grad(n, grad(torch.mean(b[n]), names))
    # path-derivative estimators: log q with a stopped copy of phi, the path through h kept
    _, _, log_w_path, _, _ = log_weight_terms(P, x, eps, L, q_params=P_stop)
    w_const = w_tilde.detach()
    g_iwae = grad(torch.mean(b["iwae"]), names)
    estimators = {
        "stl": lambda: grad(torch.sum(w_const * log_w_path) / batch, phi),
        "dreg": lambda: grad(torch.sum(w_const ** 2 * log_w_path) / batch, phi),
        # RWS wake-phi: log q at stopped latents, phi live
        "rws": lambda: grad(torch.sum(w_const * log_weight_terms(P, x, eps, L, stop_h=True)[4]) / batch, phi),
        "piwae": lambda: grad(torch.mean(miwae_bound(log_w, s["piwae_M"])), phi),
    }
    for n in manifest.get("gradients", []):
        if n in estimators:
            put_grad(n, {**{m: g_iwae[m] for m in theta}, **estimators[n]()})
    return {key: value.detach().numpy() for key, value in results.items()}


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
    torch.set_num_threads(1)
    for path in fixture_dirs(args.fixtures):
        manifest, arrays = read_fixture(path)
        np.savez(out / f"{path.name}.npz", **compute(manifest, arrays))
        print(f"{path.name}: wrote {out / (path.name + '.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
