r"""PyTorch CPU reference of the same IWAE, for the benchmarks (``bench/run.py`` drives it).

Same shapes (the paper's appendix C), same initialization (the very arrays ``iwae_np.init_params``
draws from the same seed, copied into tensors), same densities, same bound, same Adam
(``torch.optim.Adam`` with the paper's beta1 = 0.9, beta2 = 0.999, eps = 1e-4), written the way a
PyTorch user would: ``addmm`` dense layers, ``tanh``, ``binary_cross_entropy_with_logits``,
``torch.logsumexp``, autograd ``backward()``. Runs in its own process: on 2 cores, numpy and torch
in one process fight over the threads and both slow down several-fold.

Run alone as a worker: ``python bench/torch_reference.py`` reads JSON commands on stdin.
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ARCHS, binary_data, gemm_gflops, peak_rss_mib, serve, time_calls  # noqa: E402

LOG_2PI = math.log(2 * math.pi)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_params(arch_name, seed, dtype):
    """The tree of ``iwae_np.init_params(arch, default_rng(seed), dtype)`` as leaf tensors requiring grad."""
    from iwae_np.model import init_params
    np_params = init_params(arch_name, np.random.default_rng(seed), dtype)
    return {net: {layer: {name: torch.tensor(value, requires_grad=True) for name, value in p.items()}
                  for layer, p in layers.items()} for net, layers in np_params.items()}


def dense(layer, x):
    lead = x.shape[:-1]
    y = torch.addmm(layer["b"], x.reshape(-1, x.shape[-1]), layer["W"])
    return y.reshape(*lead, y.shape[-1])


def tanh_mlp(net, x):
    i = 0
    while f"hidden_{i}" in net:
        x = torch.tanh(dense(net[f"hidden_{i}"], x))
        i += 1
    return x


def gaussian_head(net, x):
    a = tanh_mlp(net, x)
    return dense(net["mu"], a), dense(net["log_sigma"], a)


def gaussian_log_density(h, mu, log_sigma):
    z = (h - mu) * torch.exp(-log_sigma)
    return -0.5 * (LOG_2PI + 2 * log_sigma + z * z).sum(-1)


def log_importance_weights(params, x, eps):
    """``log w (k, batch)``, the same terms in the same order as ``iwae_np.model.log_weight_terms``."""
    L = len(eps)
    h, below, log_q = [], x, 0
    for l in range(1, L + 1):
        mu, log_sigma = gaussian_head(params[f"q_h{l}"], below)
        below = mu + torch.exp(log_sigma) * eps[l - 1]
        h.append(below)
        log_q = log_q + gaussian_log_density(below, mu, log_sigma)
    logits = dense(params["p_x"]["logits"], tanh_mlp(params["p_x"], h[0]))
    log_p = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    for l in range(1, L):
        mu, log_sigma = gaussian_head(params[f"p_h{l}"], h[l])
        log_p = log_p + gaussian_log_density(h[l - 1], mu, log_sigma)
    log_p = log_p - 0.5 * (LOG_2PI + h[L - 1] * h[L - 1]).sum(-1)
    return log_p - log_q


def iwae_bound(log_w):
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


_train_state = {}


def _train_setup(arch, batch, k, dtype, seed):
    key = (arch, batch, k, dtype, seed)
    if key not in _train_state:
        torch.manual_seed(seed)
        params = torch_params(arch, seed, dtype)
        leaves = [t for layers in params.values() for p in layers.values() for t in p.values()]
        opt = torch.optim.Adam(leaves, lr=1e-3, betas=(0.9, 0.999), eps=1e-4)
        x = torch.tensor(binary_data(seed + 1, batch), dtype=DTYPES[dtype])
        gen = torch.Generator().manual_seed(seed + 2)
        dims = ARCHS[arch]["latent_dims"]

        def step():
            eps = [torch.randn((k, batch, d), generator=gen, dtype=DTYPES[dtype]) for d in dims]
            loss = -iwae_bound(log_importance_weights(params, x, eps)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        for _ in range(2):  # warm-up: allocator, Adam state
            step()
        _train_state[key] = step
    return _train_state[key]


def train(arch, batch, k, dtype, seconds=0.5, min_steps=3, seed=0):
    """Per-step times of sample + forward + backward + Adam at one configuration."""
    step = _train_setup(arch, batch, k, dtype, seed)
    return {"times": time_calls(step, seconds, min_steps)}


def evaluate(arch, dtype, k, n_images, batch, chunk, seed=0, threads=0):
    r"""Streaming :math:`\mathcal L_k` of ``n_images`` images under ``inference_mode``: ``batch`` images and ``chunk`` samples per pass.

    The chunks' log weights are combined with ``torch.logsumexp`` of the chunks' logsumexps (exact).
    ``threads`` is ignored (torch parallelizes inside each operation).
    """
    params = torch_params(arch, seed, dtype)
    x_all = torch.tensor(binary_data(seed + 1, n_images), dtype=DTYPES[dtype])
    gen = torch.Generator().manual_seed(seed + 2)
    dims = ARCHS[arch]["latent_dims"]
    values = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n_images, batch):
            x = x_all[i:i + batch]
            parts = []
            for j in range(0, k, chunk):
                c = min(chunk, k - j)
                eps = [torch.randn((c, x.shape[0], d), generator=gen, dtype=DTYPES[dtype]) for d in dims]
                parts.append(torch.logsumexp(log_importance_weights(params, x, eps), 0))  # (batch,)
            values.append(torch.logsumexp(torch.stack(parts), 0) - math.log(k))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images_per_second": n_images / seconds,
            "mean_bound": float(torch.cat(values).mean()), "peak_rss_mib": peak_rss_mib()}


def bound_and_gradient(arch, dtype, k, batch, seed=0):
    """The IWAE bound and its gradient on numpy's noise ``eps`` (cross-check that the model is the same)."""
    from iwae_np.model import sample_eps
    params = torch_params(arch, seed, dtype)
    x = torch.tensor(binary_data(seed + 1, batch), dtype=DTYPES[dtype])
    eps = [torch.tensor(e) for e in sample_eps(np.random.default_rng(seed + 2), arch, k, batch, dtype)]
    value = iwae_bound(log_importance_weights(params, x, eps)).mean()
    value.backward()
    grads = {f"{net}/{layer}/{name}": t.grad.numpy().tolist()
             for net, layers in params.items() for layer, p in layers.items() for name, t in p.items()}
    return {"value": float(value.detach()), "grads": grads}


def gemm(dtype, n=1024, seconds=0.5):
    make = lambda n: torch.randn((n, n), dtype=DTYPES[dtype])
    return {"gflops": gemm_gflops(torch.mm, make, n, seconds)}


def versions():
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "numpy": np.__version__}


HANDLERS = {"train": train, "eval": evaluate, "bound_and_gradient": bound_and_gradient, "gemm": gemm,
            "versions": versions, "rss": lambda: {"peak_rss_mib": peak_rss_mib()}}

if __name__ == "__main__":
    serve(HANDLERS)
