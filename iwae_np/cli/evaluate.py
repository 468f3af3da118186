"""Evaluate a trained run: test log-likelihood, over-fitting gap and active units (paper section 5).

The test NLL is -L_k averaged over the test set (k = 5000 as in the paper), each image binarized
once with a fixed seed so evaluations are comparable. The k samples are processed in chunks with a
streaming logsumexp: memory stays bounded for any k and the value does not depend on the chunk
size. The same estimate on the first --train-subset training images gives the over-fitting gap.
Active units: Cov_x(E_q[u|x]) > 0.01 per stochastic layer, on the test set. Computed in float64
(also for float32-trained models). Writes RUN/evaluation.json (everything a table row needs) and
prints a summary.

Example:
  iwae-np evaluate runs/iwae-k5 --k 5000
"""
import sys
from pathlib import Path

from .arguments import add_engine_argument, integer, path_argument

HELP = "test NLL (L_5000), over-fitting gap and active units of a trained run"


def add_arguments(p):
    from ..data import DATASETS
    p.add_argument("run", type=path_argument("run directory"), help="run directory (or checkpoint file) written by iwae-np train")
    p.add_argument("--k", type=integer(1), default=5000, help="importance samples per test image (default 5000)")
    p.add_argument("--train-subset", type=integer(0), default=1000, metavar="N",
                   help="also evaluate the first N training images (default 1000; 0: skip)")
    p.add_argument("--test-subset", type=integer(2), default=None, metavar="N",
                   help="only the first N test images (default: the run's test set)")
    p.add_argument("--seed", type=integer(0), default=0, help="seed of the evaluation noise (default 0)")
    p.add_argument("--batch-size", type=integer(1), default=100, help="test images per pass (default 100)")
    p.add_argument("--chunk-size", type=integer(1), default=None,
                   help="samples per chunk (default: as many as keep the largest array under 64 MiB)")
    p.add_argument("--data", choices=list(DATASETS), default=None, help="data set (default: the run's)")
    p.add_argument("--data-dir", type=path_argument("--data-dir"), default=None, help="directory holding the data set's files (default: the run's)")
    p.add_argument("--output", type=path_argument("--output"), default=None, help="where to write the JSON (default RUN/evaluation.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_engine_argument(p, "the log weights")


def run(args):
    from ..data import dataset_from_spec
    from ..experiments.checkpoints import load_run_checkpoint
    from ..experiments.evaluation import EVALUATION_NAME, evaluate_run, write_evaluation
    from ..experiments.rundirs import check_not_foreign

    path = Path(args.run)
    ck = load_run_checkpoint(path)
    run_dir = path if path.is_dir() else path.parent
    out = Path(args.output) if args.output else run_dir / EVALUATION_NAME
    flag = "--output" if args.output else None
    check_not_foreign(out, EVALUATION_NAME, flag)  # a directory, or a user's file: refused before the long part
    if not out.parent.is_dir():
        raise ValueError(f"{flag or 'the output'} {out}: the directory {out.parent} does not exist")
    spec = dict(ck["meta"]["config"]["data"])
    if not spec.get("name") and args.data is None:
        raise ValueError("the run does not record its data set; pass --data")
    if args.data:
        spec.update(name=args.data, root=args.data_dir, train_subset=None, test_subset=None)
    elif args.data_dir:
        spec["root"] = args.data_dir
    if args.test_subset is not None:
        spec["test_subset"] = args.test_subset
    dataset = dataset_from_spec(spec)
    if ck["meta"]["status"] != "finished":
        print(f"note: the run in {run_dir} is not finished ({ck['meta']['status']}); evaluating its checkpoint "
              f"(iwae-np train --resume --out {run_dir} finishes it)", file=sys.stderr)
    result = evaluate_run(path, dataset, k=args.k, train_subset=args.train_subset, seed=args.seed,
                          batch_size=args.batch_size, chunk_size=args.chunk_size, progress=not args.no_progress,
                          engine=args.engine, output=out)  # a directory it cannot write to: refused before the long part
    check_not_foreign(out, EVALUATION_NAME, flag)
    lines = [f"{result['objective'].upper()} k={result['k']}, {result['layers']} stochastic layer(s), "
             f"{result['passes_done']} passes, on {result['data']}",
             f"test NLL (-L_{args.k}, {result['n_test']} images): {result['test_nll']:.2f} "
             f"+- {result['test_nll_se'] or 0:.2f}"]
    if "train_nll" in result:
        lines.append(f"train NLL ({result['n_train_eval']} images): {result['train_nll']:.2f}; "
                     f"over-fitting gap {result['overfitting_gap']:.2f}")
    lines.append(f"active units: {' + '.join(map(str, result['active_units']))} "
                 f"(of {' + '.join(str(d) for d in result['architecture']['latent_dims'])})")
    print("\n".join(lines), flush=True)
    write_evaluation(out, result)  # when it fails, the result is kept elsewhere and the error says where
    print(f"written to {out}")
    return 0
