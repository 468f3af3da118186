"""Golden fixtures for testing IWAE implementations in other frameworks (format: docs/oracle.md).

  iwae-np oracle export DIR        one fixture (architecture, k, batch, seed, dtype, hard case)
  iwae-np oracle export-suite DIR  the standard suite: both architectures, k = 1, 5, 50, batch 1
                                   and more, and the hard cases
  iwae-np oracle check FIXTURE RESULTS
                                   compare another implementation's results (.npz, same keys) with
                                   a fixture: max abs and rel error per quantity; exit 0 when all
                                   agree, 1 when one disagrees, 2 on a bad input (missing key, shape
                                   mismatch, wrong format version, checksum mismatch)
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

    c = sub.add_parser("check", help="compare results with a fixture")
    c.add_argument("fixture", help="fixture directory")
    c.add_argument("results", help="results .npz with the fixture's output keys")
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
    from ..oracle import check_results, load_fixture, load_results, quantity_group
    fixture = load_fixture(args.fixture)
    rows = check_results(fixture, load_results(args.results), args.rtol, args.atol)
    failed = [r for r in rows if not r.passed]
    print(_format_rows(failed if args.failures_only else rows))
    worst = {}
    for r in rows:
        g = quantity_group(r.key)
        worst[g] = max(worst.get(g, 0.0), r.max_rel_error)
    print()
    print(f"fixture {fixture.manifest['name']} ({fixture.manifest['dtype']}, rtol {rows[0].rtol:g}, "
          f"atol {rows[0].atol:g}): {len(rows)} arrays, {len(rows) - len(failed)} agree, {len(failed)} disagree; "
          f"largest relative error {max(worst.values()):.1e}")
    if failed:
        print("DISAGREE: " + ", ".join(r.key for r in failed), file=sys.stderr)
        return 1
    return 0
