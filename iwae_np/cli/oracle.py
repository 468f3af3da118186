"""Golden fixtures for testing IWAE implementations in other frameworks (format: docs/oracle.md).

  iwae-np oracle export DIR        one fixture (architecture, k, batch, seed, dtype, hard case)
  iwae-np oracle export-suite DIR  the standard suite: both architectures, k = 1, 5, 50, batch 1
                                   and more, and the hard cases
  iwae-np oracle check FIXTURE RESULTS
                                   compare another implementation's results (.npz, same keys) with
                                   a fixture: max abs and rel error per quantity; exit 0 when all
                                   agree, 1 when one disagrees, 2 on a bad input (missing key, shape
                                   mismatch, wrong format version, checksum mismatch)
  iwae-np oracle check SUITE RESULTS_DIR
                                   the same for every fixture of a suite (RESULTS_DIR/<name>.npz),
                                   with the largest relative error per quantity over the suite
"""
import sys

HELP = "export golden fixtures and check other implementations against them"


def add_arguments(p):
    from ..oracle import HARD_CASES, ORACLE_ARCHITECTURES
    sub = p.add_subparsers(dest="oracle_command", metavar="SUBCOMMAND")
    sub.required = True

    e = sub.add_parser("export", help="write one fixture into a directory")
    e.add_argument("directory", help="fixture directory to write (manifest.json, arrays.npz)")
    e.add_argument("--architecture", choices=sorted(ORACLE_ARCHITECTURES), default="small-one-layer",
                   help="one-layer / two-layer are the paper's (D = 784); small-* have the same structure")
    e.add_argument("--k", type=int, default=5, help="samples per example (default 5)")
    e.add_argument("--batch", type=int, default=3, help="examples (default 3)")
    e.add_argument("--seed", type=int, default=0, help="seed of the model, data and noise (default 0)")
    e.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    e.add_argument("--case", choices=sorted(HARD_CASES), default="none", help="a hard case (default none)")
    e.add_argument("--miwae-M", type=int, default=None, help="MIWAE/PIWAE groups M (must divide k)")
    e.add_argument("--ciwae-beta", type=float, default=None)
    e.add_argument("--renyi-alpha", type=float, default=None)
    e.set_defaults(_oracle=_export)

    s = sub.add_parser("export-suite", help="write the standard suite into a directory")
    s.add_argument("directory", help="directory for the suite (suite.json and one directory per fixture)")
    s.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    s.set_defaults(_oracle=_export_suite)

    c = sub.add_parser("check", help="compare results with a fixture (or a whole suite)")
    c.add_argument("fixture", help="fixture directory, or a suite directory (with suite.json)")
    c.add_argument("results", help="results .npz with the fixture's output keys; for a suite, a directory "
                                   "holding <fixture name>.npz for each fixture")
    c.add_argument("--rtol", type=float, default=None, help="override the dtype's relative tolerance")
    c.add_argument("--atol", type=float, default=None, help="override the dtype's absolute tolerance")
    c.add_argument("--failures-only", action="store_true", help="print only the rows that disagree")
    c.set_defaults(_oracle=_check)


def run(args):
    return args._oracle(args)


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


def _check(args):
    from pathlib import Path
    from ..oracle.format import SUITE_INDEX_NAME
    from ..oracle import check_results, check_suite, load_fixture, load_results, worst_errors
    if (Path(args.fixture) / SUITE_INDEX_NAME).exists():
        return _check_suite(args, check_suite(args.fixture, args.results, args.rtol, args.atol))
    fixture = load_fixture(args.fixture)
    rows = check_results(fixture, load_results(args.results), args.rtol, args.atol)
    failed = [r for r in rows if not r.passed]
    print(_format_rows(failed if args.failures_only else rows))
    print()
    print(f"fixture {fixture.manifest['name']} ({fixture.manifest['dtype']}, rtol {rows[0].rtol:g}, "
          f"atol {rows[0].atol:g}): {len(rows)} arrays, {len(rows) - len(failed)} agree, {len(failed)} disagree; "
          f"largest relative error {max(worst_errors(rows).values()):.1e}")
    if failed:
        print("DISAGREE: " + ", ".join(r.key for r in failed), file=sys.stderr)
        return 1
    return 0


def _check_suite(args, by_fixture):
    from ..oracle import worst_errors
    all_rows = [r for rows in by_fixture.values() for r in rows]
    failed = [(name, r) for name, rows in by_fixture.items() for r in rows if not r.passed]
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
    if failed:
        print("DISAGREE: " + ", ".join(f"{name}: {r.key}" for name, r in failed), file=sys.stderr)
        return 1
    return 0
