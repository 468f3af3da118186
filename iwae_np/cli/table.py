"""Run the paper's Table 1 grid and print test NLL and active units beside the paper's numbers.

Cells: VAE and IWAE x k in --k x --layers stochastic layers (default: all 12 of the paper).
Each cell trains (iwae-np train) into OUT/<objective>-k<k>-L<layers>/ and is evaluated
(iwae-np evaluate) into evaluation.json there. Independent cells run in parallel processes,
up to --jobs (default: the number of cores), with BLAS at one thread each. Running the same
command again skips finished cells and resumes interrupted ones; the same --out with any option
that changes a result is refused, naming the options. On a terminal, every 30 s, each running
cell's stage, pass, step, rate and training time left (--no-progress: none). IWAE at k = 1 is the VAE
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

from ..data import dataset_from_spec
from ..experiments.cells import TABLE_FILES, TABLE_OBJECTIVES, check_table_dir, table_cells
from ..experiments.claims import claims_report
from ..experiments.cluster import close_client, connect, run_table_on_cluster
from ..experiments.figures import make_table_figures
from ..experiments.paper import paper_footnote
from ..experiments.rundirs import check_not_foreign, check_output_dir, claim_directory
from ..experiments.table import markdown_table, run_table, with_shared_k1
from ..files import write_json, write_text
from .arguments import integer, path_argument
from .train import add_data_arguments, add_model_arguments, add_schedule_arguments, architecture_from_args, \
    config_kwargs_from_args

HELP = "run the Table 1 grid (VAE/IWAE x k x layers) in parallel and print it beside the paper's"


def add_arguments(p):
    p.add_argument("--out", type=path_argument("--out"), default=None, help="output directory (default runs/table-<data>)")
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
    g.add_argument("--no-progress", action="store_true",
                   help="no progress lines (shown every 30 s on a terminal: each running cell's stage, pass, step, "
                        "rate and time left)")


def table_settings(args):
    """What the command line asks for: ``(cells, base, eval_opts)``. Every option that changes a cell's result
    lands in ``base`` (a TrainConfig field) or ``eval_opts``, which a rerun into the same --out is compared on."""
    if args.latent is not None and len(set(args.layers)) != 1:
        raise ValueError("a custom architecture (--latent) needs a single --layers value")
    base = config_kwargs_from_args(args)
    base["architectures"] = {L: architecture_from_args(args, L) for L in args.layers}
    eval_opts = {"k": args.eval_k, "train_subset": args.eval_train_subset, "seed": args.eval_seed,
                 "engine": args.engine}
    return table_cells(args.objectives, args.k, args.layers), base, eval_opts


def _stderr_line(text):
    sys.stderr.write(text + "\n")  # one write: a progress block from another thread never lands inside a line
    sys.stderr.flush()


def _progress_writer(args):
    """Where the progress blocks go: stderr when it is a terminal and --no-progress is not given, else nowhere."""
    if args.no_progress or not sys.stderr.isatty():
        return None
    return lambda text: (sys.stderr.write(text), sys.stderr.flush())


def run(args):
    cells, base, eval_opts = table_settings(args)
    client = connect(args.scheduler) if args.scheduler is not None else None  # a wrong address fails first
    out = Path(args.out or f"runs/table-{args.data}")
    check_output_dir(out, "--out")
    check_table_dir(cells, out, base, eval_opts, figures=not args.no_figures)  # a user's file or another question's
    # cell: stop before anything runs
    dataset_from_spec(base["data"], download=args.download)  # fail early; download once, before the workers
    t0 = time.monotonic()
    _stderr_line(f"{len(cells)} cells on {args.data} into {out}: " + ", ".join(c["name"] for c in cells))
    out.mkdir(parents=True, exist_ok=True)
    with claim_directory(out, TABLE_FILES):
        if client is not None:
            try:
                results = run_table_on_cluster(cells, base, out, eval_opts, client, log=_stderr_line)
            finally:
                close_client(client)
        else:
            results = run_table(cells, base, out, eval_opts, jobs=args.jobs, progress=_progress_writer(args),
                                log=_stderr_line)
        results = with_shared_k1(results, args.objectives)
        done = [r for r in results if r.get("status") == "finished"]
        table, note, claims = _report(args, results, done, time.monotonic() - t0)
        for name in TABLE_FILES:
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
            _stderr_line(f"wrote {path}")
    return _exit_status(results)


def _report(args, results, done, wall):
    table = markdown_table(results, args.data, ks=args.k, layers=args.layers)
    passes = sorted({r["total_passes"] for r in done})
    trained = [r for r in done if not r.get("shared_with")]
    note = (f"{args.data}, {len(trained)} cells trained, {'/'.join(map(str, passes))} passes per cell, "
            f"NLL = -L_{args.eval_k} on {done[0]['n_test'] if done else '?'} test images; "
            f"AU: active units (A_u > 0.01). Wall time {wall:.0f} s.")
    if paper_footnote(args.data):
        note += " " + paper_footnote(args.data)
    try:
        claims = claims_report(done, args.data)
    except ValueError as err:  # cells evaluated by an older version, or on different test images
        claims = f"(no claims: {err})"
    return table, note, claims


def _exit_status(results):
    failed = [r for r in results if r.get("status") == "failed"]
    for r in failed:
        print(f"iwae-np table: cell {r['name']} failed: {r['error']}", file=sys.stderr)
    if failed:
        return 1
    if any(r.get("status") != "finished" for r in results):
        print("some cells were interrupted; run the same command again to resume them", file=sys.stderr)
        return 130
    return 0
