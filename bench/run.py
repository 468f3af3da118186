#!/usr/bin/env python3
"""Benchmark iwae_np against the fastest of several PyTorch CPU implementations of the same model, on this machine.

One command runs it all and writes bench/RESULTS.md (nothing in it is written by hand)::

    python3 bench/run.py                 # the full suite (about 20-25 minutes on 2 cores)
    python3 bench/run.py --smoke --output /tmp/smoke.md   # seconds: tiny settings, same code paths

What it measures, per configuration, for numpy + autograd (``bench/numpy_worker.py``) and PyTorch
(``bench/torch_reference.py``: every eager variant in one process, ``torch.compile`` in another):

- the training step (sample, forward, backward, Adam) for both architectures of the paper, batch
  20, k in {1, 5, 50}, float32 and float64: iwae_np against the *fastest* torch eager variant of
  that configuration (BCE or softplus, separate or fused heads, nested or flat parameters, Adam
  loop / foreach / fused), every variant's time and its ratio to the fastest, ``torch.compile``
  separately; the fraction of the matrix-multiply peak each reaches;
- ``L_5000`` evaluation throughput (images per second);
- peak memory of evaluation at k = 5,000 and k = 50,000 (fresh processes).

Timings on a shared machine move 20-40% between runs, so the workers are interleaved: for each
repeat and configuration the numpy worker times ``--seconds`` of steps, then the torch worker
times every variant (the first one alternates between repeats); only one process computes at any
time. Each repeat gives a median step time per implementation; the ratio of a repeat compares
numpy with the fastest variant's time in that same repeat, and the table shows the median over
repeats and the range. The load average is recorded per configuration: a run under load cannot
decide a target.

Before timing, every torch variant computes the IWAE bound and its gradient on the same
parameters, data and noise as numpy, in float64, for both architectures: they must agree to
rounding, or the comparison is not of the same model.
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
from common import decode_array, matmul_flops  # noqa: E402

#: Targets (issue 12): median ratio numpy / fastest torch at batch 20, per k; share of the GEMM
#: peak at k = 50; L_5000 time ratio; evaluation memory.
TRAIN_TARGETS = {1: 1.2, 5: 1.2, 50: 1.0}
PEAK_TARGET = 0.5
EVAL_TARGET = 1.0
MEMORY_TARGET_MIB = 1024


class Worker:
    """A benchmark worker process answering one JSON command per line."""

    def __init__(self, name, script, threads=None, extra_env=()):
        self.name = name
        env = dict(os.environ)
        env.update(item.split("=", 1) for item in extra_env)
        if threads:  # BLAS and OpenMP threads of the worker (default: the libraries' own, all cores)
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        if threads == 1:  # and one CPU: no library's helper thread runs beside it
            env["BENCH_ONE_CPU"] = "1"
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


def compiler_version():
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0] if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "no gcc"


def settle(seconds):
    # let the other worker's BLAS / OpenMP threads stop spinning before this one starts timing
    time.sleep(seconds)


def median_time(reply):
    return float(np.median(reply["times"]))


def cross_check(numpy_worker, torch_workers, archs, tol):
    """Bound and gradient of the same model on the same noise, in float64: numpy against every torch variant."""
    lines, ok = [], True
    for arch in archs:
        ref = numpy_worker("bound_and_gradient", arch=arch, dtype="float64", k=5, batch=3)
        ref_grads = {p: decode_array(g) for p, g in ref["grads"].items()}
        worst_value, worst_grad = 0.0, 0.0
        for worker, variant in torch_workers:
            r = worker("bound_and_gradient", arch=arch, dtype="float64", k=5, batch=3, **variant)
            worst_value = max(worst_value, abs(r["value"] - ref["value"]) / abs(ref["value"]))
            worst_grad = max(worst_grad, max(
                float(np.max(np.abs(decode_array(r["grads"][p]) - g)) / np.max(np.abs(g)))
                for p, g in ref_grads.items()))
        ok &= worst_value <= tol and worst_grad <= tol
        lines.append(f"{arch}, k = 5, float64, same parameters, data and noise, every torch implementation "
                     f"({len(torch_workers)}) against numpy: largest bound relative difference {worst_value:.1e}, "
                     f"largest gradient relative difference {worst_grad:.1e}")
    return ok, lines


def fmt_ms(s):
    return f"{1e3 * s:.2f}"


def summarize(values):
    return float(np.median(values)), float(np.min(values)), float(np.max(values))


def time_configuration(cfg, numpy_worker, torch_worker, variants, args):
    """Interleaved repeats at one configuration: ``{"numpy": [s per repeat], variant: [s per repeat]}``."""
    times = {"numpy": [], "definition": []}
    times.update({v: [] for v in variants})
    for r in range(args.repeats):
        jobs = [("numpy", lambda: numpy_worker("train", seconds=args.seconds, clock=args.clock, **cfg)),
                ("definition", lambda: numpy_worker("train", seconds=args.seconds, clock=args.clock,
                                                    engine="definition", **cfg))]
        if torch_worker is not None:
            jobs.append(("torch", None))
        for name, call in (jobs if r % 2 == 0 else jobs[::-1]):
            settle(args.settle)
            if name in ("numpy", "definition"):
                times[name].append(median_time(call()))
            else:
                for v in variants:
                    times[v].append(median_time(torch_worker("train", seconds=args.seconds, variant=v,
                                                             clock=args.clock, **cfg)))
    return times


def run(args):
    started = datetime.datetime.now(datetime.timezone.utc)
    numpy_worker = Worker("numpy", "numpy_worker.py", args.threads, args.env)
    torch_worker = Worker("torch", "torch_reference.py", args.threads, args.env) if args.torch else None
    compile_worker = Worker("torch.compile", "torch_reference.py", args.threads, args.env) if args.compile else None
    workers = [w for w in (numpy_worker, torch_worker, compile_worker) if w is not None]
    log = print
    compile_rows, compile_error = [], None
    try:
        versions = {w.name: w("versions") for w in workers}
        variants = torch_worker("variants")["variants"] if torch_worker else []
        if args.variants:
            unknown = sorted(set(args.variants) - set(variants))
            if unknown:
                raise SystemExit(f"unknown torch variants {unknown}; this build has {variants}")
            variants = list(args.variants)
        compiled = compile_worker("variants", compile=True)["variants"][0] if compile_worker else None
        checked = [(torch_worker, {"variant": v}) for v in torch_worker("variants")["variants"]] if torch_worker else []
        if torch_worker:
            ok, lines = cross_check(numpy_worker, checked, args.archs, tol=1e-10)
            for line in lines:
                log(line)
            if not ok:
                raise SystemExit("a torch variant does not compute the same model; not timing it")
        else:
            lines = ["torch not installed: numpy only"]

        # ---- matrix-multiply peak ---------------------------------------------------------------
        peak = {}
        for dtype in args.dtypes:
            peak[dtype] = {}
            for r in range(args.repeats):
                for w in (workers[:2] if r % 2 == 0 else workers[:2][::-1]):
                    settle(args.settle)
                    g = w("gemm", dtype=dtype, n=args.gemm_n, seconds=args.seconds, clock=args.clock)["gflops"]
                    peak[dtype][w.name] = max(peak[dtype].get(w.name, 0.0), g)
            log(f"gemm {dtype}: " + ", ".join(f"{n} {v:.0f} GFLOP/s" for n, v in peak[dtype].items()))

        # ---- training step -------------------------------------------------------------------------
        train_rows = []
        for arch in args.archs if "train" in args.parts else []:
            for k in args.ks:
                for dtype in args.dtypes:
                    cfg = dict(arch=arch, batch=args.batch, k=k, dtype=dtype)
                    load = os.getloadavg()[0]
                    times = time_configuration(cfg, numpy_worker, torch_worker, variants, args)
                    row = {**cfg, "times": times, "load": (load + os.getloadavg()[0]) / 2}
                    flops = matmul_flops(arch, args.batch, k)
                    machine_peak = max(peak[dtype].values())
                    row["peak"] = {n: flops / np.median(t) / 1e9 / machine_peak for n, t in times.items()}
                    if variants:
                        fastest = min(variants, key=lambda v: np.median(times[v]))
                        row["fastest"] = fastest
                        row["ratios"] = [a / b for a, b in zip(times["numpy"], times[fastest])]
                    train_rows.append(row)
                    log(f"train {arch} k {k} {dtype}: numpy {fmt_ms(np.median(times['numpy']))} ms"
                        + (f", fastest torch {row['fastest']} {fmt_ms(np.median(times[row['fastest']]))} ms, "
                           f"ratio {np.median(row['ratios']):.2f}" if variants else "")
                        + f", numpy {100 * row['peak']['numpy']:.0f}% of peak, load {row['load']:.1f}")

        # ---- torch.compile, separately -----------------------------------------------------------
        if compile_worker is not None and "train" in args.parts:
            try:
                for arch in args.archs:
                    for k in args.ks:
                        for dtype in args.dtypes:
                            cfg = dict(arch=arch, batch=args.batch, k=k, dtype=dtype)
                            build = compile_worker("setup", compile=True, **cfg)["seconds"]
                            row = next(r for r in train_rows if all(r[key] == v for key, v in cfg.items()))
                            t = []
                            for r in range(args.repeats):
                                settle(args.settle)
                                t.append(median_time(compile_worker("train", seconds=args.seconds, compile=True,
                                                                    clock=args.clock, **cfg)))
                            compile_rows.append({**cfg, "variant": compiled, "build": build, "times": t,
                                                 "ratio": float(np.median(row["times"]["numpy"]) / np.median(t))})
                            log(f"torch.compile {arch} k {k} {dtype}: {fmt_ms(np.median(t))} ms "
                                f"(compiled in {build:.0f} s)")
            except RuntimeError as err:  # report why, keep the rest of the run
                compile_error = str(err).splitlines()[0][:400]
                log(f"torch.compile failed: {compile_error}")

        # ---- L_5000 throughput -----------------------------------------------------------------------
        eval_rows = []
        pair = [numpy_worker] + ([torch_worker] if torch_worker else [])
        for arch in args.archs if "eval" in args.parts else []:
            for dtype in args.dtypes:
                cfg = dict(arch=arch, dtype=dtype, k=args.eval_k, n_images=args.eval_images,
                           batch=args.eval_batch, chunk=eval_chunk(arch, args.eval_k, args.eval_batch))
                for w in pair:  # warm-up
                    w("eval", **cfg)
                ips = {w.name: [] for w in pair}
                for r in range(args.eval_repeats):
                    for w in (pair if r % 2 == 0 else pair[::-1]):
                        settle(args.settle)
                        ips[w.name].append(w("eval", **cfg)["images_per_second"])
                row = {**cfg, "ips": ips}
                if torch_worker:
                    row["ratios"] = [b / a for a, b in zip(ips["numpy"], ips["torch"])]  # time ratio numpy / torch
                eval_rows.append(row)
                log(f"eval L_{args.eval_k} {arch} {dtype}: "
                    + ", ".join(f"{n} {np.median(v):.2f} images/s" for n, v in ips.items())
                    + (f", time ratio {np.median(row['ratios']):.2f}" if torch_worker else ""))
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
                if (name == "torch" and not args.torch) or (args.smoke and name != "numpy"):
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
    text = render(args, started, finished, versions, lines, peak, variants, train_rows, compile_rows,
                  compile_error, eval_rows, memory_rows)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        log(f"wrote {args.output}")
    return 0


def eval_chunk(arch, k, batch):
    """The project's default samples per chunk (``iwae_np.experiments.evaluation.sample_chunk_size``), so both workers run the same shapes."""
    from iwae_np.experiments.evaluation import sample_chunk_size
    from iwae_np.model import get_architecture
    return sample_chunk_size(get_architecture(arch), k, batch)


