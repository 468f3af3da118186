#!/usr/bin/env python3
"""Benchmark iwae_np against a PyTorch CPU reference of the same model, on this machine.

One command runs it all::

    python3 bench/run.py                 # the full suite, writes bench/RESULTS.md (about 10 minutes)
    python3 bench/run.py --smoke --output /tmp/smoke.md   # seconds: tiny settings, same code paths

What it measures, per configuration, for numpy + autograd (``bench/numpy_worker.py``) and torch
(``bench/torch_reference.py``), each in its own process:

- the training step (sample, forward, backward, Adam) for both architectures of the paper, batch
  20 and 100, k in {1, 5, 50}, float32 and float64;
- ``L_5000`` evaluation throughput (images per second);
- peak memory of evaluation at k = 5,000 and k = 50,000 (fresh processes);
- the machine's matrix-multiply peak (GFLOP/s of a 1024^3 product), and the fraction of it each
  training configuration reaches (its dense-layer FLOPs per second over that peak).

Timings on a shared machine move 20-40% between runs, so the two workers are interleaved: for each
repeat and configuration the numpy worker times ``--seconds`` of steps, then the torch worker does
(the first one alternates between repeats); only one of them computes at any time. Each repeat
gives a median step time per worker and their ratio; the table shows the median over repeats of
the times and of the paired ratios, and the range of the ratios (the noise).

Before timing, both workers compute the IWAE bound and its gradient on the same parameters, data
and noise: they must agree to rounding, or the comparison is not of the same model.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import matmul_flops  # noqa: E402

TARGETS = {"train": 1.5, "eval": 1.0, "memory_mib": 1024}


class Worker:
    """A benchmark worker process answering one JSON command per line."""

    def __init__(self, name, script, threads=None, extra_env=()):
        self.name = name
        env = dict(os.environ)
        env.update(item.split("=", 1) for item in extra_env)
        if threads:  # BLAS and OpenMP threads of the worker (default: the libraries' own, all cores)
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        env["PYTHONPATH"] = os.path.dirname(HERE) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=os.path.dirname(HERE))

    def __call__(self, cmd, **kwargs):
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker died (command {cmd})")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"{self.name} worker, command {cmd} {kwargs}: {reply['error']}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def torch_available():
    try:
        import importlib.util
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return (f"{info.get('Model name', '?').strip()}, {info.get('CPU(s)', '?').strip()} CPUs, "
                f"L2 {info.get('L2 cache', '?').strip()}, L3 {info.get('L3 cache', '?').strip()}")
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def settle(seconds):
    # let the other worker's BLAS / OpenMP threads stop spinning before this one starts timing
    time.sleep(seconds)


def interleaved(workers, cmd, repeats, settle_s, key, warmup=False, **kwargs):
    """``{worker name: [value per repeat]}``; the worker that goes first alternates between repeats.

    ``warmup``: one untimed call per worker first (first-call costs: allocator, caches, lazy imports).
    """
    out = {w.name: [] for w in workers}
    for w in workers if warmup else []:
        w(cmd, **kwargs)
    for r in range(repeats):
        order = workers if r % 2 == 0 else workers[::-1]
        for w in order:
            settle(settle_s)
            out[w.name].append(key(w(cmd, **kwargs)))
    return out


def cross_check(workers, tol):
    """The bound and gradient of the same model on the same noise, in float64, from every worker."""
    replies = {w.name: w("bound_and_gradient", arch=arch, dtype="float64", k=5, batch=3)
               for w in workers for arch in ["one-layer"]}
    lines, ok = [], True
    ref = replies["numpy"]
    for name, r in replies.items():
        if name == "numpy":
            continue
        value_err = abs(r["value"] - ref["value"]) / abs(ref["value"])
        grad_err = max(float(np.max(np.abs(np.asarray(r["grads"][p]) - np.asarray(g))) / np.max(np.abs(g)))
                       for p, g in ref["grads"].items())
        ok &= value_err <= tol and grad_err <= tol
        lines.append(f"{name} vs numpy, one-layer, k = 5, float64, same parameters, data and noise: "
                     f"bound relative difference {value_err:.1e}, largest gradient relative difference {grad_err:.1e}")
    return ok, lines


def fmt_ms(s):
    return f"{1e3 * s:.2f}"


def summarize(values):
    return float(np.median(values)), float(np.min(values)), float(np.max(values))


def run(args):
    started = datetime.datetime.now(datetime.timezone.utc)
    names = ["numpy"] + (["torch"] if args.torch else [])
    workers = [Worker("numpy", "numpy_worker.py", args.threads, args.env)] + (
        [Worker("torch", "torch_reference.py", args.threads, args.env)] if args.torch else [])
    by_name = {w.name: w for w in workers}
    log = print
    try:
        versions = {w.name: w("versions") for w in workers}
        ok, lines = cross_check(workers, tol=1e-10) if args.torch else (True, ["torch not installed: numpy only"])
        for line in lines:
            log(line)
        if not ok:
            raise SystemExit("the torch reference does not compute the same model; not timing it")

        # ---- matrix-multiply peak ---------------------------------------------------------------
        peak = {}
        for dtype in args.dtypes:
            g = interleaved(workers, "gemm", args.repeats, args.settle, lambda r: r["gflops"], dtype=dtype,
                            n=args.gemm_n, seconds=args.seconds)
            peak[dtype] = {name: max(v) for name, v in g.items()}
            log(f"gemm {dtype}: " + ", ".join(f"{n} {v:.0f} GFLOP/s" for n, v in peak[dtype].items()))

        # ---- training step -------------------------------------------------------------------------
        train_rows = []
        for arch in args.archs if "train" in args.parts else []:
            for batch in args.batches:
                for k in args.ks:
                    for dtype in args.dtypes:
                        cfg = dict(arch=arch, batch=batch, k=k, dtype=dtype)
                        load = os.getloadavg()[0]
                        both = interleaved(workers, "train", args.repeats, args.settle,
                                           lambda r: (float(np.median(r["times"])), float(np.min(r["times"]))),
                                           seconds=args.seconds, **cfg)
                        t = {n: [m for m, _ in v] for n, v in both.items()}
                        best = {n: min(b for _, b in v) for n, v in both.items()}
                        row = {**cfg, "times": t, "best": best, "load": (load + os.getloadavg()[0]) / 2}
                        machine_peak = max(peak[dtype].values())
                        row["fraction_of_peak"] = {n: matmul_flops(arch, batch, k) / np.median(v) / 1e9 / machine_peak
                                                   for n, v in t.items()}
                        if args.torch:
                            row["ratios"] = [a / b for a, b in zip(t["numpy"], t["torch"])]
                        train_rows.append(row)
                        log(f"train {arch} batch {batch} k {k} {dtype}: "
                            + ", ".join(f"{n} {fmt_ms(np.median(v))} ms (best {fmt_ms(best[n])})" for n, v in t.items())
                            + (f", ratio {np.median(row['ratios']):.2f}, of best steps "
                               f"{best['numpy'] / best['torch']:.2f}" if args.torch else "")
                            + f", load {row['load']:.1f}")

        # ---- L_5000 throughput -----------------------------------------------------------------------
        eval_rows = []
        for arch in args.archs if "eval" in args.parts else []:
            for dtype in args.dtypes:
                cfg = dict(arch=arch, dtype=dtype, k=args.eval_k, n_images=args.eval_images,
                           batch=args.eval_batch, chunk=eval_chunk(arch, args.eval_k, args.eval_batch))
                ips = interleaved(workers, "eval", args.eval_repeats, args.settle,
                                  lambda r: r["images_per_second"], warmup=True, **cfg)
                row = {**cfg, "ips": ips}
                if args.eval_threads:
                    row["ips_threads"] = [by_name["numpy"]("eval", threads=args.eval_threads, **cfg)["images_per_second"]
                                          for _ in range(max(1, args.eval_repeats // 2))]
                if args.torch:
                    row["ratios"] = [b / a for a, b in zip(ips["numpy"], ips["torch"])]  # time ratio numpy / torch
                eval_rows.append(row)
                log(f"eval L_{args.eval_k} {arch} {dtype}: "
                    + ", ".join(f"{n} {np.median(v):.2f} images/s" for n, v in ips.items())
                    + (f", time ratio {np.median(row['ratios']):.2f}" if args.torch else "")
                    + (f", numpy on {args.eval_threads} threads {np.median(row['ips_threads']):.2f} images/s"
                       if args.eval_threads else ""))
    finally:
        for w in workers:
            w.close()

    # ---- evaluation memory, fresh processes ---------------------------------------------------------
    memory_rows = []
    for k in args.memory_ks if "memory" in args.parts else []:
        for dtype in args.memory_dtypes:
            arch = args.archs[0]
            batch = args.memory_batch
            cfg = dict(arch=arch, dtype=dtype, k=k, n_images=batch, batch=batch, chunk=eval_chunk(arch, k, batch))
            row = {**cfg, "mib": {}}
            for name, script in [("numpy", "numpy_worker.py"), ("torch", "torch_reference.py")]:
                if name not in names or (args.smoke and name != "numpy"):  # smoke: one fresh process
                    continue
                w = Worker(name, script, args.threads, args.env)
                try:
                    w("versions")
                    before = w("rss")["peak_rss_mib"]
                    after = w("eval", **cfg)["peak_rss_mib"]
                finally:
                    w.close()
                row["mib"][name] = (before, after)
            memory_rows.append(row)
            log(f"memory L_{k} {arch} {dtype}: " + ", ".join(
                f"{n} +{a - b:.0f} MiB (peak {a:.0f} MiB)" for n, (b, a) in row["mib"].items()))

    finished = datetime.datetime.now(datetime.timezone.utc)
    text = render(args, started, finished, versions, lines, peak, train_rows, eval_rows, memory_rows)
    if args.output:
        with open(args.output, "a" if args.append else "w") as f:
            f.write(("\n\n" if args.append else "") + text)
        log(f"wrote {args.output}")
    return 0


def eval_chunk(arch, k, batch):
    """The project's default samples per chunk (``iwae_np.experiments.evaluation.sample_chunk_size``), so both workers run the same shapes."""
    from iwae_np.experiments.evaluation import sample_chunk_size
    from iwae_np.model import get_architecture
    return sample_chunk_size(get_architecture(arch), k, batch)


