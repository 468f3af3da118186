"""The paper's training protocol as the loop runs it (section 5): what each step sees.

Catches: binarizing the training set once instead of afresh each time an image is used; binarizing
with the wrong probability (``u > x`` or a threshold at 0.5); minibatches drawn with replacement
instead of one pass over a fresh permutation; monitoring that disturbs the training generator.
"""
import math
import types

import numpy as np

from iwae_np.experiments.evaluation import evaluate_run, iwae_log_likelihood
from iwae_np.experiments.checkpoints import load_checkpoint
from iwae_np.experiments.schedule import paper_schedule
from iwae_np.experiments.training import TrainConfig, train
from iwae_np.model import Architecture
from iwae_np.tree import flatten_tree
from conftest import record_minibatches

D = 12
ARCH = Architecture(D, (2,), ((6,),), ((6,),))
ID_PIXELS = 2  # pixels 0 and 1 are exactly 0 or 1 (binarization keeps them): they spell the image's index
LEVELS = np.linspace(0.1, 0.9, D - ID_PIXELS)  # the other pixels' gray levels


def gray_image(i):
    return np.concatenate([[(i >> 0) & 1, (i >> 1) & 1], np.roll(LEVELS, i)]).astype(np.float64)


def gray_dataset(n_train=4, n_test=6):
    """Gray images to binarize dynamically; image i carries its index in two pixels that are exactly 0 or 1."""
    train = np.stack([gray_image(i) for i in range(n_train)])
    test = np.stack([gray_image(i) for i in range(n_test)])
    binary_test = (np.random.default_rng(0).uniform(size=test.shape) < test).astype(np.float64)
    return types.SimpleNamespace(name="gray", train=train, test=test, train_mean=train.mean(0),
                                 fixed_binarization=False, binarized_test=lambda seed=0: binary_test)


def config(passes, **kw):
    base = dict(architecture=ARCH, objective="vae", k=1, batch_size=4, dtype="float64",
                schedule=[{"stage": 0, "passes": passes, "lr": 1e-3}], monitor_size=0)
    base.update(kw)
    return TrainConfig(**base)


def test_every_use_of_an_image_is_binarized_afresh(tmp_path, monkeypatch):
    seen = record_minibatches(monkeypatch)
    ds = gray_dataset()
    train(ds, config(passes=300), tmp_path, progress=False)
    assert len(seen) == 300  # one minibatch (all 4 images) per pass
    draws = {i: [] for i in range(4)}
    for x in seen:
        assert set(np.unique(x)) <= {0.0, 1.0}
        for row in x:
            draws[int(row[0] + 2 * row[1])].append(row[ID_PIXELS:])
    for image, rows in draws.items():
        rows = np.array(rows)
        assert len(rows) == 300  # each image once per pass
        # binarized once, all 300 uses of an image would be one vector; afresh, they vary
        distinct = len({r.tobytes() for r in rows})
        assert distinct > 50, f"image {image}: {distinct} distinct binarizations in {len(rows)} uses"
        # each pixel is 1 with probability its gray level: within 4.5 standard errors per pixel
        p = np.roll(LEVELS, image)
        z = (rows.mean(axis=0) - p) / np.sqrt(p * (1 - p) / len(rows))
        assert np.max(np.abs(z)) < 4.5, (image, np.round(z, 1))


def test_each_pass_uses_every_image_once_in_a_fresh_order(tmp_path, monkeypatch):
    seen = record_minibatches(monkeypatch)
    n, batch = 12, 3
    ds = types.SimpleNamespace(name="ids", train=None, test=None, fixed_binarization=True)
    # fixed-binarization images that encode their own index in binary: every row tells which image it is
    ids = np.arange(n)
    images = ((ids[:, None] >> np.arange(D)) & 1).astype(np.float64)
    ds.train, ds.test, ds.train_mean = images, images, images.mean(0)
    ds.binarized_test = lambda seed=0: images
    train(ds, config(passes=4, batch_size=batch), tmp_path, progress=False)
    order = [int(row @ (1 << np.arange(D))) for x in seen for row in x]
    passes = [order[i * n:(i + 1) * n] for i in range(4)]
    for p in passes:
        assert sorted(p) == list(range(n))  # every image once per pass: no replacement, none skipped
    assert len({tuple(p) for p in passes}) == 4  # a fresh permutation each pass


def test_monitoring_within_stages_logs_curves_without_changing_training(tmp_path):
    ds = gray_dataset(n_train=8)
    plain = train(ds, config(passes=6, monitor_size=4, monitor_k=3), tmp_path / "plain", progress=False)
    watched = train(ds, config(passes=6, monitor_size=4, monitor_k=3, monitor_every=2), tmp_path / "watched",
                    progress=False)
    a, b = flatten_tree(plain["params"]), flatten_tree(watched["params"])
    assert all(np.array_equal(a[n], b[n]) for n in a)  # the monitor's noise is not the training generator's
    rows = watched["history"]
    assert [r["passes_done"] for r in rows] == [2, 4, 6]
    assert [r.get("within_stage", False) for r in rows] == [True, True, False]
    assert all(math.isfinite(r["test_bound"]) and math.isfinite(r["train_bound"]) for r in rows)
    assert [r["passes_done"] for r in plain["history"]] == [6]
    # the curve is in metrics.jsonl and in the checkpoint's history
    assert load_checkpoint(tmp_path / "watched")["meta"]["history"] == rows


def test_evaluation_keeps_every_test_images_bound_for_paired_comparisons(tmp_path):
    ds = gray_dataset()
    train(ds, config(passes=2), tmp_path, progress=False)
    result = evaluate_run(tmp_path, ds, k=7, train_subset=0, seed=3)
    params = load_checkpoint(tmp_path)["params"]
    expected = iwae_log_likelihood(params, ds.binarized_test(seed=0), np.random.default_rng((3, 0)), k=7)
    assert np.allclose(result["test_L"], expected, rtol=0, atol=1e-6)  # rounded to 1e-6 nats, not recomputed
    assert math.isclose(result["test_nll"], -np.mean(expected), rel_tol=1e-12)
    assert len(result["test_L"]) == ds.test.shape[0]


def test_a_shortened_schedule_keeps_the_papers_shape():
    # the main job's schedule: the paper's first three stages at 0.6 of their passes
    s = paper_schedule(3, pass_scale=0.6)
    assert [st["passes"] for st in s] == [1, 2, 5]
    assert [st["lr"] for st in s] == [1e-3 * 10 ** (-i / 7) for i in range(3)]
