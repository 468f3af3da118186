r"""The paper's claims about Table 1 (section 5.1), each tested on a finished table with paired statistics.

Every cell of a table is evaluated on the same binarized test images with the same noise seeds, and its
evaluation keeps :math:`\mathcal L_k(x_n)` of every test image (``test_L``). A claim compares two or four
cells image by image: the per-image differences :math:`d_n` give a mean and its standard error
:math:`\mathrm{se} = \mathrm{sd}(d) / \sqrt N`, which is much smaller than that of either NLL alone
because most of the image-to-image variation cancels.

The claims, for the largest k that both objectives were trained with (50 in the paper):

- (a) IWAE has a lower test NLL than the VAE: :math:`\overline{d}` with :math:`d_n = \mathcal L^{IWAE}_n - \mathcal L^{VAE}_n`;
- (b) IWAE gains more from k = 1 to k = 50 than the VAE does: :math:`d_n = (\mathcal L^{IWAE,50}_n - \mathcal L^{IWAE,1}_n)
  - (\mathcal L^{VAE,50}_n - \mathcal L^{VAE,1}_n)`. When IWAE k = 1 is the VAE k = 1 cell (``L_1 = L_vae``, trained once),
  this is the same number as (a): the two claims are then one measurement, reported with both gains;
- (c) IWAE has more active units than the VAE (a count per model: no standard error).

Verdicts: ``reproduced`` when the difference is in the paper's direction by more than
:data:`VERDICT_SE` standard errors, ``contradicted`` when it is in the other direction by more than that,
``inconclusive`` otherwise. Over several training seeds, :func:`seed_spread` gives the mean and the
standard deviation of each claim's difference across seeds, which is often larger than the standard error
within one run.
"""
import json
import math
import os
from dataclasses import dataclass

import numpy as np

from .paper import PAPER_TABLE1, paper_footnote, paper_key, paper_label

__all__ = ["VERDICT_SE", "PairedDifference", "Claim", "paired_difference", "verdict", "check_results", "table_claims",
           "seed_spread", "check_comparable_tables", "format_claims", "format_seed_spread", "claims_report",
           "unfinished_cells"]

#: A difference counts as shown when it exceeds this many standard errors.
VERDICT_SE = 2.0

@dataclass(frozen=True)
class PairedDifference:
    """The mean of per-image differences, its standard error, and the number of images."""
    mean: float
    se: float
    n: int

    @property
    def z(self):
        return self.mean / self.se if self.se > 0 else math.copysign(math.inf, self.mean) if self.mean else 0.0


@dataclass(frozen=True)
class Claim:
    """One claim tested on one table: ``difference`` is positive in the paper's direction."""
    key: str
    statement: str
    paper: str
    measured: str
    difference: object  # a PairedDifference, or for counts an int
    verdict: str


def paired_difference(a, b):
    r"""Mean and standard error of :math:`d_n = a_n - b_n` over the images n (``ddof = 1``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two vectors over the same images, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError("a paired difference needs at least 2 images")
    d = a - b
    return PairedDifference(float(np.mean(d)), float(np.std(d, ddof=1) / math.sqrt(d.size)), int(d.size))


def verdict(difference):
    """``reproduced`` / ``contradicted`` / ``inconclusive`` for a difference that is positive in the paper's direction."""
    if isinstance(difference, PairedDifference):
        if difference.mean > VERDICT_SE * difference.se:
            return "reproduced"
        if difference.mean < -VERDICT_SE * difference.se:
            return "contradicted"
        return "inconclusive"
    return "reproduced" if difference > 0 else ("contradicted" if difference < 0 else "inconclusive")


