"""Run the paper's Table 1 grid and print test NLL and active units beside the paper's numbers.

Cells: VAE and IWAE x k in --k x --layers stochastic layers (default: all 12 of the paper).
Each cell trains (iwae-np train) into OUT/<objective>-k<k>-L<layers>/ and is evaluated
(iwae-np evaluate) into evaluation.json there. Independent cells run in parallel processes,
up to --jobs (default: the number of cores), with BLAS at one thread each. Running the same
command again skips finished cells and resumes interrupted ones. IWAE at k = 1 is the VAE
at k = 1 (L_1 = L_vae, same gradient), so that cell is trained once and shown in both columns.

Writes OUT/table.md, OUT/results.json and the figures in OUT/figures/ (training curves, NLL
against k, histograms of log A_u, samples and reconstructions), and prints the table and the
paper's claims with verdicts from paired statistics over the test images (iwae-np claims).

Examples:
  # the README's main job: Table 1's claims on Fashion-MNIST (offline; 8 passes per cell, 13 min on 2 cores)
  iwae-np table --data fashion-mnist --layers 1 --k 1 50 --stages 3 --pass-scale 0.6 \\
      --test-subset 1000 --eval-k 5000 --eval-train-subset 0 --out runs/main
  # the paper's full protocol on MNIST (3,280 passes per cell: days per cell on a CPU core)
  iwae-np table --data mnist --download --out runs/table-mnist
  # the same on a Dask cluster (each cell a task; --out on a file system every worker sees)
  iwae-np table --data mnist --download --scheduler tcp://scheduler-host:8786 --out /shared/table-mnist
"""
import sys
import time
from pathlib import Path

from .arguments import integer

HELP = "run the Table 1 grid (VAE/IWAE x k x layers) in parallel and print it beside the paper's"


def add_arguments(p):
    from ..experiments.table import TABLE_OBJECTIVES
    from .train import add_data_arguments, add_model_arguments, add_schedule_arguments
    p.add_argument("--out", default=None, help="output directory (default runs/table-<data>)")
    p.add_argument("--objectives", nargs="+", choices=list(TABLE_OBJECTIVES), default=["vae", "iwae"],
                   help="objectives to compare (default vae iwae)")
    p.add_argument("--k", type=integer(1), nargs="+", default=[1, 5, 50], help="values of k (default 1 5 50)")
    p.add_argument("--layers", type=int, nargs="+", choices=[1, 2], default=[1, 2],
                   help="numbers of stochastic layers (default 1 2)")
    p.add_argument("--jobs", type=integer(1), default=None, help="parallel processes (default: the number of cores)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run each cell as a task on the Dask cluster of this scheduler (tcp://host:8786); --out "
                        "must be a directory every worker sees (needs pip install -e '.[cluster]')")
    add_data_arguments(p)
    add_model_arguments(p, layers_option=False)
    add_schedule_arguments(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-k", type=integer(1), default=5000, help="samples of the test log-likelihood (default 5000)")
    g.add_argument("--eval-train-subset", type=integer(0), default=1000, metavar="N",
                   help="training images for the over-fitting gap (default 1000; 0: skip)")
    g.add_argument("--eval-seed", type=integer(0), default=0, help="seed of the evaluation noise")
    g.add_argument("--no-figures", action="store_true", help="do not write the figures")
    g.add_argument("--no-progress", action="store_true", help="no progress bars (with --jobs 1)")


def run(args):
    from ..data import dataset_from_spec
    from ..experiments.claims import claims_report
    from ..experiments.figures import make_table_figures
    from ..experiments.rundirs import check_not_foreign, check_output_dir, claim_directory
    from ..experiments.table import check_table_dir, markdown_table, run_table, table_cells, with_shared_k1
    from ..files import write_json, write_text
    from .train import architecture_from_args, config_kwargs_from_args

    if args.latent is not None and len(set(args.layers)) != 1:
        raise ValueError("a custom architecture (--latent) needs a single --layers value")
    scheduler = None
    if args.scheduler is not None:  # reach the cluster first: a wrong address fails before any data is read
        from ..experiments.cluster import connect
        scheduler = connect(args.scheduler)
    out = Path(args.out or f"runs/table-{args.data}")
    check_output_dir(out, "--out")
    base = config_kwargs_from_args(args)
    base["architectures"] = {L: architecture_from_args(args, L) for L in args.layers}
    cells = table_cells(args.objectives, args.k, args.layers)
    check_table_dir(cells, out)  # a user's file where the table writes one: stop before anything runs
    dataset_from_spec(base["data"], download=args.download)  # fail early; download once, before the workers
    eval_opts = {"k": args.eval_k, "train_subset": args.eval_train_subset, "seed": args.eval_seed,
                 "engine": args.engine}
    t0 = time.monotonic()
    print(f"{len(cells)} cells on {args.data} into {out}: " + ", ".join(c["name"] for c in cells), file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    with claim_directory(out, ("results.json", "table.md")):
        results = run_table(cells, base, out, eval_opts, jobs=args.jobs, progress=not args.no_progress,
                            log=lambda s: print(s, file=sys.stderr, flush=True), scheduler=scheduler)
        results = with_shared_k1(results, args.objectives)
        wall = time.monotonic() - t0
        table = markdown_table(results, args.data, ks=args.k, layers=args.layers)
        done = [r for r in results if r.get("status") == "finished"]
        passes = sorted({r["total_passes"] for r in done})
        trained = [r for r in done if not r.get("shared_with")]
        note = (f"{args.data}, {len(trained)} cells trained, {'/'.join(map(str, passes))} passes per cell, "
                f"NLL = -L_{args.eval_k} on {done[0]['n_test'] if done else '?'} test images; "
                f"AU: active units (A_u > 0.01). Wall time {wall:.0f} s.")
        try:
            claims = claims_report(done, args.data)
        except ValueError as err:  # cells evaluated by an older version, or on different test images
            claims = f"(no claims: {err})"
        for name in ("results.json", "table.md"):
            check_not_foreign(out / name)
        write_json(out / "results.json", results)
        write_text(out / "table.md", table + "\n\n" + note + "\n" + (f"\n{claims}\n" if claims else ""))
    print(table)
    print()
    print(note)
    if claims:
        print()
        print(claims)
    if not args.no_figures and done:
        for path in make_table_figures(done, out / "figures", args.data):
            print(f"wrote {path}", file=sys.stderr)
    failed = [r for r in results if r.get("status") == "failed"]
    for r in failed:
        print(f"iwae-np table: cell {r['name']} failed: {r['error']}", file=sys.stderr)
    if failed:
        return 1
    if len(done) < len(results):
        print("some cells were interrupted; run the same command again to resume them", file=sys.stderr)
        return 130
    return 0
