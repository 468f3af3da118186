"""The training loop: the paper's schedule, checkpoints, bit-identical resume, Ctrl-C, non-finite loss."""
import json
import math
import types

import numpy as np
import pytest

from iwae_np.engines import get_engine
from iwae_np.model import Architecture
from iwae_np.experiments.checkpoints import load_checkpoint, load_params, save_checkpoint
from iwae_np.experiments.schedule import paper_schedule
from iwae_np.experiments.training import NonFiniteLossError, TrainConfig, train
from iwae_np.tree import flatten_tree
from conftest import record_minibatches

D = 12
ARCH = Architecture(D, (3,), ((8,),), ((8,),))
ARCH2 = Architecture(D, (4, 2), ((8,), (5,)), ((8,), (5,)))


def toy_dataset(n_train=60, n_test=30, seed=0):
    """Binary data from three prototypes (a fixed-binarization set: no data module needed)."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(size=(3, D)) < 0.5

    def make(n):
        p = np.where(protos[rng.integers(3, size=n)], 0.9, 0.1)
        return (rng.uniform(size=(n, D)) < p).astype(np.float64)

    train, test = make(n_train), make(n_test)
    return types.SimpleNamespace(name="toy", train=train, test=test, train_mean=train.mean(0),
                                 fixed_binarization=True, binarized_test=lambda seed=0: test)


def config(**kw):
    base = dict(architecture=ARCH, objective="iwae", k=5, batch_size=7, schedule=paper_schedule(3),
                dtype="float64", monitor_k=4, monitor_size=10)
    base.update(kw)
    return TrainConfig(**base)


def assert_same_params(a, b):
    fa, fb = flatten_tree(a), flatten_tree(b)
    assert list(fa) == list(fb)
    for name in fa:
        assert fa[name].dtype == fb[name].dtype, name
        assert np.array_equal(fa[name], fb[name]), name


def test_paper_schedule_is_the_papers():
    s = paper_schedule()
    assert [st["passes"] for st in s] == [3 ** i for i in range(8)]
    assert sum(st["passes"] for st in s) == 3280
    assert s[0]["lr"] == 1e-3
    assert math.isclose(s[7]["lr"], 1e-4, rel_tol=1e-15)
    for i, st in enumerate(s):
        assert math.isclose(st["lr"], 1e-3 * 10 ** (-i / 7), rel_tol=1e-15)
    # Table 2: 3^7 more passes at 1e-4
    assert paper_schedule(8, start_stage=7) == [s[7]]
    short = paper_schedule(4, pass_scale=0.1)
    assert [st["passes"] for st in short] == [1, 1, 1, 3]
    with pytest.raises(ValueError, match="pass_scale"):
        paper_schedule(3, pass_scale=0)
    with pytest.raises(ValueError, match="start_stage"):
        paper_schedule(3, start_stage=3)


def test_config_defaults_are_the_papers_and_round_trip():
    c = TrainConfig()
    assert c.batch_size == 20 and c.adam == {"b1": 0.9, "b2": 0.999, "eps": 1e-4}
    assert c.total_passes == 3280 and c.dtype == "float32"
    assert c.architecture == Architecture()  # 784-200-200-50
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="objective"):
        TrainConfig(objective="elbo")
    with pytest.raises(ValueError, match="k must"):
        TrainConfig(k=0)
    with pytest.raises(ValueError, match="passes"):
        TrainConfig(schedule=[{"passes": 0, "lr": 1e-3}])


def test_training_improves_the_bound_and_logs_every_stage(tmp_path):
    result = train(toy_dataset(), config(), tmp_path, progress=False)
    assert result["status"] == "finished"
    assert result["global_step"] == (1 + 3 + 9) * math.ceil(60 / 7)
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in lines] == [0, 1, 2] and lines == result["history"]
    for r in lines:
        assert {"train_objective", "train_bound", "test_bound", "wall_time", "lr", "passes_done"} <= set(r)
    assert lines[-1]["test_bound"] > lines[0]["test_bound"] + 0.1
    assert json.loads((tmp_path / "config.json").read_text()) == config().to_dict()


@pytest.mark.parametrize("how", ["crash", "ctrl-c"])
def test_resume_is_bit_identical(tmp_path, how):
    """Train straight through, and again with an interruption mid-pass then --resume: same bits."""
    ds = toy_dataset()
    straight = train(ds, config(), tmp_path / "straight", progress=False)
    stop_at = 40  # in stage 2, mid-pass (9 steps per pass)

    def interrupt(info):
        if info["global_step"] == stop_at:
            raise RuntimeError("simulated crash") if how == "crash" else KeyboardInterrupt

    run = tmp_path / "interrupted"
    if how == "crash":  # checkpoints only at stage ends: resume repeats the steps since the last one
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(ds, config(), run, progress=False, checkpoint_every=1e9, callback=interrupt)
        assert load_checkpoint(run)["meta"]["position"]["global_step"] == 36
    else:
        out = train(ds, config(), run, progress=False, callback=interrupt)
        assert out["status"] == "interrupted" and out["global_step"] == stop_at
        assert load_checkpoint(run)["meta"]["status"] == "interrupted"
    resumed = train(ds, config(), run, resume=True, progress=False)
    assert resumed["status"] == "finished"
    assert_same_params(resumed["params"], straight["params"])
    assert_same_params(load_checkpoint(run)["params"], straight["params"])
    assert resumed["history"][-1]["test_bound"] == straight["history"][-1]["test_bound"]


def test_resume_is_bit_identical_float32_two_layers_with_step_checkpoints(tmp_path):
    ds = toy_dataset()
    cfg = config(architecture=ARCH2, dtype="float32", schedule=paper_schedule(2), objective="vae", monitor_size=0)
    straight = train(ds, cfg, tmp_path / "a", progress=False)

    def crash(info):
        if info["global_step"] == 13:
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        train(ds, cfg, tmp_path / "b", progress=False, checkpoint_every=0, callback=crash)
    assert load_checkpoint(tmp_path / "b")["meta"]["position"]["global_step"] == 13
    resumed = train(ds, cfg, tmp_path / "b", resume=True, progress=False)
    assert flatten_tree(resumed["params"])["p_x/logits/W"].dtype == np.float32
    assert_same_params(resumed["params"], straight["params"])


def test_resume_refuses_another_configuration_and_fresh_run_refuses_existing(tmp_path):
    ds = toy_dataset()
    train(ds, config(schedule=paper_schedule(1)), tmp_path, progress=False)
    with pytest.raises(ValueError, match="another configuration.*'k'"):
        train(ds, config(schedule=paper_schedule(1), k=3), tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        train(ds, config(schedule=paper_schedule(1)), tmp_path, progress=False)
    with pytest.raises(ValueError, match="other data"):
        train(toy_dataset(seed=1), config(schedule=paper_schedule(1)), tmp_path, resume=True, progress=False)


def _register_objective(monkeypatch, name, fn):
    """Make the training loop find ``fn`` under ``name`` (a test-only objective), whatever the engine."""
    from iwae_np.engines import Engine
    real_get = Engine.objective
    monkeypatch.setattr(Engine, "objective", lambda self, n, k=None: fn if n == name else real_get(self, n, k))


def test_nonfinite_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = get_engine().objective("iwae")

    def explodes(params, x, eps):
        calls["n"] += 1
        bound, grads = real(params, x, eps)
        return (float("nan"), grads) if calls["n"] == 20 else (bound, grads)

    _register_objective(monkeypatch, "explodes", explodes)
    cfg = config(objective="explodes", monitor_size=0)
    with pytest.raises(NonFiniteLossError, match=r"stage 1, pass 2, step 2 \(global step 20\).*nan.*after global step 9"):
        train(toy_dataset(), cfg, tmp_path, progress=False, checkpoint_every=1e9)
    ck = load_checkpoint(tmp_path)
    assert ck["meta"]["position"]["global_step"] == 9
    assert all(np.all(np.isfinite(v)) for v in flatten_tree(ck["params"]).values())


def test_nonfinite_gradient_is_reported_as_such(tmp_path, monkeypatch):
    real = get_engine().objective("vae")

    def bad_gradient(params, x, eps):
        bound, grads = real(params, x, eps)
        grads["p_x"]["logits"]["b"] = grads["p_x"]["logits"]["b"] * np.inf
        return bound, grads

    _register_objective(monkeypatch, "bad", bad_gradient)
    with pytest.raises(NonFiniteLossError, match="global step 1.*p_x/logits/b.*no checkpoint had been written"):
        train(toy_dataset(), config(objective="bad"), tmp_path, progress=False)


def test_init_from_parameters_starts_a_fresh_schedule(tmp_path):
    ds = toy_dataset()
    first = train(ds, config(schedule=paper_schedule(1), objective="vae", k=1), tmp_path / "vae", progress=False)
    cont = train(ds, config(schedule=paper_schedule(2, start_stage=1), init_from=str(tmp_path / "vae")),
                 tmp_path / "iwae", params=load_params(tmp_path / "vae"), progress=False)
    ck = load_checkpoint(tmp_path / "iwae")
    assert ck["opt_state"]["t"] == cont["global_step"] == 3 * math.ceil(60 / 7)
    assert not np.array_equal(cont["params"]["p_x"]["logits"]["W"], first["params"]["p_x"]["logits"]["W"])
    with pytest.raises(ValueError, match="architecture"):
        train(ds, config(architecture=ARCH2), tmp_path / "bad", params=first["params"], progress=False)


def test_checkpoint_round_trip_and_damaged_files(tmp_path):
    ds = toy_dataset()
    out = train(ds, config(schedule=paper_schedule(1)), tmp_path / "run", progress=False)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert_same_params(ck["params"], out["params"])
    path = tmp_path / "copy.npz"
    save_checkpoint(path, ck["params"], ck["opt_state"], ck["rng"], {"note": "x"}, perm=np.arange(5))
    again = load_checkpoint(path)
    assert again["rng"].bit_generator.state == ck["rng"].bit_generator.state
    assert np.array_equal(again["perm"], np.arange(5)) and again["meta"]["note"] == "x"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    data = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.npz.*damaged"):
        load_checkpoint(tmp_path / "truncated.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_checkpoint(tmp_path / "garbage.npz")
    with pytest.raises(ValueError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing")


def test_each_pass_binarizes_afresh_in_a_fresh_order_without_replacement(tmp_path, monkeypatch):
    """What the loop feeds the model, pass after pass (paper section 5: dynamic binarization, minibatches
    drawn without replacement in a fresh order each pass).

    Catches: binarizing the training set once (every image the same bits on every pass), one data
    order for every pass, and minibatches drawn with replacement. Image j carries its index in 3
    pixels of gray 0 or 1 (which binarize to themselves); its other 9 pixels are gray 0.5.
    """
    n, D_id = 7, 3
    ids = ((np.arange(n)[:, None] >> np.arange(D_id)) & 1).astype(np.float64)  # (7, 3) the index in binary
    gray = np.concatenate([ids, np.full((n, D - D_id), 0.5)], axis=1)  # (7, 12)
    ds = types.SimpleNamespace(name="gray", train=gray, test=gray, train_mean=gray.mean(0),
                               fixed_binarization=False, binarized_test=lambda seed=0: np.round(gray))
    seen = record_minibatches(monkeypatch)
    passes = 40
    train(ds, config(batch_size=n, schedule=[{"passes": passes, "lr": 1e-3}], monitor_size=0), tmp_path, progress=False)
    assert len(seen) == passes  # one minibatch of all 7 images a pass
    order = np.array([x[:, :D_id] @ (1 << np.arange(D_id)) for x in seen])  # (passes, 7) image index by position
    assert all(sorted(o) == list(range(n)) for o in order)  # every image once a pass: no replacement
    assert len({tuple(o) for o in order}) > passes // 2  # fresh orders (7! = 5040 possible)
    bits = np.stack([x[np.argsort(o), D_id:] for x, o in zip(seen, order)])  # (passes, 7, 9) by image
    assert set(np.unique(bits)) == {0.0, 1.0}
    for j in range(n):  # the same image binarized anew: at most a few repeats among 2^9 patterns
        assert len({tuple(b) for b in bits[:, j]}) >= passes - 5
    se = 0.5 / np.sqrt(bits.size)
    assert abs(bits.mean() - 0.5) < 5 * se  # Bernoulli(0.5) pixels


def test_bad_settings_of_the_library_are_named(tmp_path):
    # catches: numpy's "expected non-negative integer" for seed = -1, and checkpoint_every = nan or -1
    # accepted (nan never checkpoints, -1 after every step)
    for field, value in (("seed", -1), ("seed", 1.5), ("monitor_k", 0), ("k", float("inf"))):
        with pytest.raises(ValueError, match=f"{field} must be an integer >= [01], got {value!r}"):
            config(**{field: value})
    for every in (float("nan"), -1.0):
        with pytest.raises(ValueError, match=f"checkpoint_every must be a number of seconds >= 0, got {every!r}"):
            train(toy_dataset(), config(), tmp_path / "run", progress=False, checkpoint_every=every)
    with pytest.raises(ValueError, match="not a training configuration: unknown fields \\['learning_rate'\\]"):
        TrainConfig.from_dict({**config().to_dict(), "learning_rate": 0.1})
    assert not (tmp_path / "run").exists()
