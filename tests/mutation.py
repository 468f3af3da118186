"""Domain mutation testing: does the test suite catch the bugs an IWAE implementation is known to get wrong?

Each mutation below is one deliberate bug (the ones of issue 11 and the classic ones: drop ``- log k``,
drop ``log 2 pi``, swap x and 1 - x, tanh VJP ``1 - y``, ...). For each, this script copies the
repository (without ``.git``) into a temporary directory, applies the bug there by exact text
replacement (every ``old`` text must occur exactly once in its file, else the mutation is reported
*stale* and counts as a failure of this script), runs the tests that should catch it with
``PYTHONPATH`` pointing at the copy, and records *caught* (a test failed) or *survived* (all passed).
The unmutated copy is run first against every listed test file: it must pass.

Run on demand, not in the default suite (a few minutes on 2 cores)::

    python3 tests/mutation.py                 # every mutation; exit 1 if one survived or is stale
    python3 tests/mutation.py --list          # names and descriptions
    python3 tests/mutation.py --only drop-log-k tanh-vjp-1-minus-y
    python3 tests/mutation.py --jobs 2        # two mutations at a time
    python3 tests/mutation.py --full          # each mutation against the whole default suite (slow)
    python3 tests/mutation.py --only binarize-once --tests tests/test_training.py::test_each_pass_binarizes_afresh_in_a_fresh_order_without_replacement
"""
import argparse
import concurrent.futures as cf
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    edits: tuple  # ((path relative to the repository, old text, new text), ...)
    tests: tuple  # pytest arguments (files or node ids) expected to catch it


def m(name, description, tests, *edits):
    return Mutation(name, description, tuple(edits), tuple(tests))


MODEL = "iwae_np/model.py"
DENS = "iwae_np/densities.py"
PRIM = "iwae_np/fast/primitives.py"
FAST_OPT = "iwae_np/fast/optimizers.py"
TRAIN = "iwae_np/experiments/training.py"
EVAL = "iwae_np/experiments/evaluation.py"
T = "tests/"
FAST = T + "test_fast_engine.py"

