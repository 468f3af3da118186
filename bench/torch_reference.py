r"""PyTorch CPU references of the same IWAE, in several reasonable eager variants, for the benchmarks.

Same shapes (the paper's appendix C), same initialization (the very arrays ``iwae_np.init_params``
draws from the same seed, copied into tensors), same densities, same bound, same Adam
(``torch.optim.Adam`` with the paper's beta1 = 0.9, beta2 = 0.999, eps = 1e-4), written the way
PyTorch users write it, in every combination of these choices (a benchmark is only as honest as
its strongest competitor, so ``bench/run.py`` compares iwae_np with the fastest of them):

- ``loss``: ``bce`` (``binary_cross_entropy_with_logits`` on ``x`` expanded to the logits) or
  ``softplus`` (``x * l - softplus(l)``);
- ``heads``: ``separate`` (``mu`` and ``log_sigma`` as two ``addmm``) or ``fused`` (one ``addmm`` into
  ``2 d`` columns, split: the weights of the two heads side by side in one matrix);
- ``params``: ``nested`` (one leaf tensor per array, ``.grad`` set to None every step) or ``flat``
  (the leaves are views into one flat tensor and their gradients views into one flat gradient,
  zeroed in place; Adam steps the flat tensor as one parameter);
- ``adam``: ``loop`` (``foreach=False``), ``foreach`` or ``fused`` (``fused=True``, where the build has it).

A variant is named ``loss/heads/params/adam``, e.g. ``softplus/fused/flat/fused``.
``compile`` (a separate worker process) runs the model's forward under ``torch.compile`` (inductor,
C++ code generated and built with the local compiler) with the eager backward it generates and
the fastest eager Adam. Each runs in its own process: on 2 cores, numpy and torch in one process
fight over the threads and both slow down several-fold.

Run alone as a worker: ``python bench/torch_reference.py`` reads JSON commands on stdin.
"""
import itertools
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ARCHS, binary_data, encode_array, gemm_gflops, peak_rss_mib, serve, time_calls  # noqa: E402

LOG_2PI = math.log(2 * math.pi)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHOICES = {"loss": ("bce", "softplus"), "heads": ("separate", "fused"), "params": ("nested", "flat"),
           "adam": ("loop", "foreach", "fused")}


def fused_adam_available():
    try:
        p = torch.zeros(2, requires_grad=True)
        p.grad = torch.ones(2)
        torch.optim.Adam([p], fused=True).step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def eager_variants():
    """Every combination of :data:`CHOICES` this build can run, as ``loss/heads/params/adam`` names."""
    adams = [a for a in CHOICES["adam"] if a != "fused" or fused_adam_available()]
    return ["/".join(v) for v in itertools.product(CHOICES["loss"], CHOICES["heads"], CHOICES["params"], adams)]


