r"""Figures of the paper's experiments, as PNG files (matplotlib's Agg renderer, no display needed).

- :func:`plot_training_curves`: the per-stage bounds of one or more runs against passes.
- :func:`plot_samples_and_reconstructions`: test images, their reconstructions (pixel means of
  :math:`p(x|h_1)` at :math:`h_1 \sim q(h_1|x)`) and samples from the generative model.
- :func:`plot_active_units`: the histogram of :math:`\log A_u` per stochastic layer (the paper's
  bimodal figure), with the threshold :math:`A_u = 0.01`.
- :func:`plot_nll_vs_k`: test NLL against k for VAE and IWAE (and the paper's numbers).
- :func:`make_table_figures`: all of them for a finished ``iwae-np table`` directory.

Each function takes plain data (histories, arrays, result dicts), writes ``path`` and returns it.
Figures are built with :class:`matplotlib.figure.Figure` directly, so importing this module
selects no backend and opens no window (matplotlib itself is imported when a figure is drawn).
Every figure is written by :func:`save_figure`: atomically, marked as iwae-np's (a PNG text chunk),
and never over a PNG that iwae-np did not write.
"""
import math
from pathlib import Path

import numpy as np

from ..data import dataset_from_spec
from ..files import atomic_write
from ..model import sample_eps, sample_generative, sample_posterior
from ..networks import dense, tanh_mlp
from ..special import sigmoid
from ..tree import tree_map
from .checkpoints import load_checkpoint, load_params
from .paper import PAPER_TABLE1, is_substituted, paper_key, paper_label
from .rundirs import PNG_SOFTWARE, check_not_foreign

__all__ = ["plot_training_curves", "plot_samples_and_reconstructions", "plot_active_units", "plot_nll_vs_k",
           "image_grid", "make_table_figures", "table_figure_names", "run_figure_names", "save_figure",
           "dataset_of_result"]


def _figure(**kw):
    from matplotlib.figure import Figure  # a heavy optional dependency: only when a figure is drawn
    return Figure(**kw)


def save_figure(fig, path, dpi=110, bbox_inches="tight"):
    """Write ``fig`` as a PNG to ``path`` (its directory created): atomically, with the text chunk
    ``Software: iwae-np`` that marks it as the project's; a PNG there that iwae-np did not write is refused."""
    path = Path(path)
    check_not_foreign(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, bbox_inches=bbox_inches, format="png",
                                             metadata={"Software": PNG_SOFTWARE}))
    return path



def plot_training_curves(histories, path, title=None):
    """``histories``: ``{label: [metric records]}`` (``metrics.jsonl`` of each run). Test bound solid,
    training-subset bound dashed, against cumulative passes (log scale)."""
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (label, history) in enumerate(sorted(histories.items())):
        if not history:
            continue
        color = f"C{i % 10}"
        passes = [r["passes_done"] for r in history]
        if "test_bound" in history[0]:
            kk = history[0].get("monitor_k")
            ax.plot(passes, [r["test_bound"] for r in history], "-o", color=color, ms=3,
                    label=f"{label} (test L_{kk})")
            ax.plot(passes, [r["train_bound"] for r in history], "--", color=color, alpha=0.7)
        else:
            ax.plot(passes, [r["train_objective"] for r in history], "-o", color=color, ms=3,
                    label=f"{label} (training objective)")
    ax.set_xscale("log")
    ax.set_xlabel("passes over the training set")
    ax.set_ylabel("bound (nats, higher is better)")
    ax.set_title(title or "Training curves (solid: test, dashed: training subset)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def image_grid(images, rows, side=28):
    """``images (rows * cols, side * side)`` -> one ``(rows * side, cols * side)`` array, row-major."""
    images = np.asarray(images)
    n = images.shape[0]
    cols = math.ceil(n / rows)
    grid = np.ones((rows * side, cols * side))
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * side:(r + 1) * side, c * side:(c + 1) * side] = images[i].reshape(side, side)
    return grid


def plot_samples_and_reconstructions(params, x, rng, path, n=10, title=None):
    """Rows: ``n`` binary test images ``x``, their reconstructions, and ``n`` generative samples (pixel means)."""
    params = tree_map(lambda p: np.asarray(p, dtype=np.float64), params)
    x = np.asarray(x, dtype=np.float64)[:n]
    side = int(round(math.sqrt(x.shape[1])))
    if side * side != x.shape[1]:
        raise ValueError(f"images must be square to plot, got {x.shape[1]} pixels")
    h, _ = sample_posterior(params, x, sample_eps(rng, params, 1, x.shape[0]))
    recon = sigmoid(dense(params["p_x"]["logits"], tanh_mlp(params["p_x"], h[0][0])))  # (n, D)
    samples = sample_generative(params, rng, n)["x_mean"]
    fig = _figure(figsize=(n * 0.6, 2.2))
    ax = fig.subplots()
    ax.imshow(1 - image_grid(np.concatenate([x, recon, samples]), 3, side), cmap="gray", vmin=0, vmax=1)
    ax.set_yticks([side * 0.5, side * 1.5, side * 2.5], ["data", "reconstruction", "samples"], fontsize=7)
    ax.set_xticks([])
    ax.set_title(title or "Test images, reconstructions, samples", fontsize=8)
    return save_figure(fig, path)


