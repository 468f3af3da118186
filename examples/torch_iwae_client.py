"""A small PyTorch IWAE written the way many repositories write it, run on an iwae-np oracle fixture.

Written from docs/oracle.md alone (it imports nothing from iwae_np): `nn.Linear` layers loaded with the
fixture's weights (`weight = W.T`), its own noise from `torch.randn`, log densities from
`torch.distributions` and `binary_cross_entropy_with_logits`, and the usual surrogate loss

    loss = -mean_b sum_i w~_i log w_i,    w~ = softmax(log w) over the k samples

whose gradient is IWAE's (paper eq. 14) only when w~ is detached. By default it is NOT detached, the bug
of AntixK/PyTorch-VAE (issue 34, fixed in PR 53); `--detach` fixes it. The value it reports is the IWAE
bound logsumexp(log w) - log k, which the bug does not change: only the gradient shows it.

    python examples/torch_iwae_client.py FIXTURE replay OUT.npz [--detach]
    python examples/torch_iwae_client.py FIXTURE statistical OUT.npz --draws N [--detach]
    iwae-np oracle replay FIXTURE OUT.npz ; iwae-np oracle statistical FIXTURE OUT.npz

Other mistakes to see caught and named: `--log-variance` (sigma = exp(log_sigma / 2)), `--transposed-w`
(`weight = W.reshape(n_out, n_in)` instead of `W.T`), `--softplus-threshold` (`x l - F.softplus(l)`, which
returns l above l = 20).
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal


def read_fixture(path):
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    if manifest.get("format") != "iwae-np-oracle" or manifest.get("format_version") != 1:
        raise SystemExit(f"{path}: not an iwae-np-oracle version 1 fixture")
    with np.load(path / "arrays.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return manifest, arrays


class MLP(nn.Module):
    """tanh hidden layers, then linear heads; built from one network of the fixture's manifest."""

    def __init__(self, layers, arrays, net, transposed_w=False):
        super().__init__()
        self.hidden, self.heads = nn.ModuleList(), nn.ModuleDict()
        for layer in layers:
            W, b = arrays[f"param.{net}.{layer['name']}.W"], arrays[f"param.{net}.{layer['name']}.b"]
            linear = nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                # nn.Linear computes x @ weight.T + b: weight is W.T; the mistake reshapes instead
                weight = torch.tensor(W).reshape(W.shape[1], W.shape[0]) if transposed_w else torch.tensor(W).T
                linear.weight.copy_(weight)
                linear.bias.copy_(torch.tensor(b))
            (self.hidden.append(linear) if layer["activation"] == "tanh" else self.heads.update({layer["name"]: linear}))

    def forward(self, a):
        for linear in self.hidden:
            a = torch.tanh(linear(a))
        return {name: linear(a) for name, linear in self.heads.items()}


class IWAE(nn.Module):
    def __init__(self, manifest, arrays, args):
        super().__init__()
        self.L = manifest["architecture"]["n_stochastic_layers"]
        self.args = args
        self.nets = nn.ModuleDict({net["name"]: MLP(net["layers"], arrays, net["name"], args.transposed_w)
                                   for net in manifest["architecture"]["networks"]})

    def sigma(self, log_sigma):
        return torch.exp(0.5 * log_sigma) if self.args.log_variance else torch.exp(log_sigma)

    def forward(self, x, k):
        """Latents [(k, B, d_l)] drawn with torch.randn, and log w (k, B)."""
        h, log_q, below = [], 0.0, x
        for l in range(1, self.L + 1):
            out = self.nets[f"q_h{l}"](below)
            q = Normal(out["mu"], self.sigma(out["log_sigma"]))
            below = q.rsample((k,) if l == 1 else ())
            log_q = log_q + q.log_prob(below).sum(-1)
            h.append(below)
        log_p = Normal(torch.zeros_like(h[-1]), torch.ones_like(h[-1])).log_prob(h[-1]).sum(-1)
        for l in range(self.L - 1, 0, -1):
            out = self.nets[f"p_h{l}"](h[l])
            log_p = log_p + Normal(out["mu"], self.sigma(out["log_sigma"])).log_prob(h[l - 1]).sum(-1)
        logits = self.nets["p_x"](h[0])["logits"]
        xs = x.expand_as(logits)
        if self.args.softplus_threshold:
            log_p_x = (xs * logits - F.softplus(logits)).sum(-1)
        else:
            log_p_x = -F.binary_cross_entropy_with_logits(logits, xs, reduction="none").sum(-1)
        return h, log_p + log_p_x - log_q

    def loss(self, log_w):
        w = F.softmax(log_w, dim=0)
        if self.args.detach:
            w = w.detach()
        return -(w * log_w).sum(0).mean()


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


def one_draw(model, x, k):
    model.zero_grad()
    h, log_w = model(x, k)
    model.loss(log_w).backward()
    bound = torch.logsumexp(log_w, 0) - math.log(k)  # (B,) what the repository logs
    return h, log_w.detach(), bound.detach(), gradients(model)


def gradients(model):
    """-grad of the loss (an ascent direction of the batch mean) under the fixture's keys, W as (n_in, n_out)."""
    out = {}
    for net, mlp in model.nets.items():
        layers = {f"hidden_{i}": lin for i, lin in enumerate(mlp.hidden)} | dict(mlp.heads.items())
        for name, lin in layers.items():
            gW = -lin.weight.grad
            n_in, n_out = lin.weight.shape[1], lin.weight.shape[0]
            # (the transposed-w mistake: the parameter W was read as weight = W.reshape(n_out, n_in))
            out[f"grad.iwae.{net}.{name}.W"] = (gW.reshape(n_in, n_out) if model.args.transposed_w else gW.T).numpy()
            out[f"grad.iwae.{net}.{name}.b"] = (-lin.bias.grad).numpy()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fixture")
    parser.add_argument("mode", choices=["replay", "statistical"])
    parser.add_argument("out", help="results .npz to write")
    parser.add_argument("--draws", type=int, default=None,
                        help="statistical mode: independent draws (default 400, fewer for a file under 256 MiB)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed")
    parser.add_argument("--detach", action="store_true", help="detach the normalized weights (the fix)")
    parser.add_argument("--log-variance", action="store_true", help="the mistake: sigma = exp(log_sigma / 2)")
    parser.add_argument("--transposed-w", action="store_true", help="the mistake: weight = W.reshape(n_out, n_in)")
    parser.add_argument("--softplus-threshold", action="store_true", help="the mistake: x l - F.softplus(l)")
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
    torch.manual_seed(args.seed)
    model = IWAE(manifest, arrays, args)
    x = torch.tensor(arrays["x"])
    k = manifest["k"]
    if args.mode == "replay":
        h, log_w, bound, grads = one_draw(model, x, k)
        results = {f"h.h{l}": hl.detach().numpy() for l, hl in enumerate(h, start=1)}
        results.update({"log_w": log_w.numpy(), "bound.iwae": bound.numpy(), **grads})
    else:
        draws = [one_draw(model, x, k)[2:] for _ in range(plan_draws(manifest, args.draws))]
        results = {"bound.iwae": np.stack([b.numpy() for b, _ in draws])}
        results.update({key: np.stack([g[key] for _, g in draws]) for key in draws[0][1]})
    np.savez(args.out, **results)
    print(f"wrote {args.out}: {args.mode}, k = {k}, batch = {x.shape[0]}")


if __name__ == "__main__":
    sys.exit(main())
