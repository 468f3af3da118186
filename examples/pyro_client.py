"""Pyro's RenyiELBO on an iwae-np oracle fixture: results for `iwae-np oracle replay` and `oracle statistical`.

Written from docs/oracle.md alone (it imports nothing from iwae_np). The fixture's model becomes a Pyro
model and guide whose parameters are `pyro.param` sites named as the fixture's parameters; the batch is a
data plate; `RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)` is the
IWAE bound, and Pyro draws its own noise. Pyro's conventions, converted to the oracle's:

    loss = -sum over the batch of L_k       ->  bound_mean.iwae = -loss / B
    param.grad = -B x (gradient of the mean) ->  grad.iwae.<p> = -param.grad / B  (an ascent direction)

    python examples/pyro_client.py FIXTURE replay OUT.npz [--seed S]
    python examples/pyro_client.py FIXTURE statistical OUT.npz --draws N [--seed S]
    iwae-np oracle replay FIXTURE OUT.npz ; iwae-np oracle statistical FIXTURE OUT.npz

Known mistakes, to see them caught and named (each is a one-line change a user might make):
`--alpha 0.5` (a Renyi bound other than IWAE), `--elbo trace` (Trace_ELBO: the k-sample VAE bound),
`--event-dims` (the batch in the event dimensions instead of a data plate: one joint bound over the
batch), `--particles-offset -1` (num_particles one too small).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import RenyiELBO, Trace_ELBO


def read_fixture(path):
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != "iwae-np-oracle" or manifest.get("format_version") != 1:
        raise SystemExit(f"{path}: not an iwae-np-oracle version 1 fixture")
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return manifest, arrays


#: Statistical mode's default N and the largest results file it plans for (docs/oracle.md, section 13).
DEFAULT_DRAWS, MAX_RESULTS_BYTES = 400, 256 * 2 ** 20


def plan_draws(manifest, draws):
    """N, chosen (default: 400, or fewer for a file under 256 MiB, never below 20) and sized before drawing:
    the results file holds 8 N (B + 1 + P) bytes, P the number of parameters; a larger one gets a warning."""
    n_params = sum(int(np.prod(p["shape"])) for p in manifest["parameters"])
    per_draw = 8 * (manifest["batch"] + 1 + n_params)
    if draws is None:
        draws = int(min(DEFAULT_DRAWS, max(20, MAX_RESULTS_BYTES // per_draw)))
    if draws * per_draw > MAX_RESULTS_BYTES:
        print(f"warning: {draws} draws of {n_params} gradient entries make a results file of about "
              f"{draws * per_draw / 2 ** 20:.0f} MiB (and hold it in memory twice while writing)", file=sys.stderr)
    return draws


class FixtureModel:
    """The fixture's generative model and recognition model as a Pyro model and guide."""

    def __init__(self, manifest, arrays, event_dims=False):
        self.m = manifest
        self.event_dims = event_dims
        self.L = manifest["architecture"]["n_stochastic_layers"]
        self.dims = manifest["architecture"]["latent_dims"]
        self.nets = {net["name"]: net["layers"] for net in manifest["architecture"]["networks"]}
        self.names = [p["name"] for p in manifest["parameters"]]
        pyro.clear_param_store()
        for p in manifest["parameters"]:
            pyro.param(p["name"], torch.tensor(arrays[p["key"]]))
        self.captured = {}

    def network(self, name, a):
        """tanh hidden layers, then the linear heads (y = a @ W + b, W of shape (n_in, n_out))."""
        out = {}
        for layer in self.nets[name]:
            W, b = pyro.param(f"{name}/{layer['name']}/W"), pyro.param(f"{name}/{layer['name']}/b")
            if layer["activation"] == "tanh":
                a = torch.tanh(a @ W + b)
            else:
                out[layer["name"]] = a @ W + b
        return out

    def _site(self, fn, n_event):
        # the batch in a data plate (event dims 1), or, the mistake, in the event dims (2)
        return fn.to_event(2 if self.event_dims else 1)

    def model(self, x):
        B = x.shape[0]
        with pyro.plate("data", B) if not self.event_dims else _null():
            zeros = torch.zeros(B, self.dims[-1], dtype=x.dtype)
            below = pyro.sample(f"h{self.L}", self._site(dist.Normal(zeros, torch.ones_like(zeros)), 1))
            for l in range(self.L - 1, 0, -1):
                out = self.network(f"p_h{l}", below)
                below = pyro.sample(f"h{l}", self._site(dist.Normal(out["mu"], torch.exp(out["log_sigma"])), 1))
            logits = self.network("p_x", below)["logits"]
            pyro.sample("x", self._site(dist.Bernoulli(logits=logits), 1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]) if not self.event_dims else _null():
            below = x
            for l in range(1, self.L + 1):
                out = self.network(f"q_h{l}", below)
                below = pyro.sample(f"h{l}", self._site(dist.Normal(out["mu"], torch.exp(out["log_sigma"])), 1))
                self.captured[f"h{l}"] = below.detach()


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def make_elbo(args, k):
    particles = k + args.particles_offset
    plates = 0 if args.event_dims else 1
    if args.elbo == "trace":
        return Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=plates)
    return RenyiELBO(alpha=args.alpha, num_particles=particles, vectorize_particles=True, max_plate_nesting=plates)


