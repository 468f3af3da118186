"""Regenerate the figures and the numeric sections of docs/reproduction.md from the committed results.

    python3 docs/reproduction/build.py

Reads ``docs/reproduction/results/`` (what ``iwae-np table`` and ``iwae-np evaluate`` wrote, copied as they
are), writes ``docs/figures/reproduction/*.png`` and replaces every block of ``docs/reproduction.md``
between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` with the table of that name. Nothing in
those blocks is typed by hand.
"""
import json
import re
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from iwae_np.experiments import figures  # noqa: E402
from iwae_np.experiments.claims import (claims_report, format_seed_spread, paired_difference,  # noqa: E402
                                        seed_spread, table_claims)
from iwae_np.experiments.paper import PAPER_TABLE1  # noqa: E402

RESULTS = HERE / "results"
FIGURES = ROOT / "docs" / "figures" / "reproduction"
REPORT = ROOT / "docs" / "reproduction.md"

#: The best public reproduction (github.com/nbip/IWAE, MNIST, 3,280 passes): IWAE and IWAE with DReG, one layer
#: {k: nll}, and the two-layer IWAE.
NBIP_IWAE = {1: 86.35, 5: 85.18, 50: 84.59}
NBIP_IWAE_L2 = {1: 84.83, 5: 83.48, 50: 82.82}
NBIP_DREG = {50: 84.32}


def load(name):
    path = RESULTS / name / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cells(results):
    return {(r["objective"], r["k"], r["layers"]): r for r in results if r.get("status") == "finished"}


def nll(r):
    return f"{r['test_nll']:.2f} ± {r['test_nll_se']:.2f}"


def au(r):
    return "+".join(str(c) for c in r["active_units"])


def hours(seconds):
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def table1(results, layers):
    by = cells(results)
    ks = sorted({k for (_, k, L) in by if L == layers})
    nbip = NBIP_IWAE if layers == 1 else NBIP_IWAE_L2
    lines = ["| k | VAE NLL | VAE AU | IWAE NLL | IWAE AU | paper MNIST VAE | paper MNIST IWAE | nbip/IWAE MNIST IWAE |",
             "|---|---|---|---|---|---|---|---|"]
    for k in ks:
        v, i = by.get(("vae", k, layers)), by.get(("iwae", k, layers))
        p = PAPER_TABLE1.get(("MNIST", layers, k))
        paper = [f"{p[0]:.2f} / {p[1]}", f"{p[2]:.2f} / {p[3]}"] if p else ["–", "–"]
        extra = f"{nbip[k]:.2f}" + (f" (DReG {NBIP_DREG[k]:.2f})" if layers == 1 and k in NBIP_DREG else "")
        lines.append(f"| {k} | {nll(v) if v else '–'} | {au(v) if v else '–'} | {nll(i) if i else '–'} | "
                     f"{au(i) if i else '–'} | " + " | ".join(paper) + f" | {extra if k in nbip else '–'} |")
    first = next(iter(by.values()))
    lines += ["", f"NLL: -L_{first['eval_k']} on the first {first['n_test']:,} test images (± its standard error over "
              f"the images; paired differences below are far more precise). AU: active units, A_u > 0.01. "
              f"{first['total_passes']} passes per cell."]
    return "\n".join(lines)


def wall_times(results):
    lines = ["| cell | passes | training wall time | evaluation wall time |", "|---|---|---|---|"]
    for r in results:
        if r.get("status") == "finished" and not r.get("shared_with"):
            lines.append(f"| {r['objective'].upper()} k={r['k']}, {r['layers']} layer(s) | {r['total_passes']} | "
                         f"{hours(r['train_wall_time'])} | {hours(r['eval_wall_time'])} |")
    return "\n".join(lines)


def crossing(results, layers=1, k=50):
    """The monitored test bound of VAE and IWAE at every monitor point, and where IWAE's overtakes."""
    by = cells(results)
    v, i = by[("vae", k, layers)]["history"], by[("iwae", k, layers)]["history"]
    lines = [f"| passes | VAE k={k} test L_{v[0]['monitor_k']} | IWAE k={k} test L_{i[0]['monitor_k']} | IWAE − VAE |",
             "|---|---|---|---|"]
    for a, b in zip(v, i):
        assert a["passes_done"] == b["passes_done"]
        lines.append(f"| {a['passes_done']} | {a['test_bound']:.2f} | {b['test_bound']:.2f} | "
                     f"{b['test_bound'] - a['test_bound']:+.2f} |")
    return "\n".join(lines)


def continuation(table2, base):
    """Table 2 scaled: each continuation against the control that continues with the same objective."""
    first = cells(base)
    lines = ["| first stage | second stage | NLL after the first | NLL after the second | AU first → second "
             "| paper (MNIST, Table 2) |",
             "|---|---|---|---|---|---|"]
    names = {"vae1-then-iwae50": ("vae", 1, "IWAE k=50"), "vae1-then-vae1": ("vae", 1, "VAE k=1 (control)"),
             "iwae50-then-vae1": ("iwae", 50, "VAE k=1"), "iwae50-then-iwae50": ("iwae", 50, "IWAE k=50 (control)")}
    paper = {"vae1-then-iwae50": "86.76 → 84.88, 19 → 22 units", "iwae50-then-vae1": "84.78 → 86.02, 25 → 23 units"}
    for name, (obj, k, second) in names.items():
        r = table2.get(name)
        if r is None:
            continue
        f = first[(obj, k, 1)]
        lines.append(f"| {obj.upper()} k={k} | {second} | {nll(f)} | {nll(r)} | {au(f)} → {au(r)} "
                     f"| {paper.get(name, '—')} |")
    lines.append("")
    for a, b, what in (("vae1-then-iwae50", "vae1-then-vae1", "continuing the VAE k=1 with IWAE k=50 instead of itself"),
                       ("iwae50-then-vae1", "iwae50-then-iwae50", "continuing IWAE k=50 with the VAE k=1 instead of itself")):
        if a in table2 and b in table2:
            d = paired_difference(table2[a]["test_L"], table2[b]["test_L"])
            lines.append(f"- {what}: test NLL changes by {-d.mean:+.2f} ± {d.se:.2f} nats (paired over "
                         f"{d.n:,} images, z = {-d.z:.1f}).")
    return "\n".join(lines)


