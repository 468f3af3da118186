"""The claims summary on constructed tables whose answers are known by hand.

Catches: an unpaired standard error (sqrt(se_a^2 + se_b^2) instead of the sd of the differences), ddof = 0,
the difference taken the wrong way round (a verdict of "reproduced" for IWAE behind), comparing cells
evaluated on different test images, a threshold other than 2 standard errors, (b) computed from the
wrong cells, active units compared the wrong way.
"""
import json
import math

import numpy as np
import pytest

from iwae_np.cli import main
from iwae_np.experiments.claims import (PairedDifference, paired_difference, seed_spread, table_claims,
                                        verdict)


def cell(objective, k, test_L, au=10, layers=1, n_test=None, shared_with=None, seed=0):
    r = {"status": "finished", "objective": objective, "k": k, "layers": layers, "data": "fashion-mnist", "seed": seed,
         "n_test": n_test or len(test_L), "eval_k": 5000, "eval_seed": 0, "test_L": list(map(float, test_L)),
         "active_units_total": au, "active_units": [au], "active_unit_values": [[0.0] * 50]}
    if shared_with:
        r["shared_with"] = shared_with
    return r


BASE = np.array([-240.0, -250.0, -230.0, -260.0])  # L of four test images under the VAE k = 50


def test_paired_difference_by_hand():
    d = paired_difference(BASE + np.array([1.0, 2.0, 3.0, 4.0]), BASE)
    # d = 1, 2, 3, 4: mean 2.5, sd (ddof 1) = sqrt(5/3), se = sd / 2
    assert d.mean == 2.5 and d.n == 4
    assert math.isclose(d.se, math.sqrt(5 / 3) / 2, rel_tol=1e-15)
    # unpaired, the image-to-image spread of BASE (sd 12.9) would swamp it; paired, it cancels
    assert d.se < 1
    with pytest.raises(ValueError, match="same images"):
        paired_difference(BASE, BASE[:3])


def test_verdicts_at_two_standard_errors():
    assert verdict(PairedDifference(2.01, 1.0, 10)) == "reproduced"
    assert verdict(PairedDifference(1.99, 1.0, 10)) == "inconclusive"
    assert verdict(PairedDifference(-1.99, 1.0, 10)) == "inconclusive"
    assert verdict(PairedDifference(-2.01, 1.0, 10)) == "contradicted"
    assert verdict(3) == "reproduced" and verdict(0) == "inconclusive" and verdict(-1) == "contradicted"


def table(iwae_shift, iwae_au=30, vae_au=10, k1_shift=-3.0, shared=True, seed=0, k=50):
    vae50 = cell("vae", k, BASE, au=vae_au, seed=seed)
    iwae50 = cell("iwae", k, BASE + iwae_shift, au=iwae_au, seed=seed)
    vae1 = cell("vae", 1, BASE + k1_shift, au=5, seed=seed)
    iwae1 = (dict(vae1, objective="iwae", shared_with="vae-k1-L1") if shared
             else cell("iwae", 1, BASE - 2.0, au=5, seed=seed))
    return [vae50, iwae50, vae1, iwae1]


def test_claims_of_a_table_where_iwae_is_ahead():
    claims = {c.key: c for c in table_claims(table(np.array([1.0, 2.0, 3.0, 4.0])))}
    a, b, c = claims["a"], claims["b"], claims["c"]
    assert a.difference.mean == 2.5 and a.verdict == "reproduced"  # z = 2.5 / 0.645 = 3.9
    # shared k = 1: the IWAE gain minus the VAE gain is the same per-image difference as (a)
    assert math.isclose(b.difference.mean, 2.5, rel_tol=1e-12)
    assert math.isclose(b.difference.se, a.difference.se, rel_tol=1e-12) and b.verdict == "reproduced"
    assert "gain IWAE 5.50" in b.measured and "VAE 3.00" in b.measured
    assert c.difference == 20 and c.verdict == "reproduced"
    assert "84.78" in a.paper and "86.35" in a.paper  # the paper's MNIST one-layer numbers beside ours


def test_claims_when_iwae_is_behind_or_level():
    behind = {c.key: c for c in table_claims(table(np.array([-1.0, -2.0, -3.0, -4.0]), iwae_au=8))}
    assert behind["a"].difference.mean == -2.5 and behind["a"].verdict == "contradicted"
    assert behind["c"].verdict == "contradicted"
    level = {c.key: c for c in table_claims(table(np.array([1.0, -1.0, 2.0, -1.5])))}
    assert level["a"].verdict == "inconclusive"


def test_claim_b_with_separately_trained_k1_cells():
    # IWAE k = 1 trained apart: its images sit 2 nats below BASE, the VAE k = 1 3 nats below
    claims = {c.key: c for c in table_claims(table(np.array([1.0, 2.0, 3.0, 4.0]), shared=False))}
    b = claims["b"]
    # per image: (iwae50 - iwae1) - (vae50 - vae1) = (d + 2) - 3 = d - 1 -> mean 1.5, same se as (a)
    assert math.isclose(b.difference.mean, 1.5, rel_tol=1e-12)
    assert math.isclose(b.difference.se, claims["a"].difference.se, rel_tol=1e-12)
    assert "one cell for both" not in b.measured


def test_cells_evaluated_on_different_images_are_refused():
    cells = table(np.array([1.0, 2.0, 3.0, 4.0]))
    cells[1] = dict(cells[1], eval_seed=1)
    with pytest.raises(ValueError, match="different test images or with different settings"):
        table_claims(cells)
    old = table(np.array([1.0, 2.0, 3.0, 4.0]))
    del old[0]["test_L"]
    with pytest.raises(ValueError, match="no per-image test bounds"):
        table_claims(old)


