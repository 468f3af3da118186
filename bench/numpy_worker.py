r"""The numpy + autograd side of the benchmarks: the project's own training step and a streaming ``L_k``.

Run alone as a worker: ``python bench/numpy_worker.py`` reads JSON commands on stdin (see
``bench/common.py``); ``bench/run.py`` drives it beside ``bench/torch_reference.py``.

- ``train``: :func:`iwae_np.train_step` as users call it (sample ``eps``, forward, backward by
  autograd, Adam with the paper's settings), on ``iwae_np.init_params(arch, default_rng(seed), dtype)``,
  by the fast engine (the default, what training uses) or by the definition (``engine="definition"``).
- ``eval``: the project's ``L_5000`` (:func:`iwae_np.experiments.evaluation.iwae_log_likelihood`).
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import binary_data, encode_array, gemm_gflops, peak_rss_mib, serve, time_calls  # noqa: E402

import iwae_np  # noqa: E402
from iwae_np.bounds import iwae_value_and_gradient  # noqa: E402
from iwae_np.engines import get_engine  # noqa: E402
from iwae_np.model import init_params, sample_eps  # noqa: E402
from iwae_np.tree import flatten_tree  # noqa: E402

_train_state = {}


def _train_setup(arch, batch, k, dtype, seed, engine):
    key = (arch, batch, k, dtype, seed, engine)
    if key not in _train_state:
        rng = np.random.default_rng(seed + 2)
        state = {"params": init_params(arch, np.random.default_rng(seed), dtype)}
        state["opt"] = get_engine(engine).adam_init(state["params"])
        x = binary_data(seed + 1, batch).astype(dtype)

        def step():
            state["params"], state["opt"], bound = iwae_np.train_step(state["params"], state["opt"], x, rng, k, 1e-3,
                                                                      engine=engine)
            return bound

        for _ in range(2):  # warm-up, as on the torch side
            step()
        _train_state[key] = step
    return _train_state[key]


def train(arch, batch, k, dtype, seconds=0.5, min_steps=3, seed=0, clock="wall", engine="fast"):
    """Per-step times of :func:`iwae_np.train_step` at one configuration, by ``engine``."""
    step = _train_setup(arch, batch, k, dtype, seed, engine)
    return {"times": time_calls(step, seconds, min_steps, clock=clock)}


def evaluate(arch, dtype, k, n_images, batch, chunk, seed=0):
    """``L_k`` of ``n_images`` images by :func:`iwae_np.experiments.evaluation.iwae_log_likelihood`, ``batch``
    images and ``chunk`` samples per pass, in the model's dtype; images per second."""
    from iwae_np.experiments.evaluation import iwae_log_likelihood
    params = init_params(arch, np.random.default_rng(seed), dtype)
    x_all = binary_data(seed + 1, n_images).astype(dtype)
    start = time.perf_counter()
    values = iwae_log_likelihood(params, x_all, np.random.default_rng(seed + 2), k=k, batch_size=batch,
                                 chunk_size=chunk, dtype=dtype)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images_per_second": n_images / seconds,
            "mean_bound": float(np.mean(values)), "peak_rss_mib": peak_rss_mib()}


def bound_and_gradient(arch, dtype, k, batch, seed=0):
    """The IWAE bound and its gradient (the definition's) on the noise ``sample_eps(default_rng(seed + 2), ...)``."""
    params = init_params(arch, np.random.default_rng(seed), dtype)
    x = binary_data(seed + 1, batch).astype(dtype)
    eps = sample_eps(np.random.default_rng(seed + 2), arch, k, batch, dtype)
    value, grads = iwae_value_and_gradient(params, x, eps)
    return {"value": float(value),
            "grads": {name: encode_array(g) for name, g in flatten_tree(grads).items()}}


def gemm(dtype, n=1024, seconds=0.5, clock="wall"):
    make = lambda n: np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    return {"gflops": gemm_gflops(np.matmul, make, n, seconds, clock)}


def versions():
    from importlib.metadata import version
    import scipy
    info = {"numpy": np.__version__, "scipy": scipy.__version__, "iwae_np": iwae_np.__version__,
            "autograd": version("autograd")}
    try:
        from threadpoolctl import threadpool_info
        info["blas"] = "; ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
                                 for p in threadpool_info() if p.get("user_api") == "blas")
    except ImportError:
        pass
    return info


HANDLERS = {"train": train, "eval": evaluate, "bound_and_gradient": bound_and_gradient, "gemm": gemm,
            "versions": versions, "rss": lambda: {"peak_rss_mib": peak_rss_mib()}}

if __name__ == "__main__":
    serve(HANDLERS)
