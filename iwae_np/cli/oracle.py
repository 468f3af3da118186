"""Golden fixtures for IWAE implementations in other frameworks, and three ways to check one (docs/oracle.md).

  iwae-np oracle export DIR        one fixture (architecture, k, batch, seed, dtype, hard case)
  iwae-np oracle export-suite DIR  the standard suite: both architectures, k = 1, 5, 50, batch 1
                                   and more, and the hard cases
  iwae-np oracle check FIXTURE RESULTS
                                   an implementation that takes the fixture's noise eps: every
                                   quantity against the fixture, max abs and rel error each
  iwae-np oracle check SUITE RESULTS_DIR
                                   the same for every fixture of a suite (RESULTS_DIR/<name>.npz)
  iwae-np oracle replay FIXTURE RESULTS
                                   an implementation that draws its own noise and writes its latents
                                   h.h<l> (k, B, d), log_w, bounds and gradients: iwae-np recovers
                                   eps = (h - mu) / sigma and recomputes everything exactly
  iwae-np oracle statistical FIXTURE RESULTS
                                   a black box: N independent draws of its bound (and gradient)
                                   against iwae-np's own draws, two-sample tests with a Bonferroni
                                   correction, the noise floor, the power and the N to ask for

Every check exits 0 when all agree, 1 when one disagrees (naming it on stderr: DISAGREE: ...) and
2 on a bad input (missing key, shape mismatch, wrong format version, checksum mismatch, unreadable
file). When a check disagrees, the report leads with where: which network (recognition phi, generative
theta), which layer and which term of log w differ. Then the known mistakes (VAE for IWAE, sum for mean,
sign, one joint bound, k off by one, normalized weights not detached, analytic KL, log variance for log
sigma, transposed W, thresholded softplus, STL, Renyi 0.5, no max shift; and, for the theta and phi part
of every objective's gradient, 31 known gradients) are computed and the ones that explain every number
are named; none is named "closest".

examples:
  iwae-np oracle export f/ --architecture small-two-layer --k 5 --batch 3 --seed 1
  python examples/torch_adapter.py f/ --out r/ && iwae-np oracle check f/ r/f.npz
  python examples/pyro_client.py f/ replay r.npz && iwae-np oracle replay f/ r.npz
  python examples/pyro_client.py f/ statistical s.npz --draws 500 && iwae-np oracle statistical f/ s.npz
  iwae-np oracle check suite/ results/ --failures-only | head -20
"""
import argparse
import os
import sys

from .arguments import integer, number

#: ``--rtol`` / ``--atol``: a number >= 0, infinity allowed (an infinite tolerance still never lets a NaN agree).
TOLERANCE = number(0, infinite=True)

HELP = "export golden fixtures and check other implementations against them (check, replay, statistical)"


