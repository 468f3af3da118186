"""Test the paper's claims on finished tables: paired differences over the test images, verdicts.

For each table directory (written by iwae-np table), with the largest k that both objectives were
trained with (50 in the paper):
  (a) IWAE has a lower test NLL than the VAE;
  (b) IWAE gains more than the VAE from k = 1 to that k;
  (c) IWAE has more active units than the VAE.
Each difference is the mean over the test images of a per-image difference of L_k, with its standard
error; "reproduced" needs more than 2 standard errors in the paper's direction. With several
directories (the same table trained with different --seed), the spread of each claim over them is
printed too: that spread, not the standard error within one run, says how repeatable a verdict is.

Examples:
  iwae-np claims runs/table-fashion
  iwae-np claims runs/main runs/main-seed1 runs/main-seed2
"""
import sys
from pathlib import Path

from ..experiments.claims import (check_comparable_tables, check_results, claims_report, format_seed_spread,
                                  seed_spread, table_claims, unfinished_cells)
from ..experiments.paper import paper_key
from ..files import read_json
from .arguments import path_argument

HELP = "test the paper's claims on finished tables (paired over test images; spread over seeds)"


def add_arguments(p):
    p.add_argument("dirs", nargs="+", metavar="DIR", type=path_argument("table directory"), help="table directories (each with results.json)")


def run(args):
    tables = []
    for d in args.dirs:
        path = Path(d)
        if not path.is_dir():
            raise ValueError(f"{d} is not a directory (expected a table directory written by iwae-np table)")
        results = read_json(path / "results.json", ValueError,
                            f"{path / 'results.json'} does not exist: is {d} a finished iwae-np table directory?")
        check_results(results, path / "results.json")
        data = next((r.get("data") for r in results if isinstance(r.get("data"), str)), None)
        tables.append((d, results, data))
    if len(tables) > 1:  # before anything is printed: a spread over different questions is refused
        check_comparable_tables([(d, results) for d, results, _ in tables])
    for d, results, data in tables:
        print(f"## {d}\n")
        print(claims_report(results, data) or _why_no_claims(results))
        print()
    if len(tables) > 1:
        layer_counts = sorted({r.get("layers") for _, results, _ in tables for r in results
                               if r.get("status") == "finished"})
        for layers in layer_counts:
            lists = [table_claims(results, layers, paper_key(data)) for _, results, data in tables]
            print(f"Over the {len(tables)} tables, {layers} stochastic layer(s) (difference in the paper's direction):\n")
            print(format_seed_spread(seed_spread(lists), [d for d, _, _ in tables]))
            print()
    sys.stdout.flush()
    return 0


def _why_no_claims(results):
    unfinished = unfinished_cells(results)
    if unfinished:
        return (f"no claim can be tested yet: cells {', '.join(unfinished)} are unfinished; run the same "
                "iwae-np table command again to finish them")
    return "no claim can be tested: the table needs VAE and IWAE at some k > 1"