def _cells(results, layers):
    """``{(objective, k): result}`` of the finished cells with ``layers`` stochastic layers; checks they are comparable."""
    cells = {(r["objective"], r["k"]): r for r in results
             if r.get("status") == "finished" and r.get("layers") == layers}
    evaluated = [r for r in cells.values() if "test_L" in r]
    if len(evaluated) != len(cells):
        missing = sorted(f"{o} k={k}" for (o, k), r in cells.items() if "test_L" not in r)
        raise ValueError(f"cells {missing} have no per-image test bounds (evaluated by an iwae-np older than "
                         "0.2): run `iwae-np evaluate` on them again")
    setting = {(r.get("data"), r.get("n_test"), r.get("eval_k"), r.get("eval_seed")) for r in evaluated}
    if len(setting) > 1:
        raise ValueError(f"the cells were evaluated on different test images or with different settings "
                         f"(data, images, k, seed): {sorted(setting, key=str)}; paired comparisons need the same")
    return cells


def _paper_cells(paper_data, layers):
    """``{(objective, k): (NLL, active units)}`` of the paper's Table 1 at k = 1 and 50 (empty if it has no such rows)."""
    out = {}
    for k in (1, 50):
        row = PAPER_TABLE1.get((paper_data, layers, k))
        if row is None:
            return {}
        vae_nll, vae_au, iwae_nll, iwae_au = row
        out[("vae", k)] = (vae_nll, sum(int(u) for u in vae_au.split("+")))
        out[("iwae", k)] = (iwae_nll, sum(int(u) for u in iwae_au.split("+")))
    return out


def _nll(r):
    return -float(np.mean(r["test_L"]))


def _au(r):
    return int(r["active_units_total"]) if "active_units_total" in r else int(sum(r["active_units"]))


def table_claims(results, layers=1, paper_data="MNIST"):
    """The claims (a), (b), (c) tested on the cells of one table with ``layers`` stochastic layers.

    ``results``: cell results as ``iwae-np table`` writes them (``results.json``), each with ``test_L``.
    Uses k = 1 and the largest k trained with both objectives; claims whose cells are missing are left out.
    Returns a list of :class:`Claim`.
    """
    cells = _cells(results, layers)
    both = sorted(k for (o, k) in cells if o == "vae" and ("iwae", k) in cells and k > 1)
    if not both:
        return []
    k = both[-1]
    vae, iwae = cells[("vae", k)], cells[("iwae", k)]
    L_vae, L_iwae = np.asarray(vae["test_L"]), np.asarray(iwae["test_L"])
    p = _paper_cells(paper_data, layers) if k == 50 else {}
    out = []

    diff = paired_difference(L_iwae, L_vae)  # NLL_vae - NLL_iwae
    pap = (f"IWAE {p[('iwae', 50)][0]:.2f}, VAE {p[('vae', 50)][0]:.2f}; VAE − IWAE = "
           f"{p[('vae', 50)][0] - p[('iwae', 50)][0]:.2f}" if p else "–")
    out.append(Claim("a", f"IWAE k={k} has a lower test NLL than the VAE k={k}", pap,
                     f"IWAE {_nll(iwae):.2f}, VAE {_nll(vae):.2f}; VAE − IWAE = {diff.mean:.2f} ± {diff.se:.2f} "
                     f"(z = {diff.z:.1f}, {diff.n:,} images)", diff, verdict(diff)))

    if ("vae", 1) in cells:
        vae1 = cells[("vae", 1)]
        iwae1 = cells.get(("iwae", 1), vae1)
        shared = iwae1 is vae1 or iwae1.get("shared_with") is not None
        L_v1, L_i1 = np.asarray(vae1["test_L"]), np.asarray(iwae1["test_L"])
        gain_i, gain_v = paired_difference(L_iwae, L_i1), paired_difference(L_vae, L_v1)
        d = paired_difference(L_iwae - L_i1, L_vae - L_v1)
        pap = (f"gain IWAE {p[('vae', 1)][0] - p[('iwae', 50)][0]:.2f}, VAE {p[('vae', 1)][0] - p[('vae', 50)][0]:.2f}; "
               f"IWAE − VAE = {p[('vae', 50)][0] - p[('iwae', 50)][0]:.2f}" if p else "–")
        note = "; k = 1 is one cell for both, so this is (a) again" if shared else ""
        out.append(Claim("b", f"IWAE gains more than the VAE from k=1 to k={k}", pap,
                         f"gain IWAE {gain_i.mean:.2f} ± {gain_i.se:.2f}, VAE {gain_v.mean:.2f} ± {gain_v.se:.2f}; "
                         f"IWAE − VAE = {d.mean:.2f} ± {d.se:.2f} (z = {d.z:.1f}{note})", d, verdict(d)))

    au_i, au_v = _au(iwae), _au(vae)
    pap = f"IWAE {p[('iwae', 50)][1]}, VAE {p[('vae', 50)][1]}" if p else "–"
    out.append(Claim("c", f"IWAE k={k} has more active units than the VAE k={k}", pap,
                     f"IWAE {au_i}, VAE {au_v} (of {sum(len(v) for v in iwae.get('active_unit_values', [])) or '?'})",
                     au_i - au_v, verdict(au_i - au_v)))
    return out