def add_arguments(p):
    from ..oracle import HARD_CASES, ORACLE_ARCHITECTURES
    from ..oracle.statistical import MIN_DRAWS
    sub = p.add_subparsers(dest="oracle_command", metavar="SUBCOMMAND")
    sub.required = True

    e = sub.add_parser("export", help="write one fixture into a directory")
    e.add_argument("directory", help="fixture directory to write (manifest.json, arrays.npz)")
    e.add_argument("--architecture", choices=sorted(ORACLE_ARCHITECTURES), default="small-one-layer",
                   help="one-layer / two-layer are the paper's (D = 784); small-* have the same structure")
    e.add_argument("--k", type=integer(1), default=5, help="samples per example (default 5)")
    e.add_argument("--batch", type=integer(1), default=3, help="examples (default 3)")
    e.add_argument("--seed", type=integer(0), default=0, help="seed of the model, data and noise (default 0)")
    e.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    e.add_argument("--case", choices=sorted(HARD_CASES), default="none", help="a hard case (default none)")
    e.add_argument("--miwae-M", type=integer(1), default=None, help="MIWAE/PIWAE groups M (must divide k)")
    e.add_argument("--ciwae-beta", type=number(), default=None)
    e.add_argument("--renyi-alpha", type=number(), default=None)
    e.set_defaults(_oracle=_export)

    s = sub.add_parser("export-suite", help="write the standard suite into a directory")
    s.add_argument("directory", help="directory for the suite (suite.json and one directory per fixture)")
    s.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    s.set_defaults(_oracle=_export_suite)

    c = sub.add_parser("check", help="compare results with a fixture (or a whole suite)")
    c.add_argument("fixture", help="fixture directory, or a suite directory (with suite.json)")
    c.add_argument("results", help="results .npz with the fixture's output keys; for a suite, a directory "
                                   "holding <fixture name>.npz for each fixture")
    c.add_argument("--rtol", type=TOLERANCE, default=None, help="override the dtype's relative tolerance")
    c.add_argument("--atol", type=TOLERANCE, default=None, help="override the dtype's absolute tolerance")
    c.add_argument("--failures-only", action="store_true", help="print only the rows that disagree")
    c.add_argument("--no-diagnosis", action="store_true", help="do not compute the known mistakes on a failure")
    c.set_defaults(_oracle=_check)

    r = sub.add_parser("replay", help="check an implementation that draws its own noise, from its latents",
                       description=REPLAY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("fixture", help="fixture directory (its parameters, x, k and tolerance are used)")
    r.add_argument("results", help="replay .npz: h.h<l> (k, B, d_l), log_w (k, B), bound.<name> (B,) and/or "
                                   "bound_mean.<name>, optionally grad.<name>.<parameter> and term.*")
    r.add_argument("--rtol", type=TOLERANCE, default=None, help="override the dtype's relative tolerance")
    r.add_argument("--atol", type=TOLERANCE, default=None, help="override the dtype's absolute tolerance")
    r.add_argument("--failures-only", action="store_true", help="print only the rows that disagree")
    r.add_argument("--no-diagnosis", action="store_true", help="do not compute the known mistakes on a failure")
    r.set_defaults(_oracle=_replay)

    t = sub.add_parser("statistical", help="check a black box from N independent draws of its bound and gradient",
                       description=STATISTICAL_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("fixture", help="fixture directory with k > 1 (its parameters, x and k are used)")
    t.add_argument("results", help="per-draw .npz: bound.<name> (N, B) and/or bound_mean.<name> (N,), "
                                   "optionally grad.<name>.<parameter> (N, ...)")
    t.add_argument("--alpha", type=number(0, 1, low_open=True, high_open=True), default=0.01,
                   help="false-alarm rate over all coordinates (default 0.01)")
    t.add_argument("--reference-draws", type=integer(MIN_DRAWS), default=None, help="iwae-np's draws (default 4 N)")
    t.add_argument("--groups", type=integer(2), default=50, help="groups of reference draws for the gradient's spread")
    t.add_argument("--seed", type=integer(0), default=0, help="seed of iwae-np's draws (default 0)")
    t.add_argument("--target", type=number(0, low_open=True), default=0.01,
                   help="relative bias the recommended N is for (default 0.01)")
    t.add_argument("--no-diagnosis", action="store_true", help="do not test the known mistakes on a failure")
    t.set_defaults(_oracle=_statistical)


REPLAY_HELP = """Replay: check an implementation that draws its own noise, exactly.

For the fixture's parameters and x, the candidate writes its own latents per stochastic layer,
h.h<l> (k, B, d_l), its log_w (k, B), its bounds (bound.iwae (B,) and/or bound_mean.iwae) and
optionally its gradients grad.iwae.<parameter> (ascent directions of the batch mean, W as
(n_in, n_out)). iwae-np recovers eps = (h - mu) / sigma layer by layer with its own recognition
networks at the candidate's latents, checks that eps looks N(0, 1), recomputes every quantity and
compares with the fixture's tolerance. Exit 0 agree, 1 disagree (named), 2 bad input.

examples:
  python examples/pyro_client.py f/ replay r.npz && iwae-np oracle replay f/ r.npz
  python examples/torch_iwae_client.py f/ replay r.npz --detach && iwae-np oracle replay f/ r.npz
"""

STATISTICAL_HELP = """Statistical: check a black box from N independent draws.

The candidate evaluates the fixture's parameters and batch N times with fresh noise and k samples
per example, and writes per draw bound.<name> (N, B) and/or bound_mean.<name> (N,), optionally
grad.<name>.<parameter> (N, ...). iwae-np draws its own, tests each coordinate's mean with Welch's
two-sample test, Bonferroni-corrected over all coordinates at --alpha, and reports the noise floor,
the smallest relative bias this N detects with probability 0.8, and the N a --target bias needs.
Use k > 1 (at k = 1 IWAE and the VAE coincide). Exit 0 agree, 1 disagree (named), 2 bad input.

examples:
  python examples/pyro_client.py f/ statistical s.npz --draws 500 && iwae-np oracle statistical f/ s.npz
  iwae-np oracle statistical f/ s.npz --alpha 0.001 --reference-draws 8000 --target 0.005
"""


def run(args):
    try:
        return args._oracle(args)
    except BrokenPipeError:
        # the reader of stdout went away (``| head``): stop writing, keep the verdict's exit status
        _silence_stdout()
        return getattr(args, "_verdict", 0)


def _silence_stdout():
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _export(args):
    from ..oracle import export_fixture
    settings = {}
    if args.miwae_M is not None:
        settings["miwae_M"] = settings["piwae_M"] = args.miwae_M
    if args.ciwae_beta is not None:
        settings["ciwae_beta"] = args.ciwae_beta
    if args.renyi_alpha is not None:
        settings["renyi_alpha"] = args.renyi_alpha
    m = export_fixture(args.directory, args.architecture, args.k, args.batch, args.seed, args.dtype, args.case,
                       settings)
    n_out = sum(1 for v in m["arrays"].values() if v["role"] == "output")
    print(f"wrote fixture {m['name']} to {args.directory}: {len(m['arrays']) - n_out} input and {n_out} output "
          f"arrays, {m['dtype']}, log w in [{m['case']['log_w_min']:.6g}, {m['case']['log_w_max']:.6g}]")
    return 0


def _export_suite(args):
    import time
    from ..oracle import export_suite
    start = time.perf_counter()
    names = export_suite(args.directory, args.dtype)
    for name in names:
        print(name)
    print(f"wrote {len(names)} fixtures to {args.directory} in {time.perf_counter() - start:.1f} s")
    return 0


def _format_rows(rows):
    lines = ["| quantity | shape | max abs ref | max abs error | max rel error | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.key} | {list(r.shape)} | {r.max_abs_reference:.3e} | {r.max_abs_error:.2e} "
                     f"| {r.max_rel_error:.2e} | {'ok' if r.passed else 'FAIL'} |")
    return "\n".join(lines)


def _rows_or_none(rows, failed, failures_only):
    """The table of rows (of the failing ones with ``--failures-only``); with nothing failing, one line saying so
    rather than an empty table's header."""
    if failures_only and not failed:
        return f"(--failures-only: none of the {len(rows)} arrays disagrees)"
    return _format_rows(failed if failures_only else rows)


def _print_where(lines):
    """The localisation that leads a disagreement's report (network, layer, term), then a blank line."""
    if lines:
        print("\n".join(lines))
        print()


def _check(args):
    from pathlib import Path
    from ..oracle.localise import format_where, localise
    from ..oracle.format import SUITE_INDEX_NAME
    from ..oracle import check_results, check_suite, load_fixture, load_results, worst_errors
    if (Path(args.fixture) / SUITE_INDEX_NAME).exists():
        return _check_suite(args, check_suite(args.fixture, args.results, args.rtol, args.atol))
    fixture = load_fixture(args.fixture)
    results = load_results(args.results)
    rows = check_results(fixture, results, args.rtol, args.atol)
    failed = [r for r in rows if not r.passed]
    args._verdict = 1 if failed else 0
    if failed:
        print("DISAGREE: " + ", ".join(r.key for r in failed), file=sys.stderr)
        _print_where(format_where(localise(rows)))
    print(_rows_or_none(rows, failed, args.failures_only))
    print()
    print(f"fixture {fixture.manifest['name']} ({fixture.manifest['dtype']}, rtol {rows[0].rtol:g}, "
          f"atol {rows[0].atol:g}{_overridden(args)}): {len(rows)} arrays, {len(rows) - len(failed)} agree, "
          f"{len(failed)} disagree; largest relative error {max(worst_errors(rows).values()):.1e}")
    if failed and not args.no_diagnosis:
        from ..oracle.diagnosis import diagnose_exact, diagnose_gradients, format_diagnosis, format_gradient_diagnosis
        from ..oracle.quantities import verified_settings
        params, x, eps = fixture.model_inputs()
        print()
        variants = diagnose_exact(params, x, results, eps=eps, rtol=rows[0].rtol)
        print("\n".join(format_diagnosis(variants, threshold=rows[0].rtol)))
        explained = {"iwae"} if any(v.matches for v in variants) else set()  # (a variant explains IWAE's gradient)
        parts = diagnose_gradients(params, x, results, eps, verified_settings(fixture), rtol=rows[0].rtol,
                                   atol=rows[0].atol,
                                   objectives=[g for g in localise(rows).gradients if g not in explained])
        print("\n".join(format_gradient_diagnosis(parts)))
    return args._verdict


def _overridden(args):
    return " as given on the command line" if args.rtol is not None or args.atol is not None else ""


def _check_suite(args, by_fixture):
    from ..oracle import worst_errors
    all_rows = [r for rows in by_fixture.values() for r in rows]
    failed = [(name, r) for name, rows in by_fixture.items() for r in rows if not r.passed]
    args._verdict = 1 if failed else 0
    if failed:
        from ..oracle.localise import format_where, localise
        print("DISAGREE: " + ", ".join(f"{name}: {r.key}" for name, r in failed), file=sys.stderr)
        _print_where([f"{name}: {line}" for name, rows in by_fixture.items()
                      for line in format_where(localise(rows))])
    if failed:
        print(_format_rows([r for _, r in failed]).replace("| quantity |", "| quantity (failing) |", 1))
        print()
    print("| fixture | arrays | disagree | largest rel error |\n|---|---|---|---|")
    for name, rows in by_fixture.items():
        print(f"| {name} | {len(rows)} | {sum(not r.passed for r in rows)} "
              f"| {max(r.max_rel_error for r in rows):.1e} |")
    print()
    print("| quantity | largest rel error over the suite |\n|---|---|")
    for group, err in worst_errors(all_rows).items():
        print(f"| {group} | {err:.1e} |")
    print()
    print(f"suite {args.fixture}: {len(by_fixture)} fixtures, {len(all_rows)} arrays, {len(failed)} disagree")
    return args._verdict


def _replay(args):
    from ..oracle import load_fixture
    from ..oracle.diagnosis import format_diagnosis, format_gradient_diagnosis
    from ..oracle.localise import format_where
    from ..oracle.replay import replay_check
    fixture = load_fixture(args.fixture)
    report = replay_check(fixture, args.results, args.rtol, args.atol, diagnose=not args.no_diagnosis)
    args._verdict = 0 if report.passed else 1
    if not report.passed:
        print("DISAGREE: " + ", ".join(dict.fromkeys(report.failed_keys)), file=sys.stderr)
        # (a problem with the latents, named after h.h<l>, is about the recognition network's sampling)
        _print_where([f"where: {p}" for p in report.problems] + format_where(report.where))
    rows = report.rows
    failed = [r for r in rows if not r.passed]
    print(_rows_or_none(rows, failed, args.failures_only))
    print()
    print("| layer | recovered eps, the example least like N(0, 1) | n | mean | std | max abs | p (mean) | p (spread) "
          "| p (shape) | N(0, 1)? |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for l, st in enumerate(report.noise, start=1):
        print(f"| h{l} | {st['example']} of {st['examples']} | {st['n']} | {st['mean']:.3g} | {st['std']:.3g} "
              f"| {st['max_abs']:.3g} | {st['p_mean']:.2g} | {st['p_var']:.2g} | {st['p_ks']:.2g} "
              f"| {'yes' if st['normal'] else 'NO'} |")
    print()
    for convention in report.conventions:
        print(convention)
    print(f"replay of {report.name} (k = {report.k_candidate} drawn, fixture k = {report.k}; rtol {rows[0].rtol:g}, "
          f"atol {rows[0].atol:g}{_overridden(args)}): {len(rows)} arrays, {len(rows) - len(failed)} agree, "
          f"{len(failed)} disagree, {len(report.problems)} problem(s) with the latents; largest relative error "
          f"{max(r.max_rel_error for r in rows):.1e}")
    if report.diagnosis:
        print()
        print("\n".join(format_diagnosis(report.diagnosis, threshold=rows[0].rtol)))
    if report.gradient_diagnosis:
        print("\n".join(format_gradient_diagnosis(report.gradient_diagnosis)))
    return args._verdict


def _where_statistical(report):
    """The lines that lead a statistical disagreement: which network (recognition phi, generative theta) and which
    layer of each rejected gradient, and which bound."""
    lines = []
    for t in report.tests:
        if not t.rejected:
            continue
        if not t.by_layer:
            lines.append(f"where: {t.key} differs ({t.rejected} of {t.n_coordinates} coordinates, max |z| "
                         f"{t.max_abs_z:.2f} at {t.worst})")
            continue
        roles = {role: s for role, s in t.by_role.items() if s.rejected}
        layers = [f"{layer} ({s.rejected} of {s.coordinates}, max |z| {s.max_abs_z:.2f})"
                  for layer, s in t.by_layer.items() if s.rejected]
        names = {"phi": "the recognition network (phi)", "theta": "the generative network (theta)"}
        lines.append(f"where: {t.key} differs in {' and '.join(names[r] for r in roles)}: " + ", ".join(layers))
    return lines + ([""] if lines else [])


def _statistical(args):
    from ..oracle import load_fixture
    from ..oracle.diagnosis import format_diagnosis, format_gradient_diagnosis
    from ..oracle.keys import role_of
    from ..oracle.statistical import POWER, statistical_check
    fixture = load_fixture(args.fixture)
    report = statistical_check(fixture, args.results, args.alpha, args.reference_draws, args.groups, args.seed,
                               args.target, diagnose=not args.no_diagnosis)
    args._verdict = 0 if report.passed else 1
    if not report.passed:
        print("DISAGREE: " + ", ".join(t.key for t in report.tests if t.rejected), file=sys.stderr)
    for line in _where_statistical(report):
        print(line)
    print(f"| quantity | coordinates | rejected | max abs z | at | noise floor | smallest bias detected "
          f"(power {POWER:g}) | N for a {args.target:g} bias |")
    print("|---|---|---|---|---|---|---|---|")
    for t in report.tests:
        if t.noise_floor is None:
            power = "- | - | - |"
        else:
            power = f"{t.noise_floor:.2e} | {t.min_detectable_bias:.2e} | {t.recommended_draws} |"
        print(f"| {t.key} | {t.n_coordinates} | {t.rejected} | {t.max_abs_z:.2f} | {t.worst} | {power}")
    print()
    for t in report.tests:
        if t.power_note:
            print(f"{t.key}: {t.power_note}")
    for t in report.tests:
        if t.by_role:
            print(f"{t.key} by network: " + "; ".join(
                f"{role} ({', '.join(n for n in t.by_network if role_of(n) == role)}) max |z| {s.max_abs_z:.2f}, "
                f"{s.rejected} of {s.coordinates} rejected" for role, s in t.by_role.items()))
    print(f"statistical check of {report.name} (k = {report.k}): N = {report.draws} candidate draws, "
          f"{report.reference_draws} iwae-np draws (seed {args.seed}, {report.groups} groups), "
          f"{report.coordinates} coordinates, Bonferroni threshold z* = {report.threshold:.2f} (alpha {report.alpha:g}): "
          + ("agree" if report.passed else "DISAGREE"))
    for convention in report.conventions:
        print(convention)
    print("noise floor: the smallest standard error of a difference of means relative to the mean, over the "
          "coordinates; a bias (1 + rho) on every coordinate is detected with probability "
          f"{POWER:g} for |rho| >= the smallest bias detected")
    if report.diagnosis:
        print()
        print("\n".join(format_diagnosis(report.diagnosis, statistic="max |z|", threshold=report.threshold)))
    if report.gradient_diagnosis:
        print("\n".join(format_gradient_diagnosis(report.gradient_diagnosis)))
    return args._verdict
