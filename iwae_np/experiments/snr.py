r"""The gradient signal-to-noise ratio study of Rainforth et al. (2018), "Tighter variational bounds are not
necessarily better" (Rainforth et al. 2018, section 4).

For a fixed model and a fixed minibatch ``x``, the gradient of MIWAE(M, K) (IWAE when M = 1) is a random
vector through the noise ``eps`` only. Over ``n`` independent draws of ``eps``, each parameter j gets

.. math::
    \mathrm{SNR}_j = \frac{|\hat E[g_j]|}{\widehat{\mathrm{std}}[g_j]}

(sample mean and standard deviation with ``n - 1``). Rainforth et al. show that for the paper's
(reparameterized) estimator the SNR of the generative parameters theta is :math:`O(\sqrt{MK})`
while that of the recognition parameters phi is :math:`O(\sqrt{M/K})`: it grows as :math:`\sqrt M` and
falls as :math:`1/\sqrt K`. DReG (Tucker et al. 2019) removes the fall. Here the three estimators see the same noise on every draw.

Summaries, per parameter group (theta: the ``p_*`` networks, phi: the ``q_*`` networks):

- ``median``: the median over the group's parameters of :math:`\mathrm{SNR}_j` (the number that is
  plotted and fitted: robust to the few parameters with a huge or a vanishing SNR);
- ``mean``: their mean;
- ``floor``: the median an estimator with *zero* true SNR would show with ``n`` draws,
  :math:`\approx 0.674/\sqrt{n}` (the median of :math:`|N(0,1)|/\sqrt n`): values near it are noise.

Parameters whose gradient is exactly 0 on every draw (the input weights of pixels that are 0 in
``x``) have no SNR and are left out; their number is reported.
Slopes are least-squares fits of :math:`\log \mathrm{SNR}` on :math:`\log K` for each M (and on
:math:`\log M` for each K when there are several M).
"""
import math
import zipfile
from pathlib import Path

import numpy as np
from autograd.tracer import getval

from ..engines import get_engine
from ..estimators import bound_and_weights
from ..files import atomic_write
from ..model import init_params, sample_eps
from ..validation import validate_params
from ..special import softmax
from ..tree import flatten_tree, tree_map, unflatten_tree
from .checkpoints import load_params
from .figures import save_figure
from .rundirs import NPZ_MARK
from .training import train_step

__all__ = ["SNR_ESTIMATORS", "RunningMoments", "estimator_gradients", "effective_sample_size", "gradient_snr",
           "snr_study", "summarize_snr", "fit_slopes", "plot_snr", "synthetic_images", "train_default_model",
           "save_model_params", "load_model_params", "SNR_FILES"]

#: The files ``iwae-np snr`` writes in its output directory (``model.npz`` only for the default model).
SNR_FILES = ("snr.json", "snr.png", "model.npz")

#: The estimators compared; theta is the same for all three (each ascends the bound for theta).
SNR_ESTIMATORS = ("iwae", "stl", "dreg")
#: The median of |Z| for Z ~ N(0, 1): the median SNR estimate of a zero-mean gradient is this / sqrt(n).
_MEDIAN_ABS_NORMAL = 0.6744897501960817


class RunningMoments:
    """Welford's running mean and sum of squared deviations of vectors, in float64."""

    def __init__(self, size):
        self.n, self.mean, self.m2 = 0, np.zeros(size), np.zeros(size)

    def add(self, value):
        value = np.asarray(value, dtype=np.float64)
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    def std(self):
        """Sample standard deviation (``n - 1``)."""
        return np.sqrt(self.m2 / (self.n - 1))


def _group_vector(tree, prefix):
    # "p_": theta, "q_": phi; flat names in tree order
    return np.concatenate([np.ravel(getval(v)) for name, v in flatten_tree(tree).items() if name.startswith(prefix)])


def _gradients_and_log_w(params, x, eps, M, engine=None):
    engine = get_engine(engine)
    objective = "iwae" if M == 1 else "miwae"
    _, weights_fn = bound_and_weights(objective, M=M)
    log_w, _, (full,) = engine.weighted_gradients(lambda p: engine.log_importance_weights(p, x, eps), params,
                                                  weights_fn, "phi")
    _, _, (stl, dreg) = engine.weighted_gradients(lambda p: engine.path_log_weights(p, x, eps), params, weights_fn,
                                                  "phi", "dreg")
    return log_w, {"theta": _group_vector(full, "p_"), "iwae": _group_vector(full, "q_"),
                   "stl": _group_vector(stl, "q_"), "dreg": _group_vector(dreg, "q_")}


def estimator_gradients(params, x, eps, M=1, engine=None):
    r"""The IWAE, STL and DReG gradients of MIWAE(M, K) (IWAE for M = 1) on the same noise ``eps``.

    Two forward passes and three vector-Jacobian products instead of the separate estimators' three
    and four: ``log w`` with live phi gives theta and the reparameterized phi gradient (weights c),
    ``log w`` with stopped phi in every ``log q`` gives STL's (weights c) and DReG's (weights d).
    Returns ``{"theta": vector, "iwae": phi vector, "stl": ..., "dreg": ...}``: flat float64 vectors
    (parameters in the tree's order). ``engine``: ``"fast"`` (default) or ``"definition"`` (:mod:`iwae_np.engines`).
    """
    return _gradients_and_log_w(params, x, eps, M, engine)[1]