def test_spread_over_seeds():
    runs = [table_claims(table(np.full(4, s) + np.array([0.1, -0.1, 0.2, -0.2]))) for s in (1.0, 2.0, 3.0)]
    spread = seed_spread(runs)
    assert np.allclose(spread["a"]["values"], [1.0, 2.0, 3.0])
    assert math.isclose(spread["a"]["mean"], 2.0) and math.isclose(spread["a"]["sd"], 1.0)


def test_claims_command_reads_table_directories(tmp_path, capsys):
    for s in (0, 1):
        d = tmp_path / f"seed{s}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps(table(np.array([1.0, 2.0, 3.0, 4.0]) + s, seed=s)))
    assert main(["claims", str(tmp_path / "seed0"), str(tmp_path / "seed1")]) == 0
    out = capsys.readouterr().out
    assert out.count("**reproduced**") == 6 and "Over the 2 tables" in out and "| 3.00 | 0.71 |" in out
    assert main(["claims", str(tmp_path / "missing")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    assert main(["claims", str(tmp_path / "bad")]) == 2


# ---------------------------------------------------------------------------------------------
# what cannot be compared is refused, in one line (issue 20, items 2, 11 and 15)


def write_table(directory, results):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(results))
    return str(directory)


def claims_error(capsys, *dirs):
    assert main(["claims", *map(str, dirs)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("iwae-np claims: error: ")
    return captured.err


SHIFT = np.array([1.0, 2.0, 3.0, 4.0])


def test_claims_refuses_tables_of_different_questions(tmp_path, capsys):
    # catches: a k = 1, 3 table and a k = 1, 5 table (on different test subsets, trained differently) pooled into
    # one spread row labelled with the first k, exit 0
    a = write_table(tmp_path / "a", table(SHIFT, seed=0, k=3))
    b = write_table(tmp_path / "b", table(SHIFT, seed=1, k=5))
    assert "k of the claims, 1 layer(s) (3, k = 1 in" in claims_error(capsys, a, b)
    other_images = [dict(r, n_test=99) for r in table(SHIFT, seed=1)]
    assert "n_test" in claims_error(capsys, write_table(tmp_path / "c", table(SHIFT, seed=0)),
                                    write_table(tmp_path / "d", other_images))
    for key, value in (("eval_k", 50), ("eval_seed", 3), ("data", "mnist"), ("total_passes", 7),
                       ("dtype", "float64"), ("schedule", [{"passes": 1}]), ("architecture", {"latent_dims": [5]})):
        changed = [dict(r, **{key: value}) for r in table(SHIFT, seed=1)]
        err = claims_error(capsys, tmp_path / "c", write_table(tmp_path / f"e-{key}", changed))
        assert f"they differ in {key} (" in err, err


def test_claims_refuses_a_directory_given_twice_or_the_same_run_copied(tmp_path, capsys):
    # catches: "sd over runs 0.00" from one run counted twice
    a = write_table(tmp_path / "a", table(SHIFT, seed=0))
    assert f"{a}/ is given twice (also as {a})" in claims_error(capsys, a, a + "/")
    copy = write_table(tmp_path / "copy", table(SHIFT, seed=0))
    assert "were both trained with --seed 0: the same run twice" in claims_error(capsys, a, copy)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_per_image_bound_is_an_error_not_a_verdict(tmp_path, capsys, value):
    # catches: test_L of NaN giving "inconclusive", exit 0
    results = table(SHIFT)
    text = json.dumps(results).replace("-230.0", value, 1)
    (tmp_path / "results.json").write_text(text)
    err = claims_error(capsys, tmp_path)
    assert "cell number 1: test_L of 1 image(s) is not finite (image 2" in err, err


MALFORMED = {
    "a list of lists": [[1, 2]],
    "null": None,
    "an object": {"cells": []},
    "a string": "results",
    "a cell without objective": [{k: v for k, v in cell("vae", 5, BASE).items() if k != "objective"}],
    "a cell without k": [{k: v for k, v in cell("vae", 5, BASE).items() if k != "k"}],
    "a string k": [dict(cell("vae", 5, BASE), k="5")],
    "string bounds": [dict(cell("vae", 5, BASE), test_L=["-1", "-2"])],
    "a cell without status": [{"objective": "vae"}],
    "string active units": [dict(cell("vae", 5, BASE), active_units_total="ten")],
    "null layers": [dict(cell("vae", 5, BASE), layers=None)],
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_results_file_is_one_line(tmp_path, capsys, name):
    # catches: 7 tracebacks (TypeError, KeyError, AttributeError) on results.json files that are not a table's
    (tmp_path / "results.json").write_text(json.dumps(MALFORMED[name]))
    err = claims_error(capsys, tmp_path)
    assert str(tmp_path / "results.json") in err, err


def test_claims_of_an_unfinished_table_names_its_unfinished_cells(tmp_path, capsys):
    # catches: "the table needs VAE and IWAE at some k > 1" for a table whose cells were interrupted
    results = [{"status": "interrupted", "name": "iwae-k50-L1"}, {"status": "not run", "name": "vae-k50-L1"},
               cell("vae", 1, BASE)]
    write_table(tmp_path, results)
    assert main(["claims", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cells iwae-k50-L1 (interrupted), vae-k50-L1 (not run) are unfinished" in out, out