MUTATIONS = [
    # --- the bugs issue 11 found no test for
    m("binarize-once", "binarize the training set once, at the start, instead of afresh each time an image is used",
      [T + "test_training.py"],
      (TRAIN, 'train_x=np.asarray(dataset.train))\n\n\ndef config_of_checkpoint',
       'train_x=binarize(np.asarray(dataset.train), np.random.default_rng(0)))\n\n\ndef config_of_checkpoint'),
      (TRAIN, '    if getattr(dataset, "fixed_binarization", False):\n        return np.asarray(x_gray, dtype=np.float64)\n'
              '    return binarize(x_gray, rng)',
       '    return np.asarray(x_gray, dtype=np.float64)')),
    m("log-sigma-as-log-variance", "read the log_sigma head as a log variance everywhere (sigma = exp(head / 2))",
      [T + "test_model.py", T + "test_densities.py"],
      (MODEL, 'return dense(net["mu"], t), dense(net["log_sigma"], t)',
       'return dense(net["mu"], t), 0.5 * dense(net["log_sigma"], t)')),
    m("adam-no-bias-correction", "Adam without its bias corrections 1 - b1^t and 1 - b2^t",
      [T + "test_optimizers.py"],
      ("iwae_np/optimizers.py", "m_hat = m / (1 - b1 ** t)", "m_hat = m"),
      ("iwae_np/optimizers.py", "v_hat = v / (1 - b2 ** t)", "v_hat = v")),
    # --- the classic ones
    m("drop-log-k", "the IWAE bound without - log k (logsumexp instead of log-mean-exp)",
      [T + "test_special.py", T + "test_model.py", T + "test_exact_likelihood.py"],
      ("iwae_np/special.py", "return logsumexp(a, axis=axis, keepdims=keepdims) - math.log(n)",
       "return logsumexp(a, axis=axis, keepdims=keepdims)")),
    m("eval-drop-log-k", "the L_5000 evaluation without - log k",
      [T + "test_evaluation.py"],
      (EVAL, "return _streaming_result(m, s) - math.log(k)", "return _streaming_result(m, s)")),
    m("drop-log-2pi", "Gaussian log densities without the log 2 pi constant",
      [T + "test_densities.py", T + "test_model.py"],
      (DENS, "LOG_2PI = math.log(2.0 * math.pi)", "LOG_2PI = 0.0")),
    m("swap-x-and-1-minus-x", "the Bernoulli likelihood of 1 - x",
      [T + "test_densities.py", T + "test_model.py"],
      (DENS, "return anp.sum(x * logits - softplus(logits), axis=-1)",
       "return anp.sum((1 - x) * logits - softplus(logits), axis=-1)")),
    m("normalized-weights-wrong-axis", "normalized weights over the examples instead of the samples",
      [T + "test_gradients.py", T + "test_estimators.py"],
      ("iwae_np/bounds.py", "return softmax(log_w, axis=0)", "return softmax(log_w, axis=1)")),
    m("dreg-w-for-w2", "DReG weighting the path gradient by w~ instead of w~^2",
      [T + "test_estimators.py"],
      ("iwae_np/estimators.py", "return SampleWeights(w, w, w * w)", "return SampleWeights(w, w, w)")),
    # --- the fast engine: each must be caught by its equality with the definition (tests/test_fast_engine.py),
    # not only by finite differences
    m("fast-tanh-vjp-1-minus-a", "the fast MLP's backpropagation through tanh with 1 - a instead of 1 - a^2",
      [FAST], (PRIM, "G = np.multiply(a, a, out=empty(a.shape, a.dtype))", "G = np.multiply(a, 1, out=empty(a.shape, a.dtype))")),
    m("fast-drop-bias-gradient", "the fast dense layer's VJP returns a zero bias gradient",
      [FAST], (PRIM, 'grad["b"] = unbroadcast(G.sum(axis=0), np.shape(layer["b"]))',
               'grad["b"] = np.zeros(np.shape(layer["b"]), G.dtype)')),
    m("fast-block-bound", "the cache-blocked loop stops one row short of each range",
      [FAST], (PRIM, "j = min(i + rows, hi)", "j = min(i + rows, hi - 1)")),
    m("fast-split-skips-a-row", "the helper thread's half starts one row late",
      [FAST], (PRIM, "other = _helper_thread().submit(run, half, n)", "other = _helper_thread().submit(run, half + 1, n)")),
    m("fast-helper-not-awaited", "a race: return before the helper thread has written its half",
      [FAST], (PRIM, "other.result()  # never return while the helper still writes", "pass")),
    m("fast-gaussian-vjp-sign", "the fast Gaussian density's log_sigma gradient z^2 + 1 instead of z^2 - 1",
      [FAST], (PRIM, "grads.append(unbroadcast(g * (z * z - 1), np.shape(log_sigma)))",
               "grads.append(unbroadcast(g * (z * z + 1), np.shape(log_sigma)))")),
    m("fast-bernoulli-1-minus-x", "the fast Bernoulli term of 1 - x, forward and gradient",
      [FAST], (PRIM, "np.multiply(xs, ls, out=t)  # x l", "np.multiply(1 - xs, ls, out=t)  # x l"),
      (PRIM, "np.subtract(_part(x_, i, l_.ndim), e, out=Gi)", "np.subtract(1 - _part(x_, i, l_.ndim), e, out=Gi)")),
    m("fast-adam-no-bias-correction", "the fast Adam without its bias corrections",
      [FAST], (FAST_OPT, "c1, c2 = 1 - b1 ** t, 1 - b2 ** t", "c1, c2 = 1.0, 1.0")),
    m("fast-keep-phi-score-in-stl", "the fast STL lets the score term through (log q at the live phi)",
      [FAST], ("iwae_np/fast/estimators.py", "return log_importance_weights(params, x, eps, log_q_params=phi_stopped)",
               "return log_importance_weights(params, x, eps)")),
    m("streaming-logsumexp-no-rescale", "the streaming logsumexp adds a chunk without rescaling the running sum",
      [T + "test_evaluation.py"],
      (EVAL, "carried = np.where(s > 0, s * np.exp(m - shift), 0.0)", "carried = np.where(s > 0, s, 0.0)")),
    m("active-units-over-samples", "active units from the sampled h (variance over samples) instead of the "
                                   "posterior means over the data",
      [T + "test_evaluation.py"],
      (EVAL, "_, q_stats = sample_posterior(params, xb, eps)", "h, q_stats = sample_posterior(params, xb, eps)"),
      (EVAL, "means[l].append(np.reshape(mu, (xb.shape[0], -1)))", "means[l].append(np.reshape(h[l], (xb.shape[0], -1)))")),
    m("schedule-first-stage", "the schedule starting at stage index 1 (3 passes at 1e-3 * 10^(-1/7))",
      [T + "test_training.py"],
      ("iwae_np/experiments/schedule.py", "for i in range(int(start_stage), int(stages))]",
       "for i in range(int(start_stage) + 1, int(stages) + 1)]")),
    m("fixed-data-order", "one data order for every pass instead of a fresh permutation each pass",
      [T + "test_training.py"],
      (TRAIN, 'if pos["step"] == 0:\n                state.perm', 'if state.perm is None:\n                state.perm')),
    m("minibatches-with-replacement", "minibatches drawn with replacement instead of a permutation",
      [T + "test_training.py"],
      (TRAIN, "state.perm = state.rng.permutation(len(state.train_x))",
       "state.perm = state.rng.integers(0, len(state.train_x), size=len(state.train_x))")),
    m("sample-from-softplus", "ancestral samples with softplus(logits) as the pixel probability instead of sigmoid",
      [T + "test_model.py"],
      (MODEL, 'x_mean = sigmoid(dense(params["p_x"]["logits"]', 'x_mean = np.logaddexp(0, dense(params["p_x"]["logits"]')),
    m("glorot-range", "Glorot's range sqrt(2 / (n_in + n_out)) instead of sqrt(6 / (n_in + n_out))",
      [T + "test_model.py"],
      ("iwae_np/networks.py", "r = math.sqrt(6.0 / (n_in + n_out))", "r = math.sqrt(2.0 / (n_in + n_out))")),
    m("output-bias-log-mean", "output bias log(mean) instead of logit(mean)",
      [T + "test_model.py"],
      (MODEL, 'params["p_x"]["logits"]["b"] = np.log(p / (1 - p)).astype(dtype)',
       'params["p_x"]["logits"]["b"] = np.log(p).astype(dtype)')),
    m("adam-eps-1e-8", "Adam's own eps = 1e-8 in place of the paper's 1e-4",
      [T + "test_training.py", T + "test_optimizers.py"],
      ("iwae_np/optimizers.py", 'PAPER_ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-4}',
       'PAPER_ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}')),
    m("test-binarization-not-fixed", "the test set binarized from fresh entropy instead of the fixed seed",
      [T + "test_data.py"],
      ("iwae_np/data/datasets.py", "return binarize(self.test, np.random.default_rng(seed))",
       "return binarize(self.test, np.random.default_rng())")),
    # --- reliability (issue 11): the repairs must be tested too
    m("resume-skips-a-cut-stage-end", "a resumed run does not end a stage whose end was cut short",
      [T + "test_run_dirs.py"],
      (TRAIN, "        if _stage_is_due(state):  # a resumed run", "        if False:  # a resumed run")),
    m("finished-run-keeps-stale-metrics", "resuming a finished run does not rebuild metrics.jsonl",
      [T + "test_run_dirs.py"],
      (TRAIN, '        if state.status == "finished":\n            write_metrics(state.run_dir, state.history)\n',
       '        if state.status == "finished":\n')),
    m("overwrite-users-files", "a fresh run writes over a config.json or metrics.jsonl it did not write",
      [T + "test_run_dirs.py"],
      (TRAIN, "    for name in (CONFIG_NAME, METRICS_NAME):\n        check_not_foreign(run_dir / name)\n", "")),
    m("keep-stale-temporaries", "temporaries of a killed writer are left in the run directory",
      [T + "test_run_dirs.py"],
      ("iwae_np/experiments/rundirs.py", "            for name in temporaries:\n                remove_stale_temporaries",
       "            for name in ():\n                remove_stale_temporaries")),
    m("orphaned-table-workers", "table pool workers do not watch their parent",
      [T + "test_run_dirs.py::test_table_workers_save_and_exit_when_the_table_process_is_killed"],
      ("iwae_np/experiments/table.py", "mp_context=context, initializer=_init_worker,",
       "mp_context=context, initializer=None,")),
    m("lr-unchecked", "train_step accepts lr = nan",
      [T + "test_validation.py"],
      (TRAIN, "    if not (_is_number(lr) and math.isfinite(lr) and lr > 0):\n", "    if False:\n")),
    m("log-weights-unchecked", "a non-finite log weight passes silently (L = -inf, zero gradient)",
      [T + "test_validation.py"],
      (MODEL, "    if validate:\n        check_log_weights_finite(", "    if False:\n        check_log_weights_finite("),
      ("iwae_np/fast/model.py", "    if validate:\n        check_log_weights_finite(", "    if False:\n        check_log_weights_finite(")),
    # issue 20: an old answer for a new question, a user's file touched, a lost save, a table that does not stop
    m("table-rerun-not-compared", "a table rerun with other options reuses the finished cells (the old answer)",
      [T + "test_table.py"],
      ("iwae_np/experiments/cells.py", "        if base is not None and eval_opts is not None:\n",
       "        if False:\n"),
      ("iwae_np/experiments/cells.py", "        check_cell_settings(cell, base, eval_opts, run_dir)\n        if eval_path",
       "        if eval_path")),
    m("any-png-is-ours", "a PNG of the user's taken for the project's figure and overwritten",
      [T + "test_user_files.py"],
      ("iwae_np/experiments/rundirs.py", '    if not data.startswith(b"\\x89PNG\\r\\n\\x1a\\n"):\n        return False',
       '    if True:\n        return True')),
    m("cleanup-any-temporary", "the stale-temporary cleanup removes a user's .config.json.backup.tmp",
      [T + "test_run_dirs.py::test_stale_temporaries_are_removed_when_a_run_starts_and_when_it_resumes"],
      ("iwae_np/files.py", "        if not is_temporary_of(tmp, path):\n            continue\n", "")),
    m("ctrl-c-inside-the-zip-write", "Ctrl-C not held back during a checkpoint write (zipfile's ValueError loses it)",
      [T + "test_run_dirs.py::test_a_real_ctrl_c_inside_the_final_checkpoint_write_saves_it"],
      ("iwae_np/experiments/checkpoints.py", "        if callable(handler):  # a Python handler",
       "        if False:  # a Python handler")),
    m("table-sigint-waits-for-cells", "SIGINT to the table process waits for every running cell to finish",
      [T + "test_table.py::test_sigint_to_the_table_process_alone_stops_its_workers"],
      ("iwae_np/experiments/table.py", "        _stop_workers(pool, futures)\n",
       "        pool.shutdown(wait=True, cancel_futures=True)\n")),
]


