"""Gradient signal-to-noise ratios of the IWAE, STL and DReG estimators (Rainforth et al. 2018).

For one model and a fixed minibatch of test images, every (M, K) of the grid gets --draws
independent noise draws of the MIWAE(M, K) gradient (IWAE for M = 1) under each estimator, all
three on the same noise; each parameter's SNR is |mean| / std over the draws, summarized by the
median over theta (generative) and over phi (recognition) parameters. Writes OUT/snr.json (every
number, and the slopes of log SNR against log K and log M) and OUT/snr.png (log-log, with reference
slopes +1/2 and -1/2), and, for the default model, OUT/model.npz. Rainforth et al.: theta's SNR is
O(sqrt(MK)), IWAE's phi SNR is O(sqrt(M/K)), falling as 1/sqrt(K); DReG removes the fall.

The model: --checkpoint (a training run or checkpoint, or a .npz of flat parameter names), else
the paper's one-layer architecture trained briefly here (--train-steps of IWAE k=5) on --data.

Examples:
  iwae-np snr --out runs/snr                                  # default model, a few minutes
  iwae-np snr --checkpoint runs/iwae-k5 --k 1 10 100 --M 1 --draws 500 --out runs/snr-k5
"""
import json
import sys
import time
from pathlib import Path

from .arguments import integer, path_argument

HELP = "gradient signal-to-noise ratio of IWAE / STL / DReG against K and M (Rainforth et al. 2018)"


def add_arguments(p):
    p.add_argument("--out", type=path_argument("--out"), required=True, help="directory for snr.json and snr.png")
    p.add_argument("--checkpoint", type=path_argument("--checkpoint"), default=None, metavar="PATH",
                   help="model to study: a training run / checkpoint, or a .npz of flat parameter names "
                        "(default: train one briefly)")
    p.add_argument("--data", choices=["mnist5k", "fashion-mnist", "synthetic"], default="mnist5k",
                   help="images for the default model and the fixed minibatch (default mnist5k; synthetic: "
                        "random binary prototypes with flipped pixels, no files needed)")
    p.add_argument("--pixels", type=integer(1), default=784,
                   help="with --data synthetic: pixels per image (default 784; small values give broad posteriors)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 3, 10, 30, 100, 300], metavar="K",
                   help="samples per bound K (default 1 3 10 30 100 300)")
    p.add_argument("--M", type=int, nargs="+", default=[1, 4], help="numbers of bounds averaged M (default 1 4)")
    p.add_argument("--draws", type=int, default=200, help="independent noise draws per grid point (default 200)")
    p.add_argument("--batch", type=int, default=1, help="test images in the fixed minibatch (default 1)")
    p.add_argument("--seed", type=integer(0), default=0, help="seed of the default model, the minibatch and the noise")
    p.add_argument("--train-steps", type=integer(0), default=1000,
                   help="Adam steps of IWAE k=5 for the default model (default 1000, minibatches of 20)")
    p.add_argument("--latent", type=integer(1), default=None, metavar="D",
                   help="default model: one stochastic layer of D units (default: the paper's one-layer, 50)")
    p.add_argument("--hidden", type=integer(1), nargs="+", default=None, metavar="W",
                   help="with --latent: tanh widths of both MLPs (default 200 200)")
    p.add_argument("--threads", type=integer(1), default=1,
                   help="BLAS threads (default 1: these small products are fastest single-threaded)")


def _images(name, seed, pixels=784):
    """``(train, test, binarize or None, description)``: gray images to binarize, or binary ones."""
    import numpy as np
    if name == "synthetic":
        from ..experiments.snr import synthetic_images
        if pixels < 1:
            raise ValueError(f"--pixels must be >= 1, got {pixels}")
        rng = np.random.default_rng([seed, 7])
        x = synthetic_images(rng, 2000, x_dim=pixels)
        return x[:1500], x[1500:], None, f"synthetic binary prototypes ({pixels} pixels, 10 patterns, 5% flips), 1,500 / 500"
    from ..data import binarize, load_dataset
    ds = load_dataset(name)
    return ds.train, ds.test, binarize, f"{name} ({len(ds.train)} train / {len(ds.test)} test, dynamically binarized)"