def verdict(ratio, target):
    return "meets" if ratio <= target else "misses"


def render(args, started, finished, versions, check_lines, peak, train_rows, eval_rows, memory_rows):
    torch_on = args.torch
    v_np, v_t = versions["numpy"], versions.get("torch", {})
    out = ["# Benchmarks: iwae_np (numpy + autograd) against a PyTorch CPU reference", "",
           f"Generated by `python3 bench/run.py {' '.join(args.argv)}`".rstrip() + ".", "",
           f"- date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC",
           f"- CPU: {cpu_model()}",
           f"- load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
           "(the machine is shared; timings move 20-40% between runs, hence interleaved repeats and ratios)",
           f"- python {platform.python_version()}, numpy {v_np.get('numpy')}, scipy {v_np.get('scipy')}, "
           f"autograd {v_np.get('autograd')}, iwae_np {v_np.get('iwae_np')}; BLAS: {v_np.get('blas', '?')}",
           f"- torch {v_t.get('torch', 'not installed')}"
           + (f" ({v_t.get('torch_threads')} threads)" if v_t else ""),
           f"- worker environment: {' '.join(args.env) if args.env else 'as inherited (no allocator or thread settings)'}"
           + (f"; {args.threads} BLAS / OpenMP thread(s) per worker" if args.threads else ""),
           f"- repeats: {args.repeats} interleaved ({args.eval_repeats} for evaluation), {args.seconds} s of steps per worker per repeat; "
           "times are medians over repeats of per-repeat medians, ratios are medians of the per-repeat "
           "ratios (numpy time / torch time), with their range over the repeats in brackets", ""]
    out += ["Same model: " + line for line in check_lines] + [""]

    out += ["## Matrix-multiply peak (1024 x 1024 x 1024, best of the runs)", "",
            "| dtype | " + " | ".join(f"{n} GFLOP/s" for n in peak[args.dtypes[0]]) + " |",
            "|---|" + "---|" * len(peak[args.dtypes[0]])]
    for dtype, p in peak.items():
        out.append(f"| {dtype} | " + " | ".join(f"{v:.0f}" for v in p.values()) + " |")
    out += ["", "Fraction of peak: the dense layers' FLOPs of a step (forward and backward) per second, over the "
            "larger of the two peaks for that dtype.", ""]

    out += [f"## Training step (sample, forward, backward, Adam); target: numpy / torch <= {TARGETS['train']}", ""]
    out += ["Columns: median step times; the ratio numpy / torch (median of the per-repeat ratios, their range "
            "in brackets); the ratio of the two fastest single steps of the whole run (less sensitive to other "
            "jobs on the machine: a step that ran undisturbed); the share of the GEMM peak reached "
            "(median step); the 1-minute load average while the configuration ran (2 cores).", ""]
    head = "| architecture | batch | k | dtype | numpy ms | "
    head += ("torch ms | ratio [range] | ratio of best steps | numpy % peak | torch % peak | load |" if torch_on
             else "numpy % peak | load |")
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in train_rows:
        t = r["times"]
        line = f"| {r['arch']} | {r['batch']} | {r['k']} | {r['dtype']} | {fmt_ms(np.median(t['numpy']))} | "
        if torch_on:
            m, lo, hi = summarize(r["ratios"])
            line += (f"{fmt_ms(np.median(t['torch']))} | {m:.2f} [{lo:.2f}-{hi:.2f}] | "
                     f"{r['best']['numpy'] / r['best']['torch']:.2f} | "
                     f"{100 * r['fraction_of_peak']['numpy']:.0f} | {100 * r['fraction_of_peak']['torch']:.0f} | "
                     f"{r['load']:.1f} |")
        else:
            line += f"{100 * r['fraction_of_peak']['numpy']:.0f} | {r['load']:.1f} |"
        out.append(line)

    out += ["", f"## `L_{args.eval_k}` evaluation throughput; target: numpy time / torch time <= {TARGETS['eval']}", "",
            f"{args.eval_images} images per measurement, {args.eval_batch} images per pass, the project's default "
            "chunk of samples per pass (`iwae_np.experiments.evaluation.sample_chunk_size`) for both; numpy is "
            "`iwae_np.experiments.evaluation.iwae_log_likelihood` in the model's dtype."
            + (f" The last column is the bench prototype `streaming_iwae_bound` with the chunks on "
               f"{args.eval_threads} threads and BLAS on one thread each." if args.eval_threads else ""), ""]
    head = "| architecture | dtype | numpy images/s | "
    head += "torch images/s | time ratio [range] | ratio of best runs |" if torch_on else ""
    if args.eval_threads:
        head += f" numpy, {args.eval_threads} threads images/s |"
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in eval_rows:
        line = f"| {r['arch']} | {r['dtype']} | {np.median(r['ips']['numpy']):.2f} | "
        if torch_on:
            m, lo, hi = summarize(r["ratios"])
            line += (f"{np.median(r['ips']['torch']):.2f} | {m:.2f} [{lo:.2f}-{hi:.2f}] | "
                     f"{max(r['ips']['torch']) / max(r['ips']['numpy']):.2f} |")
        if args.eval_threads:
            line += f" {np.median(r['ips_threads']):.2f} |"
        out.append(line)

    out += ["", f"## Evaluation memory; target: under {TARGETS['memory_mib']} MiB at any k", "",
            "Fresh process per measurement; the increase of the peak resident set size over the idle worker "
            "(libraries imported), and the peak itself.", "",
            "| architecture | dtype | k | images per pass | samples per chunk | "
            + " | ".join(f"{n} increase MiB | {n} peak MiB" for n in (memory_rows[0]["mib"] if memory_rows else []))
            + " |"]
    out.append("|" + "---|" * (out[-1].count("|") - 1))
    for r in memory_rows:
        out.append(f"| {r['arch']} | {r['dtype']} | {r['k']} | {r['batch']} | {r['chunk']} | "
                   + " | ".join(f"{a - b:.0f} | {a:.0f}" for b, a in r["mib"].values()) + " |")
    return "\n".join(out) + "\n"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="seconds-long run of every code path (tiny settings)")
    p.add_argument("--parts", nargs="+", choices=["train", "eval", "memory"], default=["train", "eval", "memory"],
                   help="which measurements to run (default all)")
    p.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"), help="Markdown table to write ('' for none)")
    p.add_argument("--append", action="store_true", help="append to --output instead of replacing it")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="numpy only")
    p.add_argument("--threads", type=int, default=0,
                   help="BLAS / OpenMP threads per worker (default 0: the libraries' default, all cores)")
    p.add_argument("--env", nargs="+", default=[], metavar="KEY=VALUE",
                   help="environment variables for both workers alike (e.g. glibc's MALLOC_TRIM_THRESHOLD_)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.6, help="seconds of steps per worker per repeat")
    p.add_argument("--settle", type=float, default=0.2, help="pause before each timing, seconds")
    p.add_argument("--archs", nargs="+", default=["one-layer", "two-layer"])
    p.add_argument("--batches", type=int, nargs="+", default=[20, 100])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 50])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--gemm-n", type=int, default=1024)
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--eval-images", type=int, default=20)
    p.add_argument("--eval-repeats", type=int, default=3)
    p.add_argument("--eval-batch", type=int, default=20)
    p.add_argument("--eval-threads", type=int, default=2, help="also time the threaded prototype (0: skip)")
    p.add_argument("--memory-ks", type=int, nargs="+", default=[5000, 50000])
    p.add_argument("--memory-dtypes", nargs="+", default=["float64"])
    p.add_argument("--memory-batch", type=int, default=10, help="images in the memory measurement (one pass)")
    args = p.parse_args(argv)
    args.argv = list(argv)
    bad = [item for item in args.env if "=" not in item]
    if bad:
        p.error(f"--env takes KEY=VALUE, got {bad}")
    if args.smoke:
        # one thread: on a loaded machine, spinning BLAS / OpenMP threads make tiny runs take seconds
        args.repeats, args.seconds, args.settle, args.gemm_n, args.threads = 2, 0.02, 0.0, 256, 1
        args.archs, args.batches, args.ks, args.dtypes = ["one-layer"], [4], [2], ["float32", "float64"]
        args.eval_k, args.eval_images, args.eval_batch, args.eval_threads, args.eval_repeats = 50, 2, 2, 2, 2
        args.memory_ks, args.memory_dtypes, args.memory_batch = [100], ["float32"], 2
    if args.torch and not torch_available():
        print("torch is not installed (pip install torch==2.13.0): numpy only", file=sys.stderr)
        args.torch = False
    return args


if __name__ == "__main__":
    sys.exit(run(parse(sys.argv[1:])))