def seed_spread(claim_lists):
    """Per claim over several runs (seeds): ``{key: {"values", "mean", "sd", "verdicts"}}`` of the differences."""
    out = {}
    for claims in claim_lists:
        for c in claims:
            value = c.difference.mean if isinstance(c.difference, PairedDifference) else float(c.difference)
            entry = out.setdefault(c.key, {"statement": c.statement, "values": [], "verdicts": []})
            entry["values"].append(value)
            entry["verdicts"].append(c.verdict)
    for entry in out.values():
        v = np.asarray(entry["values"])
        entry["mean"] = float(np.mean(v))
        entry["sd"] = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    return out


def format_claims(claims, paper_label="paper (MNIST)", footnote=""):
    """A Markdown table: claim, the paper's numbers, this run's, the verdict; then how verdicts are made and
    ``footnote`` (what a star in ``paper_label`` means)."""
    lines = [f"| claim | {paper_label} | this run (paired over test images) | verdict |", "|---|---|---|---|"]
    for c in claims:
        lines.append(f"| ({c.key}) {c.statement} | {c.paper} | {c.measured} | **{c.verdict}** |")
    lines.append("")
    lines.append(f"Verdicts: reproduced when the difference is in the paper's direction by more than {VERDICT_SE:g} "
                 "standard errors of the paired per-image differences, contradicted when in the other direction by "
                 "more than that, inconclusive otherwise; active units are counts (A_u > 0.01), compared as such."
                 + (f" {footnote}" if footnote else ""))
    return "\n".join(lines)


def format_seed_spread(spread, labels):
    """A Markdown table of each claim's difference per run and its mean and standard deviation over the runs."""
    lines = ["| claim | " + " | ".join(labels) + " | mean | sd over runs |",
             "|---|" + "---|" * (len(labels) + 2)]
    for key, e in sorted(spread.items()):
        cells = [f"{v:.2f} ({w})" for v, w in zip(e["values"], e["verdicts"])]
        lines.append(f"| ({key}) {e['statement']} | " + " | ".join(cells) + f" | {e['mean']:.2f} | {e['sd']:.2f} |")
    return "\n".join(lines)


def claims_report(results, data_name):
    """The claims of every layer count in ``results`` as Markdown (what ``iwae-np table`` and ``claims`` print).

    The paper's column is Table 1's MNIST rows for any data set but Omniglot; its label says so
    (:func:`~iwae_np.experiments.paper.paper_label`)."""
    key = paper_key(data_name)
    parts = []
    for layers in sorted({r.get("layers") for r in results if r.get("status") == "finished"}):
        claims = table_claims(results, layers, key)
        if claims:
            parts.append(f"Claims of the paper, {layers} stochastic layer(s):\n\n"
                         + format_claims(claims, f"paper ({paper_label(data_name)}, Table 1)",
                                         paper_footnote(data_name)))
    return "\n\n".join(parts)


def unfinished_cells(results):
    """The names of the cells of ``results`` that did not finish, with their status (``"vae-k50-L1 (interrupted)"``)."""
    return [f"{r.get('name') or r.get('cell') or '?'} ({r.get('status')})" for r in results
            if r.get("status") != "finished"]


