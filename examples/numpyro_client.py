"""NumPyro's RenyiELBO on an iwae-np oracle fixture: results for `iwae-np oracle replay` and `oracle statistical`.

Written from docs/oracle.md alone (it imports nothing from iwae_np). The fixture's model becomes a NumPyro
model and guide whose parameters are `numpyro.param` sites named as the fixture's parameters; the batch
is a data plate; `RenyiELBO(alpha=0, num_particles=k)` is the IWAE bound and NumPyro draws its own noise
from the PRNG key. Its conventions, converted to the oracle's:

    elbo.loss(key, params, model, guide, x) = -sum over the batch of L_k   ->  bound_mean.iwae = -loss / B
    jax.grad of that loss = -B x (gradient of the mean)                    ->  grad.iwae.<p> = -grad / B

    python examples/numpyro_client.py FIXTURE replay OUT.npz [--seed S]
    python examples/numpyro_client.py FIXTURE statistical OUT.npz --draws N [--seed S]

Statistical mode draws every key at once: `jax.vmap` of `jax.value_and_grad` of the loss over N keys.
Replay needs the latents the loss drew, which RenyiELBO does not return: they are re-drawn here from the
same keys, split as numpyro 0.22's RenyiELBO.loss splits them (`plate key, key = split(key)`; one key per
particle; `model key, guide key = split(particle key)`). If a NumPyro release splits them otherwise, the
replay disagrees on every quantity at once. `--alpha 0.5` shows a mistaken bound caught and named.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_platforms", "cpu")
import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.handlers import seed, substitute, trace  # noqa: E402
from numpyro.infer import RenyiELBO  # noqa: E402


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


def build(manifest, arrays):
    """``(model, guide, params)``: a NumPyro model and guide of the fixture, its parameters by name."""
    L = manifest["architecture"]["n_stochastic_layers"]
    d_top = manifest["architecture"]["latent_dims"][-1]
    nets = {net["name"]: net["layers"] for net in manifest["architecture"]["networks"]}
    params = {p["name"]: jnp.asarray(arrays[p["key"]]) for p in manifest["parameters"]}

    def network(name, a):
        out = {}
        for layer in nets[name]:
            W = numpyro.param(f"{name}/{layer['name']}/W", params[f"{name}/{layer['name']}/W"])
            b = numpyro.param(f"{name}/{layer['name']}/b", params[f"{name}/{layer['name']}/b"])
            if layer["activation"] == "tanh":
                a = jnp.tanh(a @ W + b)
            else:
                out[layer["name"]] = a @ W + b
        return out

    def model(x):
        with numpyro.plate("data", x.shape[0]):
            below = numpyro.sample(f"h{L}", dist.Normal(jnp.zeros(d_top), 1.0).to_event(1))
            for l in range(L - 1, 0, -1):
                out = network(f"p_h{l}", below)
                below = numpyro.sample(f"h{l}", dist.Normal(out["mu"], jnp.exp(out["log_sigma"])).to_event(1))
            logits = network("p_x", below)["logits"]
            numpyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x):
        with numpyro.plate("data", x.shape[0]):
            below = x
            for l in range(1, L + 1):
                out = network(f"q_h{l}", below)
                below = numpyro.sample(f"h{l}", dist.Normal(out["mu"], jnp.exp(out["log_sigma"])).to_event(1))

    return model, guide, params


def latents_of(key, guide, params, x, k, L):
    """The latents RenyiELBO.loss(key, ...) draws: h<l> of shape (k, B, d_l)."""
    _, key = jax.random.split(key)

    def one(particle_key):
        _, guide_key = jax.random.split(particle_key)
        tr = trace(seed(substitute(guide, data=params), guide_key)).get_trace(x)
        return [tr[f"h{l}"]["value"] for l in range(1, L + 1)]

    return jax.jit(jax.vmap(one))(jax.random.split(key, k))


def log_w_of(model, guide, params, x, h):
    """log w (k, B) at given latents, from NumPyro's own log densities (both traces conditioned on h)."""
    data = {f"h{l}": hl for l, hl in enumerate(h, start=1)}

    def one(*hs):
        cond = {name: v for name, v in zip(data, hs)}
        tm = trace(substitute(substitute(model, data=params), data=cond)).get_trace(x)
        tg = trace(substitute(substitute(guide, data=params), data=cond)).get_trace(x)
        total = lambda tr: sum(site["fn"].log_prob(site["value"]) for site in tr.values()  # noqa: E731
                               if site["type"] == "sample")
        return total(tm) - total(tg)

    return jax.jit(jax.vmap(one))(*h)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture")
    parser.add_argument("mode", choices=["replay", "statistical"])
    parser.add_argument("out", help="results .npz to write")
    parser.add_argument("--draws", type=int, default=None,
                        help="statistical mode: independent draws (default 400, fewer for a file under 256 MiB)")
    parser.add_argument("--seed", type=int, default=0, help="jax.random.PRNGKey seed")
    parser.add_argument("--alpha", type=float, default=0.0, help="RenyiELBO's alpha (0 is IWAE)")
    args = parser.parse_args(argv)

    manifest, arrays = read_fixture(args.fixture)
    model, guide, params = build(manifest, arrays)
    x = jnp.asarray(arrays["x"])
    B, k, L = x.shape[0], manifest["k"], manifest["architecture"]["n_stochastic_layers"]
    elbo = RenyiELBO(alpha=args.alpha, num_particles=k)

    def loss(key, p):
        return elbo.loss(key, p, model, guide, x)

    key = jax.random.PRNGKey(args.seed)
    name = lambda n: "grad.iwae." + n.replace("/", ".")  # noqa: E731
    if args.mode == "replay":
        value, grads = jax.jit(jax.value_and_grad(loss, argnums=1))(key, params)
        h = latents_of(key, guide, params, x, k, L)
        results = {f"h.h{l}": np.asarray(hl) for l, hl in enumerate(h, start=1)}
        results["log_w"] = np.asarray(log_w_of(model, guide, params, x, h))
        results["bound_mean.iwae"] = np.asarray(-value / B)
        results.update({name(n): np.asarray(-g / B) for n, g in grads.items()})
    else:
        keys = jax.random.split(key, plan_draws(manifest, args.draws))
        values, grads = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=1), in_axes=(0, None)))(keys, params)
        results = {"bound_mean.iwae": np.asarray(-values / B), **{name(n): np.asarray(-g / B) for n, g in grads.items()}}
    np.savez(args.out, **results)
    print(f"wrote {args.out}: {args.mode}, k = {k}, batch = {B}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