class Model:
    """The IWAE of ``arch`` with ``iwae_np.init_params(arch, default_rng(seed), dtype)``'s values, one variant."""

    def __init__(self, arch, seed, dtype, variant, compile=False):
        from iwae_np.model import init_params
        from iwae_np.tree import flatten_tree
        self.loss, self.heads, self.params_layout, self.adam = variant.split("/")
        self.dtype = DTYPES[dtype]
        self.dims = ARCHS[arch]["latent_dims"]
        arrays = flatten_tree(init_params(arch, np.random.default_rng(seed), dtype))
        self.names = list(arrays)  # iwae_np's names, for the cross-check
        tensors = {}  # name -> numpy array, heads fused where asked
        for name, value in arrays.items():
            net, layer, key = name.split("/")
            if self.heads == "fused" and layer in ("mu", "log_sigma"):
                if layer == "mu":
                    other = arrays[f"{net}/log_sigma/{key}"]
                    tensors[f"{net}/heads/{key}"] = np.concatenate([value, other], axis=-1)
            else:
                tensors[name] = value
        if self.params_layout == "flat":
            sizes = [v.size for v in tensors.values()]
            self.flat = torch.zeros(sum(sizes), dtype=self.dtype)
            self.flat_grad = torch.zeros_like(self.flat)
            self.p, offset = {}, 0
            for (name, value), n in zip(tensors.items(), sizes):
                view = self.flat[offset:offset + n].view(value.shape)
                view.copy_(torch.from_numpy(value))
                view.requires_grad_(True)
                view.grad = self.flat_grad[offset:offset + n].view(value.shape)  # backward adds in place
                self.p[name] = view
                offset += n
            self.flat.grad = self.flat_grad
            optimized = [self.flat]
        else:
            self.p = {name: torch.tensor(value, requires_grad=True) for name, value in tensors.items()}
            optimized = list(self.p.values())
        kwargs = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[self.adam]
        self.opt = torch.optim.Adam(optimized, lr=1e-3, betas=(0.9, 0.999), eps=1e-4, **kwargs)
        if compile:
            # every configuration is a new shape of the same function: without room for them, dynamo gives up
            # after 8 and runs the rest eagerly, silently
            for limit in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                          "accumulated_cache_size_limit"):
                if hasattr(torch._dynamo.config, limit):
                    setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 256))
            torch._dynamo.config.error_on_recompile = False
        self.objective = torch.compile(self.bound, dynamic=False) if compile else self.bound

    # ---- the model ---------------------------------------------------------------------------
    def dense(self, net, layer, a):
        return torch.addmm(self.p[f"{net}/{layer}/b"], a, self.p[f"{net}/{layer}/W"])

    def mlp(self, net, a):
        i = 0
        while f"{net}/hidden_{i}/W" in self.p:
            a = torch.tanh(self.dense(net, f"hidden_{i}", a))
            i += 1
        return a

    def gaussian(self, net, below):
        lead = below.shape[:-1]
        a = self.mlp(net, below.reshape(-1, below.shape[-1]))
        if self.heads == "fused":
            mu, log_sigma = self.dense(net, "heads", a).chunk(2, dim=-1)
        else:
            mu, log_sigma = self.dense(net, "mu", a), self.dense(net, "log_sigma", a)
        return mu.reshape(*lead, -1), log_sigma.reshape(*lead, -1)

    @staticmethod
    def gaussian_log_density(h, mu, log_sigma):
        z = (h - mu) * torch.exp(-log_sigma)
        return -0.5 * (LOG_2PI + 2 * log_sigma + z * z).sum(-1)

    def log_weights(self, x, eps):
        """``log w (k, batch)``: the same terms as ``iwae_np.model.log_weight_terms``."""
        L = len(eps)
        h, below, log_q = [], x, 0
        for l in range(1, L + 1):
            mu, log_sigma = self.gaussian(f"q_h{l}", below)
            below = mu + torch.exp(log_sigma) * eps[l - 1]
            h.append(below)
            log_q = log_q + self.gaussian_log_density(below, mu, log_sigma)
        k, batch = eps[0].shape[:2]
        logits = self.dense("p_x", "logits", self.mlp("p_x", h[0].reshape(k * batch, -1))).reshape(k, batch, -1)
        if self.loss == "bce":
            log_p = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        else:
            log_p = (x * logits - F.softplus(logits)).sum(-1)
        for l in range(1, L):
            mu, log_sigma = self.gaussian(f"p_h{l}", h[l])
            log_p = log_p + self.gaussian_log_density(h[l - 1], mu, log_sigma)
        log_p = log_p - 0.5 * (LOG_2PI + h[L - 1] * h[L - 1]).sum(-1)
        return log_p - log_q

    def bound(self, x, eps):
        """The batch mean of the IWAE bound ``logsumexp_i log w_i - log k``."""
        log_w = self.log_weights(x, eps)
        return (torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])).mean()

    # ---- training ----------------------------------------------------------------------------
    def step(self, x, eps):
        loss = -self.objective(x, eps)
        if self.params_layout == "flat":
            self.flat_grad.zero_()
        else:
            self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def grads_by_name(self):
        """The gradient of every array under iwae_np's names (fused heads split back)."""
        out = {}
        for name in self.names:
            net, layer, key = name.split("/")
            if self.heads == "fused" and layer in ("mu", "log_sigma"):
                g = self.p[f"{net}/heads/{key}"].grad
                d = g.shape[-1] // 2
                out[name] = encode_array((g[..., :d] if layer == "mu" else g[..., d:]).numpy())
            else:
                out[name] = encode_array(self.p[name].grad.numpy())
        return out


_train_state = {}