# ---------------------------------------------------------------------------------------------
# what a results.json must hold, and which tables can be compared


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_results(results, source):
    """``results`` (a parsed ``results.json``) as :func:`table_claims` needs it, or a one-line ValueError naming
    ``source`` and the cell: a list of dicts with a ``status``; a finished cell has an ``objective``, integer ``k``
    and ``layers``, finite per-image ``test_L`` (a non-finite value is an error, not a verdict), active units."""
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ValueError(f"{source} is not a list of cell results (a table directory's results.json, written by "
                         "iwae-np table)")
    for i, r in enumerate(results):
        name = r.get("cell") or r.get("name") or f"number {i + 1}"
        where = f"{source}: cell {name}"
        if not isinstance(r.get("status"), str):
            raise ValueError(f"{where} has no status")
        if r["status"] != "finished":
            continue
        if r.get("objective") not in ("vae", "iwae"):
            raise ValueError(f"{where}: objective {r.get('objective')!r} is not vae or iwae")
        for key in ("k", "layers"):
            if not (_is_int(r.get(key)) and r[key] >= 1):
                raise ValueError(f"{where}: {key} {r.get(key)!r} is not an integer >= 1")
        if "test_L" in r:
            values = r["test_L"]
            if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in values):
                raise ValueError(f"{where}: test_L is not a list of numbers")
            bad = [j for j, v in enumerate(values) if not math.isfinite(v)]
            if bad:
                raise ValueError(f"{where}: test_L of {len(bad)} image(s) is not finite (image {bad[0]}: "
                                 f"{values[bad[0]]}); its evaluation is broken: evaluate the cell again")
        units = r.get("active_units_total", r.get("active_units"))
        if not (_is_int(units) or (isinstance(units, list) and all(_is_int(u) for u in units))):
            raise ValueError(f"{where}: active units {units!r} are not counts")
    return results


#: The settings two tables must share for their claims to be compared (their training seeds must differ).
COMPARED_SETTINGS = ("data", "n_test", "eval_k", "eval_seed", "total_passes", "schedule", "architecture", "dtype")


def _table_signature(results):
    finished = [r for r in results if r.get("status") == "finished"]
    sig = {key: sorted({json.dumps(r.get(key), sort_keys=True) for r in finished}) for key in COMPARED_SETTINGS}
    for layers in sorted({r["layers"] for r in finished}):
        cells = {(r["objective"], r["k"]) for r in finished if r["layers"] == layers}
        both = sorted(k for (o, k) in cells if o == "vae" and ("iwae", k) in cells and k > 1)
        sig[f"k of the claims, {layers} layer(s)"] = [str(k) for k in both[-1:]] + (["k = 1"] if ("vae", 1) in cells
                                                                                   else [])
    return sig


def check_comparable_tables(tables):
    """``tables``: ``[(directory, results)]``. ValueError naming the directories when one is given twice, two
    were trained with the same seed (the same run), or two differ in a setting of :data:`COMPARED_SETTINGS`
    or in the k their claims are made at: their spread over runs would mix different questions."""
    seen = {}
    for d, _ in tables:
        key = os.path.realpath(d)
        if key in seen:
            raise ValueError(f"{d} is given twice (also as {seen[key]}): a spread over runs needs different runs")
        seen[key] = d
    seeds = {}
    for d, results in tables:
        for seed in {r.get("seed") for r in results if r.get("status") == "finished" and _is_int(r.get("seed"))}:
            if seed in seeds:
                raise ValueError(f"{seeds[seed]} and {d} were both trained with --seed {seed}: the same run twice "
                                 "(a copy?); a spread over runs needs different seeds")
            seeds[seed] = d
    (first, first_results), rest = tables[0], tables[1:]
    want = _table_signature(first_results)
    for d, results in rest:
        got = _table_signature(results)
        diff = [f"{key} ({', '.join(want.get(key, [])) or '-'} in {first}, {', '.join(got.get(key, [])) or '-'} "
                f"in {d})" for key in sorted(set(want) | set(got)) if want.get(key) != got.get(key)]
        if diff:
            raise ValueError(f"{first} and {d} are not the same table with another seed; they differ in "
                             + "; ".join(diff))