def _study(args):
    import numpy as np

    from ..model import PRESETS, Architecture, architecture_of
    from ..experiments.rundirs import check_not_foreign, check_output_dir
    from ..experiments.snr import SNR_FILES, load_model_params, plot_snr, save_model_params, snr_study, \
        train_default_model
    from ..files import write_text

    for name in ("draws", "batch"):
        if getattr(args, name) < (2 if name == "draws" else 1):
            raise ValueError(f"--{name} must be >= {2 if name == 'draws' else 1}, got {getattr(args, name)}")
    if min(args.k) < 1 or min(args.M) < 1:
        raise ValueError(f"--k and --M must be >= 1, got {args.k} and {args.M}")
    if args.train_steps < 0:
        raise ValueError(f"--train-steps must be >= 0, got {args.train_steps}")
    out = Path(args.out)
    check_output_dir(out, "--out")
    for name in SNR_FILES if not args.checkpoint else SNR_FILES[:2]:  # a user's file: stop before anything runs
        check_not_foreign(out / name)
    train_x, test_x, binarize, data_text = _images(args.data, args.seed, args.pixels)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    if args.checkpoint:
        params = load_model_params(args.checkpoint)
        model_text = f"checkpoint {args.checkpoint}"
    else:
        if args.latent is None:
            if args.hidden is not None:
                raise ValueError("--hidden needs --latent")
            arch = PRESETS["one-layer"]
        else:
            hidden = tuple(args.hidden or (200, 200))
            arch = Architecture(train_x.shape[1], (args.latent,), (hidden,), (hidden,))
        print(f"training the default model: {args.train_steps} Adam steps of IWAE k=5 on {data_text}", file=sys.stderr)
        params = train_default_model(train_x, arch, args.train_steps, rng, binarize=binarize)
        model_text = (f"default: {arch.to_dict()} trained {args.train_steps} Adam steps (lr 1e-3, minibatch 20) "
                      f"of IWAE k=5 on {data_text}; saved as model.npz")
        out.mkdir(parents=True, exist_ok=True)
        save_model_params(out / "model.npz", params)  # rerun: --checkpoint OUT/model.npz
    if architecture_of(params).x_dim != test_x.shape[1]:
        raise ValueError(f"the model takes {architecture_of(params).x_dim} pixels, the {args.data} images have "
                         f"{test_x.shape[1]}")
    x = test_x[: args.batch]
    x = binarize(x, np.random.default_rng([args.seed, 1])) if binarize is not None else x
    trained_s = time.perf_counter() - start

    def progress(row):
        phi = ", ".join(f"{e} {row['phi'][e]['median']:.3g}" for e in ("iwae", "stl", "dreg"))
        print(f"M={row['M']:<3d} K={row['K']:<4d} theta {row['theta']['iwae']['median']:.3g}; phi {phi}; "
              f"ESS {row['ess']:.1f}", file=sys.stderr)

    result = snr_study(params, x, args.k, args.M, args.draws, args.seed, progress=progress)
    result["settings"].update(model=model_text, data=args.data, model_seconds=round(trained_s, 1),
                              study_seconds=round(time.perf_counter() - start - trained_s, 1))
    out.mkdir(parents=True, exist_ok=True)
    check_not_foreign(out / "snr.json")
    write_text(out / "snr.json", json.dumps(result, indent=1) + "\n")
    plot_snr(result, out / "snr.png")
    print("slopes of log median SNR against log K:")
    for key, groups in result["slopes"]["K"].items():
        for group, by_est in groups.items():
            print(f"  {key} {group:5s} " + "  ".join(f"{e} {s:+.2f}" for e, s in by_est.items()))
    for key, groups in result["slopes"]["M"].items():
        print(f"  against log M, {key}: theta {groups['theta']['iwae']:+.2f}, phi "
              + "  ".join(f"{e} {s:+.2f}" for e, s in groups["phi"].items()))
    print(f"wrote {out / 'snr.json'} and {out / 'snr.png'}", file=sys.stderr)
    return 0


def run(args):
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it, BLAS uses its own default
        return _study(args)
    with threadpool_limits(limits=args.threads):
        return _study(args)