def _train_setup(arch, batch, k, dtype, seed, variant, compile):
    key = (arch, batch, k, dtype, seed, variant, compile)
    if key not in _train_state:
        torch.manual_seed(seed)
        model = Model(arch, seed, dtype, variant, compile)
        x = torch.tensor(binary_data(seed + 1, batch), dtype=DTYPES[dtype])
        gen = torch.Generator().manual_seed(seed + 2)

        def step():
            eps = [torch.randn((k, batch, d), generator=gen, dtype=DTYPES[dtype]) for d in model.dims]
            return float(model.step(x, eps).detach())

        for _ in range(3):  # warm-up: allocator, Adam state, compilation
            step()
        _train_state[key] = step
    return _train_state[key]


def variants(compile=False):
    """The variants this worker runs: the eager combinations, or the compiled one."""
    return {"variants": [COMPILED] if compile else eager_variants()}


#: The variant run under torch.compile: the plain formulation, with the fastest eager Adam of a nested tree.
COMPILED = "softplus/separate/nested/" + ("fused" if fused_adam_available() else "foreach")


def train(arch, batch, k, dtype, seconds=0.5, min_steps=3, seed=0, variant=None, compile=False, clock="wall"):
    """Per-step times of sample + forward + backward + Adam at one configuration, one variant."""
    step = _train_setup(arch, batch, k, dtype, seed, variant or COMPILED, compile)
    return {"times": time_calls(step, seconds, min_steps, clock=clock)}


def setup(arch, batch, k, dtype, seed=0, variant=None, compile=False):
    """Build (and for compile: compile) a configuration without timing it; the seconds it took."""
    t = time.perf_counter()
    _train_setup(arch, batch, k, dtype, seed, variant or COMPILED, compile)
    return {"seconds": time.perf_counter() - t}


def evaluate(arch, dtype, k, n_images, batch, chunk, seed=0, threads=0):
    r"""Streaming :math:`\mathcal L_k` of ``n_images`` images under ``inference_mode``: ``batch`` images and ``chunk`` samples per pass.

    The chunks' log weights are combined with ``torch.logsumexp`` of the chunks' logsumexps (exact).
    The fastest formulation (``softplus``, fused heads). ``threads`` is ignored (torch parallelizes inside each operation).
    """
    model = Model(arch, seed, dtype, "softplus/fused/nested/foreach")
    x_all = torch.tensor(binary_data(seed + 1, n_images), dtype=DTYPES[dtype])
    gen = torch.Generator().manual_seed(seed + 2)
    values = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n_images, batch):
            x = x_all[i:i + batch]
            parts = []
            for j in range(0, k, chunk):
                c = min(chunk, k - j)
                eps = [torch.randn((c, x.shape[0], d), generator=gen, dtype=DTYPES[dtype]) for d in model.dims]
                parts.append(torch.logsumexp(model.log_weights(x, eps), 0))  # (batch,)
            values.append(torch.logsumexp(torch.stack(parts), 0) - math.log(k))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images_per_second": n_images / seconds,
            "mean_bound": float(torch.cat(values).mean()), "peak_rss_mib": peak_rss_mib()}


def bound_and_gradient(arch, dtype, k, batch, seed=0, variant=None, compile=False):
    """The IWAE bound and its gradient on numpy's noise ``eps`` (cross-check that the model is the same)."""
    from iwae_np.model import sample_eps
    model = Model(arch, seed, dtype, variant or COMPILED, compile)
    x = torch.tensor(binary_data(seed + 1, batch), dtype=DTYPES[dtype])
    eps = [torch.tensor(e) for e in sample_eps(np.random.default_rng(seed + 2), arch, k, batch, dtype)]
    value = model.objective(x, eps)
    value.backward()
    return {"value": float(value.detach()), "grads": model.grads_by_name()}


def gemm(dtype, n=1024, seconds=0.5, clock="wall"):
    make = lambda n: torch.randn((n, n), dtype=DTYPES[dtype])
    return {"gflops": gemm_gflops(torch.mm, make, n, seconds, clock)}


def versions():
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
            "fused_adam": fused_adam_available()}


HANDLERS = {"train": train, "setup": setup, "eval": evaluate, "bound_and_gradient": bound_and_gradient,
            "gemm": gemm, "versions": versions, "variants": variants,
            "rss": lambda: {"peak_rss_mib": peak_rss_mib()}}

if __name__ == "__main__":
    serve(HANDLERS)
