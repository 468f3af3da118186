"""Shared by the benchmark workers and the driver: configurations, FLOP counts, the worker loop.

No numpy/torch import here at module level beyond numpy, so both workers (and the driver) can use it.
Each worker is a separate process that answers one JSON command per line on stdin with one JSON
line on stdout; the driver (``bench/run.py``) interleaves commands between the numpy and the torch
worker, so the two never run at the same time and never fight over the 2 cores.
"""
import base64
import json
import math
import os
import sys
import time

import numpy as np

# the paper's two architectures (appendix C), as in iwae_np.model.PRESETS; written out here so the
# torch worker's shapes are visibly the same
ARCHS = {
    "one-layer": {"x_dim": 784, "latent_dims": (50,), "q_hidden": ((200, 200),), "p_hidden": ((200, 200),)},
    "two-layer": {"x_dim": 784, "latent_dims": (100, 50), "q_hidden": ((200, 200), (100, 100)),
                  "p_hidden": ((200, 200), (100, 100))},
}


def dense_layers(arch_name):
    """``[(network, n_in, n_out, per_sample)]`` for every dense layer, heads included.

    ``per_sample`` is False for the layers of ``q(h1|x)``, which run once per example (their input is x),
    True for the rest, which run on all ``k * batch`` samples.
    """
    a = ARCHS[arch_name]
    dims = (a["x_dim"],) + tuple(a["latent_dims"])
    L = len(a["latent_dims"])
    layers = []
    for l in range(1, L + 1):  # q(h_l | h_{l-1}): hidden layers, then the mu and log_sigma heads
        width = dims[l - 1]
        for n in a["q_hidden"][l - 1]:
            layers.append((f"q_h{l}", width, n, l > 1))
            width = n
        layers += [(f"q_h{l}", width, dims[l], l > 1)] * 2
    for l in range(L, 0, -1):  # p(h_{l-1} | h_l), down to p(x | h_1)
        width = dims[l]
        for n in a["p_hidden"][l - 1]:
            layers.append((f"p_h{l - 1}" if l > 1 else "p_x", width, n, True))
            width = n
        heads = 1 if l == 1 else 2
        layers += [(f"p_h{l - 1}" if l > 1 else "p_x", width, dims[l - 1], True)] * heads
    return layers


def matmul_flops(arch_name, batch, k, backward=True):
    """Multiply-add FLOPs (2 per multiply-add) of the dense layers of one forward (+ backward) pass.

    Backward: the weight gradient of every layer, and the input gradient of every layer except
    those whose input is the data x (the first layer of q(h1|x)).
    """
    total = 0
    for net, n_in, n_out, per_sample in dense_layers(arch_name):
        rows = k * batch if per_sample else batch
        f = 2 * rows * n_in * n_out
        total += f
        if backward:
            total += f  # dW
            if n_in != ARCHS[arch_name]["x_dim"] or net != "q_h1":
                total += f  # dx
    return total


def binary_data(seed, batch, x_dim=784):
    """Deterministic binary images for the benchmarks (Bernoulli(0.3) pixels; timing does not depend on them)."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(batch, x_dim)) < 0.3)


#: What a time is: wall-clock seconds, or the CPU seconds of the process (all its threads), which other
#: jobs on the machine disturb far less (with one thread per worker: the work done, whoever waited).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_calls(fn, seconds, min_calls=3, max_calls=1000, clock="wall"):
    """Per-call times of ``fn()`` on ``clock``, called at least ``min_calls`` times and until ``seconds`` of wall time have passed."""
    tick = CLOCKS[clock]
    times, start = [], time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - start < seconds and len(times) < max_calls):
        t = tick()
        fn()
        times.append(tick() - t)
    return times


def gemm_gflops(matmul, make, n, seconds=0.5, clock="wall"):
    """Best GFLOP/s of an ``n x n`` by ``n x n`` product (``make(n)`` builds the operand), on ``clock``."""
    a = make(n)
    matmul(a, a)
    times = time_calls(lambda: matmul(a, a), seconds, min_calls=3, clock=clock)
    return 2 * n ** 3 / min(times) / 1e9


def encode_array(a):
    """An array for a JSON line: dtype, shape and base64 bytes (a list of 400k floats takes a second to encode)."""
    a = np.ascontiguousarray(a)
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(d):
    return np.frombuffer(base64.b64decode(d["data"]), dtype=d["dtype"]).reshape(d["shape"])


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(handlers):
    """The worker loop: read a JSON command per line, answer with one JSON line; ``{"cmd": "quit"}`` ends it.

    With ``BENCH_ONE_CPU=1`` in the environment (``run.py --threads 1``) the worker first holds itself to
    one CPU, so that no library runs anything on a second core (iwae_np's helper thread included).
    """
    if os.environ.get("BENCH_ONE_CPU") == "1" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request.pop("cmd")
        if cmd == "quit":
            break
        try:
            reply = {"ok": True, **handlers[cmd](**request)}
        except Exception as err:  # report to the driver, keep serving
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def log_k(k):
    return math.log(k)
