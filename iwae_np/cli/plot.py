"""Draw the figures of a run or of a table (PNG files).

For a table directory (written by iwae-np table): test NLL against k (beside the paper's),
training curves, histograms of log A_u per stochastic layer, and samples and reconstructions
of the best cell. For a run directory (iwae-np train): its training curves, samples and
reconstructions, and, once iwae-np evaluate has run, its histogram of log A_u.

Examples:
  iwae-np plot runs/table-mnist5k              # into runs/table-mnist5k/figures/
  iwae-np plot runs/iwae-k5 --out figs/
"""
import sys
from pathlib import Path

from .arguments import integer, path_argument

HELP = "draw training curves, samples, log A_u histograms and NLL against k (PNG)"


def add_arguments(p):
    p.add_argument("dir", type=path_argument("directory"), help="a table directory (with results.json) or a run directory (with checkpoint.npz)")
    p.add_argument("--out", type=path_argument("--out"), default=None, help="directory for the PNG files (default DIR/figures)")
    p.add_argument("--seed", type=integer(0), default=0, help="seed of the samples drawn (default 0)")


def run(args):
    import numpy as np

    from ..experiments import figures
    from ..experiments.checkpoints import CHECKPOINT_NAME, load_checkpoint
    from ..experiments.evaluation import EVALUATION_NAME
    from ..experiments.figures import dataset_of_result, make_table_figures, run_figure_names, table_figure_names
    from ..experiments.rundirs import check_not_foreign, check_output_dir
    from ..files import read_json

    d = Path(args.dir)
    out = Path(args.out) if args.out else d / "figures"
    check_output_dir(out, "--out")
    if (d / "results.json").is_file():
        results = read_json(d / "results.json")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ValueError(f"{d / 'results.json'} is not a list of cell results")
        results = [r for r in results if r.get("status") == "finished"]
        if not results:
            raise ValueError(f"{d / 'results.json'} has no finished cells to plot")
        for name in table_figure_names(sorted({r.get("layers") for r in results})):
            check_not_foreign(out / name)  # a user's PNG: stop before any figure is drawn
        data_name = results[0].get("data") or "data"
        paths = make_table_figures(results, out, data_name)
    elif (d / CHECKPOINT_NAME).is_file():
        for name in run_figure_names():
            check_not_foreign(out / name)
        ck = load_checkpoint(d)
        meta = ck["meta"]
        label = f"{meta['objective'].upper()} k={meta['k']}"
        paths = []
        if meta["history"]:
            paths.append(figures.plot_training_curves({label: meta["history"]}, out / "training_curves.png"))
        if (d / EVALUATION_NAME).is_file():
            ev = read_json(d / EVALUATION_NAME)
            paths.append(figures.plot_active_units({label: [np.asarray(v) for v in ev["active_unit_values"]]},
                                                   out / "active_units.png"))
        result = {"run_dir": str(d)}
        ds = dataset_of_result(result) if meta["config"]["data"].get("name") else None
        if ds is not None:
            paths.append(figures.plot_samples_and_reconstructions(
                ck["params"], ds.binarized_test(seed=0), np.random.default_rng(args.seed), out / "samples.png",
                title=f"{label}: test images, reconstructions, samples"))
    else:
        raise ValueError(f"{d} holds neither results.json (a table) nor {CHECKPOINT_NAME} (a run)")
    for path in paths:
        print(f"wrote {path}")
    if not paths:
        print("nothing to plot yet (no finished stage)", file=sys.stderr)
    return 0