def one_draw(fm, elbo, x):
    """One evaluation with Pyro's own noise: (loss, {name: param.grad}), the latents in fm.captured."""
    store = pyro.get_param_store()
    for name in fm.names:
        if store[name].grad is not None:
            store[name].grad = None
    loss = elbo.loss_and_grads(fm.model, fm.guide, x)
    return loss, {name: pyro.param(name).unconstrained().grad.detach().clone() for name in fm.names}


def per_example_log_w(fm, x, particles):
    """log w (k, B) at the latents of the last draw, from Pyro's traces: every site's log_prob, summed over
    the units only (so the event-dims mistake still gives per-example log weights). The terms are in
    fm.terms, named as the fixture's term.* outputs (recommended: a disagreement is then located in a term)."""
    plate = pyro.plate("particles", particles, dim=-2 if not fm.event_dims else -1)
    latents = dict(fm.captured)
    guide_trace = poutine.trace(plate(poutine.condition(fm.guide, data=latents))).get_trace(x)
    model_trace = poutine.trace(plate(poutine.condition(fm.model, data=latents))).get_trace(x)

    def total(trace, side):
        out = 0.0
        for name, site in trace.nodes.items():
            if site["type"] == "sample" and isinstance(site["fn"], dist.Independent):  # (not the plates)
                term = site["fn"].base_dist.log_prob(site["value"]).sum(-1)
                fm.terms[term_name(side, name, fm.L)] = term.detach()
                out = out + term
        return out

    fm.terms = {}
    return (total(model_trace, "p") - total(guide_trace, "q")).detach()


def term_name(side, site, L):
    """The fixture's name of a site's log density: model site x -> log_p_x_given_h1, h<l> -> log_p_h<l>_given_h<l+1>
    (log_p_h<L> at the top); guide site h1 -> log_q_h1_given_x, h<l> -> log_q_h<l>_given_h<l-1>."""
    if side == "p":
        if site == "x":
            return "log_p_x_given_h1"
        l = int(site[1:])
        return f"log_p_h{l}" if l == L else f"log_p_h{l}_given_h{l + 1}"
    l = int(site[1:])
    return "log_q_h1_given_x" if l == 1 else f"log_q_h{l}_given_h{l - 1}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture")
    parser.add_argument("mode", choices=["replay", "statistical"])
    parser.add_argument("out", help="results .npz to write")
    parser.add_argument("--draws", type=int, default=None,
                        help="statistical mode: independent draws (default 400, fewer for a file under 256 MiB)")
    parser.add_argument("--seed", type=int, default=0, help="pyro.set_rng_seed")
    parser.add_argument("--alpha", type=float, default=0.0, help="RenyiELBO's alpha (0 is IWAE)")
    parser.add_argument("--elbo", choices=["renyi", "trace"], default="renyi")
    parser.add_argument("--event-dims", action="store_true", help="the mistake: batch in the event dims, no plate")
    parser.add_argument("--particles-offset", type=int, default=0, help="the mistake: num_particles = k + offset")
    args = parser.parse_args(argv)

    # float64 and one thread while it runs, then the caller's settings back (the tests call main in-process)
    saved = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        run(args)
    finally:
        torch.set_default_dtype(saved[0])
        torch.set_num_threads(saved[1])
    return 0


def run(args):
    manifest, arrays = read_fixture(args.fixture)
    if manifest["dtype"] != "float64":
        raise SystemExit("this client computes in float64; export a float64 fixture")
    pyro.set_rng_seed(args.seed)
    fm = FixtureModel(manifest, arrays, args.event_dims)
    x = torch.tensor(arrays["x"])
    B, k = x.shape[0], manifest["k"]
    elbo = make_elbo(args, k)
    key = lambda name: "grad.iwae." + name.replace("/", ".")  # noqa: E731

    if args.mode == "replay":
        loss, grads = one_draw(fm, elbo, x)
        particles = k + args.particles_offset
        # (with num_particles = 1 Pyro adds no particle dimension: the latents are (B, d), put it back)
        results = {f"h.h{l}": fm.captured[f"h{l}"].numpy().reshape(particles, B, fm.dims[l - 1])
                   for l in range(1, fm.L + 1)}
        results["log_w"] = per_example_log_w(fm, x, particles).numpy().reshape(particles, B)
        results.update({f"term.{name}": t.numpy().reshape(particles, B) for name, t in fm.terms.items()})
        results["bound_mean.iwae"] = np.array(-loss / B)
        results.update({key(n): (-g / B).numpy() for n, g in grads.items()})
    else:
        bounds, grads = [], {n: [] for n in fm.names}
        for _ in range(plan_draws(manifest, args.draws)):
            loss, g = one_draw(fm, elbo, x)
            bounds.append(-loss / B)
            for n in fm.names:
                grads[n].append((-g[n] / B).numpy())
        results = {"bound_mean.iwae": np.array(bounds), **{key(n): np.stack(v) for n, v in grads.items()}}
    np.savez(args.out, **results)
    print(f"wrote {args.out}: {args.mode}, k = {k}, batch = {B}")


if __name__ == "__main__":
    sys.exit(main())