def effective_sample_size(log_w, M=1):
    r"""Kish's effective sample size of each group of K samples, :math:`1 / \sum_j \tilde w_j^2`, averaged
    over the M groups and the examples: near K when the weights are even, near 1 when one sample dominates."""
    k, batch = np.shape(log_w)
    w = np.asarray(softmax(np.reshape(log_w, (int(M), k // int(M), batch)), axis=1))  # (M, K, batch)
    return float(np.mean(1.0 / np.sum(w * w, axis=1)))


def gradient_snr(params, x, M, K, n_draws, rng):
    """Per-parameter SNR over ``n_draws`` independent draws of the noise for MIWAE(M, K) at ``x``.

    Returns ``{"theta": snr, "iwae": snr, "stl": snr, "dreg": snr}`` (vectors; NaN where the gradient
    is 0 on every draw) and ``"ess"``, the mean :func:`effective_sample_size` over the draws.
    """
    if n_draws < 2:
        raise ValueError(f"the SNR needs at least 2 noise draws, got {n_draws}")
    moments, ess = None, []
    for _ in range(int(n_draws)):
        eps = sample_eps(rng, params, int(M) * int(K), np.shape(x)[0])
        log_w, grads = _gradients_and_log_w(params, x, eps, M)
        ess.append(effective_sample_size(log_w, M))
        if moments is None:
            moments = {name: RunningMoments(g.size) for name, g in grads.items()}
        for name, g in grads.items():
            moments[name].add(g)
    out = {}
    for name, m in moments.items():
        std = m.std()
        with np.errstate(divide="ignore", invalid="ignore"):
            out[name] = np.where(std > 0, np.abs(m.mean) / std, np.nan)
    out["ess"] = float(np.mean(ess))
    return out


def summarize_snr(snr, n_draws):
    """``{"median", "mean", "n_params", "n_constant", "floor"}`` of one vector of per-parameter SNRs."""
    finite = snr[np.isfinite(snr)]
    return {"median": float(np.median(finite)), "mean": float(np.mean(finite)), "n_params": int(finite.size),
            "n_constant": int(snr.size - finite.size), "floor": _MEDIAN_ABS_NORMAL / math.sqrt(n_draws)}


def snr_study(params, x, ks=(1, 3, 10, 30, 100, 300), Ms=(1,), n_draws=200, seed=0, progress=None):
    """The SNR summaries for every (M, K) of the grid, every estimator and both parameter groups.

    Returns a JSON-ready dict: ``{"grid": [{"M", "K", "theta": {est: summary}, "phi": {est: summary}}],
    "slopes": fit_slopes(...), "settings": ...}``. The noise of grid point i comes from
    ``numpy.random.default_rng([seed, i])``, so any point can be recomputed alone.
    """
    ks, Ms = [int(k) for k in ks], [int(m) for m in Ms]
    if not ks or min(ks) < 1 or not Ms or min(Ms) < 1:
        raise ValueError(f"K and M must be positive integers, got K = {ks}, M = {Ms}")
    grid = []
    for i, (M, K) in enumerate((M, K) for M in Ms for K in ks):
        snr = gradient_snr(params, x, M, K, n_draws, np.random.default_rng([seed, i]))
        theta = summarize_snr(snr["theta"], n_draws)
        grid.append({"M": M, "K": K, "ess": snr["ess"], "theta": {est: theta for est in SNR_ESTIMATORS},
                     "phi": {est: summarize_snr(snr[est], n_draws) for est in SNR_ESTIMATORS}})
        if progress:
            progress(grid[-1])
    return {"grid": grid, "slopes": fit_slopes(grid),
            "settings": {"K": ks, "M": Ms, "n_draws": int(n_draws), "seed": int(seed), "batch": int(np.shape(x)[0]),
                         "summary": "median over the group's parameters of |mean| / std over the noise draws"}}


def _slope(u, v):
    return float(np.polyfit(np.log(u), np.log(v), 1)[0])


def fit_slopes(grid, statistic="median"):
    """Least-squares slopes of log SNR: on log K for each M, and on log M for each K (with several M).

    ``{"K": {"M=1": {"theta": {est: slope}, "phi": {...}}}, "M": {"K=10": {...}}}``; fits need >= 2 points.
    """
    out = {"K": {}, "M": {}}
    for axis, other in (("K", "M"), ("M", "K")):
        for value in sorted({g[other] for g in grid}):
            rows = sorted((g for g in grid if g[other] == value), key=lambda g: g[axis])
            if len(rows) < 2:
                continue
            out[axis][f"{other}={value}"] = {
                group: {est: _slope([g[axis] for g in rows], [g[group][est][statistic] for g in rows])
                        for est in SNR_ESTIMATORS}
                for group in ("theta", "phi")}
    return out


def plot_snr(result, path):
    """Log-log plot of the median SNR against K: theta and phi panels, one line per estimator and M,
    reference slopes +1/2 and -1/2 and the noise floor; a third panel shows the effective sample size
    against K (the asymptotic regime of the SNR result needs it to grow like K). Writes a PNG to ``path``."""
    from matplotlib.figure import Figure  # a heavy optional dependency: only when the figure is drawn
    grid = result["grid"]
    Ms = sorted({g["M"] for g in grid})
    all_K = np.array(sorted({g["K"] for g in grid}), dtype=float)
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 0.7]})
    colors = {"iwae": "tab:blue", "stl": "tab:orange", "dreg": "tab:green"}
    markers = ["o", "s", "^", "D"]

    def rows_of(M):
        return sorted((g for g in grid if g["M"] == M), key=lambda g: g["K"])

    for ax, group in zip(axes, ("theta", "phi")):
        estimators = ("iwae",) if group == "theta" else SNR_ESTIMATORS
        for mi, M in enumerate(Ms):
            rows = rows_of(M)
            for est in estimators:
                label = ("IWAE = STL = DReG" if group == "theta" else est.upper()) + f", M={M}"
                ax.loglog([g["K"] for g in rows], [g[group][est]["median"] for g in rows], marker=markers[mi % 4],
                          color=colors[est], alpha=1.0 - 0.35 * mi, label=label)
        anchor = np.median([g[group]["iwae"]["median"] for g in grid if g["K"] == all_K[0]])
        for slope, style in ((0.5, ":"), (-0.5, "--")):
            ax.loglog(all_K, anchor * (all_K / all_K[0]) ** slope, style, color="gray", label=f"slope {slope:+.1f}")
        ax.axhline(grid[0][group]["iwae"]["floor"], color="black", lw=0.8, alpha=0.4, label="noise floor")
        ax.set_xlabel("K (samples per bound)")
        ax.set_ylabel("median SNR over parameters")
        ax.set_title({"theta": r"generative $\theta$", "phi": r"recognition $\phi$"}[group])
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.6)
    ax = axes[2]
    for mi, M in enumerate(Ms):
        rows = rows_of(M)
        ax.loglog([g["K"] for g in rows], [g["ess"] for g in rows], marker=markers[mi % 4], color="tab:purple",
                  alpha=1.0 - 0.35 * mi, label=f"M={M}")
    ax.loglog(all_K, all_K, ":", color="gray", label="ESS = K")
    ax.set_xlabel("K")
    ax.set_ylabel("effective sample size per bound")
    ax.set_title("importance weights")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80, bbox_inches=None)


