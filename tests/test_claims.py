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


def cell(objective, k, test_L, au=10, layers=1, n_test=None, shared_with=None):
    r = {"status": "finished", "objective": objective, "k": k, "layers": layers, "data": "fashion-mnist",
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


def table(iwae_shift, iwae_au=30, vae_au=10, k1_shift=-3.0, shared=True):
    vae50 = cell("vae", 50, BASE, au=vae_au)
    iwae50 = cell("iwae", 50, BASE + iwae_shift, au=iwae_au)
    vae1 = cell("vae", 1, BASE + k1_shift, au=5)
    iwae1 = dict(vae1, objective="iwae", shared_with="vae-k1-L1") if shared else cell("iwae", 1, BASE - 2.0, au=5)
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
        (d / "results.json").write_text(json.dumps(table(np.array([1.0, 2.0, 3.0, 4.0]) + s)))
    assert main(["claims", str(tmp_path / "seed0"), str(tmp_path / "seed1")]) == 0
    out = capsys.readouterr().out
    assert out.count("**reproduced**") == 6 and "Over the 2 tables" in out and "| 3.00 | 0.71 |" in out
    assert main(["claims", str(tmp_path / "missing")]) == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{not json")
    assert main(["claims", str(tmp_path / "bad")]) == 2
