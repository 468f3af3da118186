"""TensorFlow Probability's importance-weighted variational loss (JAX substrate) on an iwae-np oracle fixture.

Written from docs/oracle.md alone (it imports nothing from iwae_np). The fixture's one-layer model becomes
a surrogate posterior `q(h | x) = Independent(Normal(mu(x), exp(log_sigma(x))), 1)` (batch shape [B]) and a
`target_log_prob_fn(h) = log p(x | h) + log p(h)`, both built from one parameter dict (the fixture's names:
q_* are the posterior's parameters, phi; p_* the model's, theta), and

    loss = tfp.vi.monte_carlo_variational_loss(target_log_prob_fn, q, importance_sample_size=k,
                                               gradient_estimator=..., stopped_surrogate_posterior=q_stopped,
                                               seed=key)        # (B,): -L_k per example

with one of three gradient estimators: `REPARAMETERIZATION` (the IWAE gradient, grad.iwae), `DOUBLY_REPARAMETERIZED`
(DReG, Tucker et al. 2019: grad.dreg) and `VIMCO` (Mnih and Rezende 2016, a score-function estimator whose
expectation is IWAE's gradient: statistical mode, grad.iwae). Conversions: bound.iwae = -loss (per example),
grad.<name>.<p> = -jax.grad(mean_b loss) (an ascent direction of the batch mean).

TFP draws the latents inside the loss from the seed. They come out by recording what `target_log_prob_fn`
is called with (TFP evaluates it at its own samples) and returning it from the differentiated function as an
auxiliary output (`jax.value_and_grad(..., has_aux=True)`): the sampler-wrapping technique for a traced
library. log_w is TFP's own `target_log_prob_fn(h) - q.log_prob(h)` at those latents.

    python examples/tfp_client.py FIXTURE replay OUT.npz --estimator reparameterized   # or doubly-reparameterized
    python examples/tfp_client.py FIXTURE statistical OUT.npz --estimator vimco --draws N
"""
import argparse
import contextlib
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
from tensorflow_probability.substrates import jax as tfp  # noqa: E402

tfd = tfp.distributions
ESTIMATORS = {"reparameterized": (tfp.vi.GradientEstimators.REPARAMETERIZATION, "iwae"),
              "doubly-reparameterized": (tfp.vi.GradientEstimators.DOUBLY_REPARAMETERIZED, "dreg"),
              "vimco": (tfp.vi.GradientEstimators.VIMCO, "iwae")}


def read_fixture(path):
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != "iwae-np-oracle" or manifest.get("format_version") != 1:
        raise SystemExit(f"{path}: not an iwae-np-oracle version 1 fixture")
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return manifest, arrays


def build(manifest, arrays, estimator):
    """``(loss, params)``: ``loss(params, key) -> (mean_b loss, (per-example loss (B,), latents (k, B, d), log_w (k, B)))``."""
    nets = {net["name"]: net["layers"] for net in manifest["architecture"]["networks"]}
    params = {p["name"]: jnp.asarray(arrays[p["key"]]) for p in manifest["parameters"]}
    x = jnp.asarray(arrays["x"])
    k = manifest["k"]
    gradient_estimator, _ = ESTIMATORS[estimator]

    def network(p, name, a):
        out = {}
        for layer in nets[name]:
            y = a @ p[f"{name}/{layer['name']}/W"] + p[f"{name}/{layer['name']}/b"]
            if layer["activation"] == "tanh":
                a = jnp.tanh(y)
            else:
                out[layer["name"]] = y
        return out

    def posterior(p):
        out = network(p, "q_h1", x)  # (B, d)
        return tfd.Independent(tfd.Normal(out["mu"], jnp.exp(out["log_sigma"])), reinterpreted_batch_ndims=1)

    def loss(p, key):
        seen = []

        def target_log_prob_fn(h):  # h (..., B, d): TFP's own samples
            seen.append(h)
            logits = network(p, "p_x", h)["logits"]
            log_p_x = tfd.Independent(tfd.Bernoulli(logits=logits), reinterpreted_batch_ndims=1).log_prob(x)
            return log_p_x + tfd.Independent(tfd.Normal(jnp.zeros_like(h), 1.0), reinterpreted_batch_ndims=1).log_prob(h)

        q = posterior(p)
        # VIMCO's tfp.stats.log_soomean_exp reshapes by a shape it computes with tf.gather, a tracer under jax.jit
        # (a TypeError; docs/conformance.md): computing what does not depend on traced values at trace time, as
        # jax.ensure_compile_time_eval does, makes that shape concrete again and changes no value
        with jax.ensure_compile_time_eval() if estimator == "vimco" else contextlib.nullcontext():
            per_example = tfp.vi.monte_carlo_variational_loss(
                target_log_prob_fn, q, importance_sample_size=k, gradient_estimator=gradient_estimator,
                stopped_surrogate_posterior=posterior(jax.lax.stop_gradient(p)), seed=key)  # (B,)
        h = jax.lax.stop_gradient(seen[0]).reshape(k, x.shape[0], -1)  # VIMCO draws (k, 1, B, d)
        log_w = target_log_prob_fn(h) - q.log_prob(h)  # TFP's densities at its latents
        return jnp.mean(per_example), (per_example, h, jax.lax.stop_gradient(log_w))

    return loss, params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture")
    parser.add_argument("mode", choices=["replay", "statistical"])
    parser.add_argument("out", help="results .npz to write")
    parser.add_argument("--estimator", choices=list(ESTIMATORS), default="reparameterized")
    parser.add_argument("--draws", type=int, default=1000, help="statistical mode: independent draws (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="jax.random.PRNGKey seed")
    args = parser.parse_args(argv)

    manifest, arrays = read_fixture(args.fixture)
    if manifest["architecture"]["n_stochastic_layers"] != 1 or manifest["dtype"] != "float64":
        raise SystemExit("this client builds one stochastic layer in float64: use a float64 one-layer fixture")
    loss, params = build(manifest, arrays, args.estimator)
    name = ESTIMATORS[args.estimator][1]
    key = jax.random.PRNGKey(args.seed)
    grad_key = lambda n: f"grad.{name}." + n.replace("/", ".")  # noqa: E731
    value_and_grad = jax.value_and_grad(loss, has_aux=True)
    if args.mode == "replay":
        (_, (per_example, h, log_w)), grads = jax.jit(value_and_grad)(params, key)
        results = {"h.h1": np.asarray(h), "log_w": np.asarray(log_w), "bound.iwae": -np.asarray(per_example)}
        if args.estimator != "vimco":  # VIMCO's estimate on given latents is not one of the fixture's gradients
            results.update({grad_key(n): -np.asarray(g) for n, g in grads.items()})
    else:
        keys = jax.random.split(key, args.draws)
        (_, (per_example, _, _)), grads = jax.jit(jax.vmap(value_and_grad, in_axes=(None, 0)))(params, keys)
        results = {"bound.iwae": -np.asarray(per_example), **{grad_key(n): -np.asarray(g) for n, g in grads.items()}}
    np.savez(args.out, **results)
    print(f"wrote {args.out}: {args.mode}, TFP {args.estimator}, k = {manifest['k']}, batch = {np.shape(arrays['x'])[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