def continued(more, base, layers=2, k=50):
    """The two-layer cells continued with stage 3 (``iwae-np train --init-from``): NLL, units, the paired gap."""
    first = cells(base)
    lines = ["| cell | passes | NLL | AU | passes, continued | NLL, continued | AU, continued |",
             "|---|---|---|---|---|---|---|"]
    for obj in ("vae", "iwae"):
        f, r = first[(obj, k, layers)], more.get(f"{obj}-k{k}-L{layers}")
        if r is None:
            continue
        lines.append(f"| {obj.upper()} k={k} | {f['total_passes']} | {nll(f)} | {au(f)} | "
                     f"{f['total_passes']} + {r['total_passes']} | {nll(r)} | {au(r)} |")
    v, i = more.get(f"vae-k{k}-L{layers}"), more.get(f"iwae-k{k}-L{layers}")
    if v and i:
        d = paired_difference(i["test_L"], v["test_L"])
        lines += ["", f"VAE − IWAE after {v['total_passes']} more passes: {d.mean:.2f} ± {d.se:.2f} nats "
                  f"(paired over {d.n:,} test images, z = {d.z:.1f}). Training wall time "
                  f"{hours(v['train_wall_time'])} (VAE) and {hours(i['train_wall_time'])} (IWAE), side by side."]
    return "\n".join(lines)


def seeds(tables):
    labels = [name for name, _ in tables]
    lists = [table_claims(results, 1, "MNIST") for _, results in tables]
    return format_seed_spread(seed_spread(lists), labels)


def replace_block(text, name, content):
    pattern = re.compile(rf"(<!-- generated: {name} -->\n).*?(<!-- end: {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"docs/reproduction.md has no block '{name}'")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(2), text)


def main():
    long1, long2 = load("long-L1"), load("long-L2")
    table2 = {p.stem: json.loads(p.read_text()) for p in sorted((RESULTS / "table2").glob("*.json"))}
    main_runs = [(p.name, json.loads((p / "results.json").read_text()))
                 for p in sorted(RESULTS.glob("main-seed*")) if (p / "results.json").is_file()]
    more = {p.stem: json.loads(p.read_text()) for p in sorted((RESULTS / "long-L2-more").glob("*.json"))}
    blocks = {}
    FIGURES.mkdir(parents=True, exist_ok=True)
    paper = {}
    for (d, L, k), (vn, _, iwn, _) in PAPER_TABLE1.items():
        if d == "MNIST":
            paper[("vae", L, k)], paper[("iwae", L, k)] = vn, iwn
    if long1:
        blocks["table1-L1"] = table1(long1, 1)
        blocks["claims-L1"] = claims_report(long1, "fashion-mnist")
        blocks["crossing"] = crossing(long1)
        blocks["walltimes-L1"] = wall_times(long1)
        done = [r for r in long1 if r.get("status") == "finished"]
        # the two-layer cells after the same 40 passes (continued), not after their first 13
        figures.plot_nll_vs_k(done + list(more.values()), FIGURES / "nll_vs_k.png", paper=paper,
                              title="Fashion-MNIST, 40 passes (L_5000, 2,000 test images)",
                              paper_title="the paper's Table 1 (MNIST, 3,280 passes)")
        own = {f"{r['objective'].upper()} k={r['k']}": r["history"] for r in done if not r.get("shared_with")}
        figures.plot_training_curves(own, FIGURES / "curves_L1.png",
                                     title="Fashion-MNIST, one layer: test L_1000 on 500 images (solid), "
                                           "training images (dashed)")
        k50 = {key: value for key, value in own.items() if key.endswith("k=50")}
        figures.plot_training_curves(k50, FIGURES / "crossing_k50.png",
                                     title="VAE and IWAE at k = 50: where IWAE overtakes")
        figures.plot_active_units({f"{r['objective'].upper()} k={r['k']}": r["active_unit_values"]
                                   for r in done if r["k"] == 50}, FIGURES / "active_units_L1.png",
                                  title="log A_u, one layer, k = 50 (the paper's Figure 3)")
    if long2:
        blocks["table1-L2"] = table1(long2, 2)
        blocks["claims-L2"] = claims_report(long2, "fashion-mnist")
        blocks["walltimes-L2"] = wall_times(long2)
        blocks["crossing-L2"] = crossing(long2, layers=2)
        if more:
            blocks["L2-more"] = continued(more, long2)
        done2 = [r for r in long2 if r.get("status") == "finished"]
        figures.plot_active_units({f"{r['objective'].upper()} k={r['k']}": r["active_unit_values"] for r in done2},
                                  FIGURES / "active_units_L2.png", title="log A_u, two layers, k = 50")
    if table2 and long1:
        blocks["table2"] = continuation(table2, long1)
    if main_runs:
        blocks["seeds"] = seeds(main_runs)
    text = REPORT.read_text()
    for name, content in blocks.items():
        text = replace_block(text, name, content)
    REPORT.write_text(text)
    print(f"wrote {len(blocks)} sections of {REPORT.relative_to(ROOT)} and the figures in {FIGURES.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
