"""Verify autograd's gradients of the VAE and IWAE objectives on small random models.

For each architecture (small versions of the paper's one- and two-layer models) and each
objective, every parameter array's gradient is compared against central finite differences
(tolerance 1e-6, relative to the array's largest entry) and against the paper's identity
grad L_k = sum_i w~_i grad log w_i (tolerance 1e-10), in float64. Prints a table and exits
1 if any row fails.
"""
import sys
import time

from .arguments import integer, number

HELP = "verify gradients against finite differences and the normalized-weight identity"


def add_arguments(p):
    p.add_argument("--k", type=integer(1), nargs="+", default=[1, 5, 50],
                   help="numbers of samples to check (default 1 5 50)")
    p.add_argument("--batch", type=integer(1), default=3, help="examples per batch (default 3)")
    p.add_argument("--seed", type=integer(0), default=0, help="seed of the random models, data and noise")
    p.add_argument("--architecture", choices=["one-layer", "two-layer", "both"], default="both")
    p.add_argument("--step", type=number(0, 1, low_open=True), default=1e-5,
                   help="finite-difference step, in (0, 1] (default 1e-5)")


def run(args):
    from ..verify.gradcheck import check_model, format_table
    if any(k < 1 for k in args.k):
        raise ValueError(f"the number of samples k must be >= 1, got {args.k}")
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    archs = ["one-layer", "two-layer"] if args.architecture == "both" else [args.architecture]
    rows, start = [], time.perf_counter()
    for arch in archs:
        for k in args.k:
            rows += check_model(arch, k=k, batch=args.batch, seed=args.seed, step=args.step)
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    worst = {}
    for r in rows:
        worst[r.reference] = max(worst.get(r.reference, 0.0), r.max_rel_error)
    print()
    print(f"{len(rows)} checks, {len(rows) - len(failed)} passed, {len(failed)} failed "
          f"in {time.perf_counter() - start:.1f} s; largest relative error: "
          + ", ".join(f"{ref} {err:.1e}" for ref, err in worst.items()))
    if failed:
        print("FAILED: " + ", ".join(f"{r.architecture} {r.objective} {r.reference} {r.parameter}"
                                     for r in failed), file=sys.stderr)
        return 1
    return 0