def plot_active_units(values_by_label, path, threshold=0.01, title=None):
    r"""Histogram of :math:`\log A_u` (natural log) per stochastic layer; ``values_by_label``:
    ``{label: [A_u of layer 1, A_u of layer 2, ...]}``. A dashed line marks :math:`\log 0.01`."""
    n_layers = max(len(v) for v in values_by_label.values())
    fig = _figure(figsize=(5 * n_layers, 3.6))
    axes = np.atleast_1d(fig.subplots(1, n_layers))
    all_logs = np.concatenate([np.log(np.maximum(np.asarray(a, dtype=float), 1e-300))
                               for v in values_by_label.values() for a in v])
    lo, hi = max(np.min(all_logs), -30.0), max(np.max(all_logs), math.log(threshold) + 1)
    bins = np.linspace(lo - 0.5, hi + 0.5, 40)
    for l, ax in enumerate(axes):
        for i, (label, values) in enumerate(sorted(values_by_label.items())):
            if l < len(values):
                logs = np.clip(np.log(np.maximum(np.asarray(values[l], dtype=float), 1e-300)), lo, None)
                active = int(np.sum(np.asarray(values[l]) > threshold))
                ax.hist(logs, bins=bins, alpha=0.55, color=f"C{i % 10}", label=f"{label}: {active} active")
        ax.axvline(math.log(threshold), color="k", ls="--", lw=1)
        ax.set_xlabel(r"$\log A_u$ (natural log; dashed: $A_u$ = 0.01)")
        ax.set_ylabel("units")
        ax.set_title(f"stochastic layer {l + 1}")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, y=1.04)
    return save_figure(fig, path)


def plot_nll_vs_k(results, path, paper=None, title=None, paper_title="the paper"):
    """Test NLL against k (log scale) for each (objective, layers) among ``results`` (evaluation dicts).

    ``paper``: optional ``{(objective, layers, k): nll}``, drawn in a second panel with its own
    scale (a short run and the paper's 3,280 passes are far apart).
    """
    fig = _figure(figsize=(11 if paper else 6, 4.2))
    axes = np.atleast_1d(fig.subplots(1, 2 if paper else 1))
    series = {}
    for r in results:
        if r.get("status") == "finished":
            series.setdefault((r["objective"], r["layers"]), []).append((r["k"], r["test_nll"]))
    if paper:
        ref = {}
        for (obj, L, k), v in paper.items():
            if (obj, L) in series:
                ref.setdefault((obj, L), []).append((k, v))
    panels = [(axes[0], series, title or "Test NLL against k")]
    if paper:
        panels.append((axes[1], ref, paper_title))
    for ax, data, panel_title in panels:
        for (obj, L), pts in sorted(data.items()):
            pts = sorted(pts)
            style = "-o" if obj == "iwae" else "--s"
            color = f"C{(L - 1) * 2 + (obj == 'iwae')}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color,
                    label=f"{obj.upper()}, {L} layer{'s' if L > 1 else ''}")
        ax.set_xscale("log")
        ks = sorted({p[0] for pts in data.values() for p in pts})
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k (samples during training)")
        ax.set_ylabel("test NLL (nats, lower is better)")
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def table_figure_names(layers):
    """The names of the figures :func:`make_table_figures` may write for tables with these layer counts."""
    return ["nll_vs_k.png"] + [f"{kind}_L{L}.png" for L in layers for kind in ("training_curves", "active_units",
                                                                               "samples")]


def run_figure_names():
    """The names of the figures ``iwae-np plot`` may write for a run directory."""
    return ["training_curves.png", "active_units.png", "samples.png"]


def make_table_figures(results, fig_dir, data_name):
    """NLL against k, training curves, log A_u histograms and samples of the best cell: their paths."""
    fig_dir = Path(fig_dir)
    paths = []
    key = paper_key(data_name)
    paper = {}
    for (d, L, k), (vn, _, iwn, _) in PAPER_TABLE1.items():
        if d == key:
            paper[("vae", L, k)], paper[("iwae", L, k)] = vn, iwn
    paths.append(plot_nll_vs_k(results, fig_dir / "nll_vs_k.png", paper=paper,
                                       title=f"Test NLL against k: {data_name}, this run",
                                       paper_title=(f"the paper's Table 1 ({paper_label(data_name)}, 3,280 passes)"
                                                    + ("; *not the same data" if is_substituted(data_name) else ""))))
    own = [r for r in results if not r.get("shared_with")]
    for L in sorted({r["layers"] for r in own}):
        rs = [r for r in own if r["layers"] == L]
        paths.append(plot_training_curves(
            {f"{r['objective'].upper()} k={r['k']}": r["history"] for r in rs},
            fig_dir / f"training_curves_L{L}.png",
            title=f"{data_name}, {L} stochastic layer(s); solid: test, dashed: training subset"))
        kmax = max(r["k"] for r in rs)
        au = {f"{r['objective'].upper()} k={r['k']}": [np.asarray(v) for v in r["active_unit_values"]]
              for r in rs if r["k"] == kmax}
        paths.append(plot_active_units(au, fig_dir / f"active_units_L{L}.png",
                                               title=f"log A_u, {data_name}, {L} layer(s), k={kmax}"))
        best = min(rs, key=lambda r: r["test_nll"])
        ds = dataset_of_result(best)
        if ds is not None and int(round(np.sqrt(ds.test.shape[1]))) ** 2 == ds.test.shape[1]:
            paths.append(plot_samples_and_reconstructions(
                load_params(best["run_dir"]), ds.binarized_test(seed=0), np.random.default_rng(0),
                fig_dir / f"samples_L{L}.png",
                title=f"{best['objective'].upper()} k={best['k']}: test images, reconstructions, samples"))
    return paths


def dataset_of_result(result):
    """The data set a table cell was trained on, reloaded from its checkpoint's record (None if it has none)."""
    spec = load_checkpoint(result["run_dir"])["meta"]["config"]["data"]
    return dataset_from_spec(spec) if spec.get("name") else None