def verdict(ok):
    return "meets" if ok else "misses"


def render(args, started, finished, versions, check_lines, peak, variants, train_rows, compile_rows,
           compile_error, eval_rows, memory_rows):
    v_np, v_t = versions["numpy"], versions.get("torch", {})
    out = ["# Benchmarks: iwae_np (numpy + autograd) against the fastest PyTorch CPU implementation", "",
           f"Generated by `python3 bench/run.py {' '.join(args.argv)}`".rstrip() + " in one run; nothing below is "
           "written by hand.", "",
           f"- date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC",
           f"- CPU: {cpu_model()}",
           f"- load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
           "per configuration below. The machine is shared: a ratio measured under load cannot decide a target",
           f"- python {platform.python_version()}, numpy {v_np.get('numpy')}, scipy {v_np.get('scipy')}, "
           f"autograd {v_np.get('autograd')}, iwae_np {v_np.get('iwae_np')}; BLAS: {v_np.get('blas', '?')}",
           f"- torch {v_t.get('torch', 'not installed')}"
           + (f" ({v_t.get('torch_threads')} threads; fused Adam: {'yes' if v_t.get('fused_adam') else 'no'}); "
              f"torch.compile builds with {compiler_version()}" if v_t else ""),
           f"- worker environment: {' '.join(args.env) if args.env else 'as inherited (no allocator or thread settings)'}"
           + (f"; {args.threads} BLAS / OpenMP thread(s) per worker" if args.threads else "")
           + ("; each worker held to one CPU" if args.threads == 1 else "")
           + ("; training steps timed by **CPU time** of the worker process (`--clock cpu`), not wall time"
              if args.clock == "cpu" else ""),
           f"- repeats: {args.repeats} interleaved ({args.eval_repeats} for evaluation), {args.seconds} s of steps "
           "per implementation per repeat; times are medians over repeats of per-repeat medians; a ratio is the "
           "median over repeats of numpy's time over the fastest torch variant's time in the same repeat, its "
           "range over the repeats in brackets", ""]
    out += ["Same model: " + line for line in check_lines] + [""]

    out += summary(train_rows, compile_rows, eval_rows, memory_rows, bool(variants))

    out += ["## Matrix-multiply peak (1024 x 1024 x 1024, best of the runs)", "",
            "| dtype | " + " | ".join(f"{n} GFLOP/s" for n in peak[args.dtypes[0]]) + " |",
            "|---|" + "---|" * len(peak[args.dtypes[0]])]
    for dtype, p in peak.items():
        out.append(f"| {dtype} | " + " | ".join(f"{v:.0f}" for v in p.values()) + " |")
    out += ["", "Fraction of peak: the dense layers' FLOPs of a step (forward and backward) per second, over the "
            "larger of the two peaks for that dtype" + (" (both timed by CPU time, `--clock cpu`)" if args.clock == "cpu"
                                                         else "") + ".", ""]

    out += ["## Training step (sample, forward, backward, Adam), batch "
            f"{args.batch}: iwae_np against the fastest torch eager variant", "",
            "Targets: median ratio <= " + ", ".join(f"{t} at k = {k}" for k, t in TRAIN_TARGETS.items())
            + f"; at least {100 * PEAK_TARGET:.0f}% of the GEMM peak at k = 50.", "",
            "numpy is iwae_np's fast engine (`iwae_np.fast`, what training uses and the targets are about); "
            "definition is the same step computed by the definition (the paper in plain autograd, "
            "`--engine definition`): the price of reading, equal numbers (`tests/test_fast_engine.py`).", ""]
    head = "| architecture | k | dtype | numpy ms | definition ms (x fast) | "
    head += ("fastest torch variant | its ms | ratio [range] | target | numpy % peak | torch % peak | "
             "torch.compile ms | numpy / compile | load |" if variants else "numpy % peak | load |")
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in train_rows:
        t = r["times"]
        slower = np.median(t["definition"]) / np.median(t["numpy"])
        line = (f"| {r['arch']} | {r['k']} | {r['dtype']} | {fmt_ms(np.median(t['numpy']))} | "
                f"{fmt_ms(np.median(t['definition']))} (x{slower:.1f}) | ")
        if variants:
            m, lo, hi = summarize(r["ratios"])
            target = TRAIN_TARGETS.get(r["k"])
            c = next((c for c in compile_rows if all(c[key] == r[key] for key in ("arch", "k", "dtype"))), None)
            line += (f"`{r['fastest']}` | {fmt_ms(np.median(t[r['fastest']]))} | {m:.2f} [{lo:.2f}-{hi:.2f}] | "
                     + (f"<= {target} {verdict(m <= target)}" if target else "–") + " | "
                     f"{100 * r['peak']['numpy']:.0f} | {100 * r['peak'][r['fastest']]:.0f} | "
                     + (f"{fmt_ms(np.median(c['times']))} | {c['ratio']:.2f} | " if c else "– | – | ")
                     + f"{r['load']:.1f} |")
        else:
            line += f"{100 * r['peak']['numpy']:.0f} | {r['load']:.1f} |"
        out.append(line)

    if variants and train_rows:
        out += ["", "### Every torch eager variant", "",
                "Median step time in ms, and in brackets its ratio to the fastest torch variant of the configuration. "
                "Variants are `loss/heads/params/adam`: `bce` is `binary_cross_entropy_with_logits` on x expanded "
                "to the logits, `softplus` is `x * l - softplus(l)`; heads `separate` (two `addmm`) or `fused` "
                "(one `addmm` into both heads' columns); params `nested` (a leaf tensor per array) or `flat` "
                "(views into one flat tensor, gradients into one flat gradient, Adam on the flat tensor); "
                "`torch.optim.Adam` with `foreach=False` (`loop`), `foreach=True` or `fused=True`. "
                "The iwae_np rows are its two engines.", ""]
        cols = [f"{r['arch']} k={r['k']} {r['dtype'][5:]}" for r in train_rows]
        out += ["| variant | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for name in ["numpy", "definition"] + list(variants):
            cells = []
            for r in train_rows:
                best = np.median(r["times"][r["fastest"]])
                t = np.median(r["times"][name])
                cells.append(f"{fmt_ms(t)} ({t / best:.2f})")
            label = {"numpy": "iwae_np (fast engine)", "definition": "iwae_np (definition)"}.get(name, f"`{name}`")
            out.append(f"| {label} | " + " | ".join(cells) + " |")

    out += ["", "### torch.compile", ""]
    if compile_rows:
        out += [f"The variant `{compile_rows[0]['variant']}` with its forward under `torch.compile(dynamic=False)` "
                "(inductor; AOTAutograd generates the backward), the optimizer eager. Reported apart: compilation "
                "takes seconds per shape, and it is not what the eager variants above measure.", "",
                "| architecture | k | dtype | compile s | step ms | numpy / compile |", "|---|---|---|---|---|---|"]
        for c in compile_rows:
            out.append(f"| {c['arch']} | {c['k']} | {c['dtype']} | {c['build']:.0f} | {fmt_ms(np.median(c['times']))} "
                       f"| {c['ratio']:.2f} |")
    elif compile_error:
        out.append(f"torch.compile failed on this machine: `{compile_error}`")
    else:
        out.append("Not run (`--no-compile`, or torch not installed).")

    out += ["", f"## `L_{args.eval_k}` evaluation throughput; target: numpy time / torch time <= {EVAL_TARGET}", "",
            f"{args.eval_images} images per measurement, {args.eval_batch} images per pass, the project's default "
            "chunk of samples per pass (`iwae_np.experiments.evaluation.sample_chunk_size`) for both; numpy is "
            "`iwae_np.experiments.evaluation.iwae_log_likelihood` in the model's dtype, torch the same "
            "streaming computation under `inference_mode` with the fastest formulation (`softplus`, fused heads).", ""]
    head = "| architecture | dtype | numpy images/s | "
    head += "torch images/s | time ratio [range] |" if eval_rows and "torch" in eval_rows[0]["ips"] else ""
    out += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in eval_rows:
        line = f"| {r['arch']} | {r['dtype']} | {np.median(r['ips']['numpy']):.2f} | "
        if "ratios" in r:
            m, lo, hi = summarize(r["ratios"])
            line += f"{np.median(r['ips']['torch']):.2f} | {m:.2f} [{lo:.2f}-{hi:.2f}] |"
        out.append(line)

    out += ["", f"## Evaluation memory; target: under {MEMORY_TARGET_MIB} MiB at any k", "",
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


def summary(train_rows, compile_rows, eval_rows, memory_rows, torch_on):
    """The targets, each with the measurement that decides it (computed, not written)."""
    if not torch_on:
        return []
    out = ["## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for k, target in TRAIN_TARGETS.items():
        rows = [r for r in train_rows if r["k"] == k]
        if rows:
            worst = max(rows, key=lambda r: np.median(r["ratios"]))
            m = float(np.median(worst["ratios"]))
            met = sum(np.median(r["ratios"]) <= target for r in rows)
            out.append(f"| training step, k = {k}: numpy / fastest torch <= {target} | {met} of {len(rows)} "
                       f"configurations; worst {m:.2f} ({worst['arch']}, {worst['dtype']}, load {worst['load']:.1f}) "
                       f"| {verdict(met == len(rows))} |")
    rows = [r for r in train_rows if r["k"] == 50]
    if rows:
        low = min(rows, key=lambda r: r["peak"]["numpy"])
        met = sum(r["peak"]["numpy"] >= PEAK_TARGET for r in rows)
        out.append(f"| k = 50: numpy at >= {100 * PEAK_TARGET:.0f}% of the GEMM peak | {met} of {len(rows)}; lowest "
                   f"{100 * low['peak']['numpy']:.0f}% ({low['arch']}, {low['dtype']}) | {verdict(met == len(rows))} |")
    if eval_rows and "ratios" in eval_rows[0]:
        worst = max(float(np.median(r["ratios"])) for r in eval_rows)
        out.append(f"| `L_5000`: numpy time / torch time <= {EVAL_TARGET} | worst {worst:.2f} | "
                   f"{verdict(worst <= EVAL_TARGET)} |")
    if memory_rows:
        worst = max(a for r in memory_rows for name, (b, a) in r["mib"].items() if name == "numpy")
        out.append(f"| evaluation memory < {MEMORY_TARGET_MIB} MiB at any k | numpy peak {worst:.0f} MiB | "
                   f"{verdict(worst < MEMORY_TARGET_MIB)} |")
    if compile_rows:
        out.append(f"| (for information) numpy / torch.compile | median {np.median([c['ratio'] for c in compile_rows]):.2f}, "
                   f"range {min(c['ratio'] for c in compile_rows):.2f}-{max(c['ratio'] for c in compile_rows):.2f} | – |")
    return out + [""]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="seconds-long run of every code path (tiny settings)")
    p.add_argument("--parts", nargs="+", choices=["train", "eval", "memory"], default=["train", "eval", "memory"],
                   help="which measurements to run (default all)")
    p.add_argument("--output", default=os.path.join(HERE, "RESULTS.md"), help="Markdown table to write ('' for none)")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="numpy only")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    p.add_argument("--variants", nargs="+", default=None, metavar="LOSS/HEADS/PARAMS/ADAM",
                   help="torch eager variants to time (default: every one this build has)")
    p.add_argument("--threads", type=int, default=0,
                   help="BLAS / OpenMP threads per worker (default 0: the libraries' default, all cores); "
                        "1 also holds each worker to one CPU")
    p.add_argument("--env", nargs="+", default=[], metavar="KEY=VALUE",
                   help="environment variables for every worker alike (e.g. glibc's MALLOC_TRIM_THRESHOLD_)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=0.4, help="seconds of steps per implementation per repeat")
    p.add_argument("--settle", type=float, default=0.2, help="pause before each worker's timing, seconds")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time training steps by the wall clock (default) or by the CPU time of the worker process, "
                        "which other jobs disturb far less (use with --threads 1 on a busy machine)")
    p.add_argument("--archs", nargs="+", default=["one-layer", "two-layer"])
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 50])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--gemm-n", type=int, default=1024)
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--eval-images", type=int, default=20)
    p.add_argument("--eval-repeats", type=int, default=3)
    p.add_argument("--eval-batch", type=int, default=20)
    p.add_argument("--memory-ks", type=int, nargs="+", default=[5000, 50000])
    p.add_argument("--memory-dtypes", nargs="+", default=["float64"])
    p.add_argument("--memory-batch", type=int, default=10, help="images in the memory measurement (one pass)")
    args = p.parse_args(argv)
    args.argv = list(argv)
    bad = [item for item in args.env if "=" not in item]
    if bad:
        p.error(f"--env takes KEY=VALUE, got {bad}")
    if args.smoke:
        # one thread: on a loaded machine, spinning BLAS / OpenMP threads make tiny runs take seconds;
        # no torch.compile (it builds C++ for tens of seconds per shape)
        args.repeats, args.seconds, args.settle, args.gemm_n, args.threads = 2, 0.02, 0.0, 256, 1
        args.archs, args.batch, args.ks, args.dtypes, args.compile = ["one-layer"], 4, [2], ["float32", "float64"], False
        args.eval_k, args.eval_images, args.eval_batch, args.eval_repeats = 50, 2, 2, 2
        # every variant is cross-checked; three are timed (one per Adam implementation)
        args.variants = args.variants or ["bce/separate/nested/loop", "softplus/fused/flat/foreach",
                                          "softplus/separate/nested/fused"]
        args.memory_ks, args.memory_dtypes, args.memory_batch = [100], ["float32"], 2
    if args.torch and not torch_available():
        print("torch is not installed (pip install torch==2.13.0): numpy only", file=sys.stderr)
        args.torch = False
    args.compile = args.compile and args.torch
    return args


if __name__ == "__main__":
    sys.exit(run(parse(sys.argv[1:])))