# ---------------------------------------------------------------------------------------------
# the model studied: a checkpoint, or a briefly trained default


def synthetic_images(rng, n, x_dim=784, n_prototypes=10, flip=0.05):
    """Binary images with structure: one of ``n_prototypes`` random Bernoulli(0.2) patterns per image,
    each pixel flipped with probability ``flip``. ``(n, x_dim)`` float64 in {0, 1}."""
    prototypes = rng.uniform(size=(n_prototypes, x_dim)) < 0.2
    x = prototypes[rng.integers(n_prototypes, size=n)] ^ (rng.uniform(size=(n, x_dim)) < flip)
    return x.astype(np.float64)


def train_default_model(x_train, arch, steps, rng, k=5, batch_size=20, lr=1e-3, binarize=None):
    """A model trained briefly: Glorot init with the output bias from the training mean, then ``steps``
    Adam steps (the paper's settings) on IWAE(k) over minibatches drawn from ``x_train`` (gray or binary
    ``(N, D)``; ``binarize(x, rng)`` is applied to each minibatch when given). float64 parameters."""
    params = init_params(arch, rng, np.float64, x_mean=np.mean(x_train, axis=0))
    state = get_engine().adam_init(params)
    for _ in range(int(steps)):
        x = x_train[rng.integers(len(x_train), size=batch_size)]
        x = binarize(x, rng) if binarize is not None else x
        params, state, _ = train_step(params, state, x, rng, k, lr, objective="iwae")
    return params


def save_model_params(path, params):
    """Write ``params`` as an ``.npz`` of flat parameter names (what :func:`load_model_params` reads), atomically,
    marked as iwae-np's (:data:`~iwae_np.experiments.rundirs.NPZ_MARK`) so that a rerun may replace it."""
    arrays = dict(flatten_tree(params), **{NPZ_MARK: np.array("iwae-np snr model")})
    return atomic_write(path, lambda f: np.savez(f, **arrays))



def load_model_params(path):
    """Parameters from a training checkpoint (file or run directory,
    :func:`iwae_np.experiments.checkpoints.load_params`) or from a plain ``.npz`` whose keys are the flat
    parameter names (``q_h1/hidden_0/W``, ...; :func:`save_model_params`); float64."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                flat = {n: np.asarray(data[n], dtype=np.float64) for n in data.keys() if n != NPZ_MARK}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} is not a readable .npz file: {err}") from err
        if flat and all(not n.startswith(("params/", "meta")) for n in flat):  # flat parameter names
            params = unflatten_tree(flat)
            validate_params(params)
            return params
    return tree_map(lambda p: np.asarray(p, dtype=np.float64), load_params(path))