def copy_repository(dest):
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", "runs", "*.egg-info")
    shutil.copytree(ROOT, dest, ignore=ignore)


def apply(mutation, root):
    """Apply every edit; returns a list of problems (an ``old`` text not found exactly once)."""
    problems = []
    for rel, old, new in mutation.edits:
        path = root / rel
        text = path.read_text()
        count = text.count(old)
        if count != 1:
            problems.append(f"{rel}: the text to replace occurs {count} times: {old[:60]!r}")
            continue
        path.write_text(text.replace(old, new))
    return problems


def run_tests(root, tests, timeout, verbose=False):
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore", *tests]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, ""
    lines = proc.stdout.splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    detail = failed[0] if failed else " ".join(lines[-1:])
    if verbose and proc.returncode:
        detail += "\n" + "\n".join([line for line in lines if line.startswith("E ")][:40])
    return proc.returncode, time.monotonic() - start, detail


def check(mutation, tests, timeout):
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.name}-") as tmp:
        root = Path(tmp) / "repo"
        copy_repository(root)
        problems = apply(mutation, root)
        if problems:
            return mutation, "STALE", 0.0, "; ".join(problems)
        code, seconds, detail = run_tests(root, tests or mutation.tests, timeout)
        verdict = "caught" if code not in (0, "timeout") else ("SURVIVED" if code == 0 else "caught (timeout)")
        return mutation, verdict, seconds, detail


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these mutations")
    p.add_argument("--jobs", type=int, default=1, help="mutations checked at a time (default 1)")
    p.add_argument("--full", action="store_true", help="run the whole default suite against each mutation")
    p.add_argument("--tests", nargs="+", default=None, metavar="TEST",
                   help="run these tests (files or node ids) against each mutation instead of its own list")
    p.add_argument("--timeout", type=float, default=900, help="seconds per mutation (default 900)")
    p.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated copy")
    args = p.parse_args(argv)
    mutations = MUTATIONS
    if args.only:
        unknown = set(args.only) - {mu.name for mu in MUTATIONS}
        if unknown:
            p.error(f"unknown mutations {sorted(unknown)}")
        mutations = [mu for mu in MUTATIONS if mu.name in args.only]
    if args.list:
        for mu in mutations:
            print(f"{mu.name:34s} {mu.description}  [{', '.join(mu.tests)}]")
        return 0
    full = ["tests"] if args.full else args.tests
    if not args.no_baseline:
        baseline = sorted({t.split("::")[0] for mu in mutations for t in (full or mu.tests)})
        with tempfile.TemporaryDirectory(prefix="mutation-baseline-") as tmp:
            root = Path(tmp) / "repo"
            copy_repository(root)
            code, seconds, detail = run_tests(root, baseline, args.timeout * 2, verbose=True)
        print(f"baseline (no mutation) on {len(baseline)} test files: "
              f"{'passed' if code == 0 else 'FAILED'} in {seconds:.0f} s", flush=True)
        if code != 0:
            print(f"  {detail}")
            return 1
    print("| mutation | verdict | seconds | first failing test |\n|---|---|---|---|", flush=True)
    bad = 0
    with cf.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = [pool.submit(check, mu, full, args.timeout) for mu in mutations]
        for future in futures:  # in the order of the list
            mutation, verdict, seconds, detail = future.result()
            bad += verdict in ("SURVIVED", "STALE")
            detail = detail.replace("FAILED ", "").replace("ERROR ", "").replace("|", "/")
            print(f"| {mutation.name} | {verdict} | {seconds:.0f} | {detail[:150]} |", flush=True)
    print(f"\n{len(mutations) - bad} of {len(mutations)} mutations caught"
          + (f"; {bad} survived or stale" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
