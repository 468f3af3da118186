"""The Table 1 grid on a Dask cluster (``iwae_np.experiments.cluster``), on a LocalCluster on loopback.

- A worker killed mid-cell: the cell resumes on another worker from its last checkpoint and ends with
  parameters bit-identical to an uninterrupted run. The moment is certain: the cell pauses in a
  callback right after its first checkpoint and writes a flag with its process id; the test waits for
  the flag, kills that process, waits until it is gone, and only then lets later attempts go on.
  Catches: a retry that starts the cell afresh (or from the wrong place), a checkpoint directory the
  retry does not see, nondeterminism across processes.
- The L_k evaluation split into batches over the workers equals the single-process evaluation bit for
  bit (same BLAS threads). Catches: noise drawn from one stream across batches (a split changes it),
  batches combined out of order.
"""
import functools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from iwae_np.data import data_spec, load_data  # noqa: E402
from iwae_np.experiments import load_checkpoint, paper_schedule  # noqa: E402
from iwae_np.experiments.cluster import dask_map, run_table_on_cluster  # noqa: E402
from iwae_np.experiments.evaluation import iwae_log_likelihood  # noqa: E402
from iwae_np.model import Architecture, init_params  # noqa: E402
from iwae_np.tree import flatten_tree  # noqa: E402

#: Guards against a hang turning into a stuck test run; never reached when the code works.
HANG_GUARD_S = 600


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, worker_dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        yield client


def pause_after_first_checkpoint(info, flags):
    """Runs on the worker after every step: after the first checkpoint, say so and wait to be killed."""
    flags = Path(flags)
    first = flags / f"first-step.{os.getpid()}"
    if not first.exists():  # where this process's attempt started: 1 afresh, after the checkpoint on resume
        first.write_text(str(info["global_step"]))
    if info["checkpoint_step"] is None or (flags / "killed").exists():
        return
    tmp = flags / f"ready.{os.getpid()}.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.rename(flags / "ready")  # atomic: the test never reads half a pid
    while not (flags / "killed").exists():  # killed here; a retry finds the flag and goes on
        time.sleep(0.05)


def wait_for(predicate, what):
    deadline = time.monotonic() + HANG_GUARD_S
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie runs no code
    except FileNotFoundError:
        return True


def table_setup(tmp_path):
    base = {"batch_size": 20, "schedule": paper_schedule(2, 1.0), "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-4},
            "dtype": "float32", "seed": 3, "monitor_k": 5, "monitor_size": 20,
            "data": data_spec({"name": "mnist5k", "train_subset": 60, "test_subset": 30}),
            "architectures": {1: Architecture(784, (4,), ((12,),), ((12,),))}}
    cell = {"objective": "iwae", "k": 3, "layers": 1, "name": "iwae-k3-L1"}
    eval_opts = {"k": 20, "train_subset": 20, "seed": 0, "batch_size": 8}
    return base, cell, eval_opts


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_a_cell_whose_worker_is_killed_resumes_elsewhere_bit_identical(cluster, tmp_path):
    base, cell, eval_opts = table_setup(tmp_path)
    [straight] = run_table_on_cluster([cell], base, tmp_path / "straight", eval_opts, cluster, log=lambda s: None,
                                      checkpoint_every=0)
    assert straight["status"] == "finished"

    flags = tmp_path / "flags"
    flags.mkdir()
    pids_before = set(cluster.run(os.getpid).values())
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=run_table_on_cluster(
        [cell], base, tmp_path / "killed", eval_opts, cluster, log=lambda s: None, checkpoint_every=0,
        callback=functools.partial(pause_after_first_checkpoint, flags=str(flags)))))
    runner.start()
    wait_for(lambda: (flags / "ready").exists(), "the cell's first checkpoint")
    pid = int((flags / "ready").read_text())
    assert pid in pids_before  # a worker process of the cluster, paused mid-cell
    checkpoint = load_checkpoint(tmp_path / "killed" / cell["name"])
    saved_step = checkpoint["meta"]["position"]["global_step"]
    assert checkpoint["meta"]["status"] == "running" and saved_step >= 1
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), "the killed worker to be gone")
    (flags / "killed").write_text("")
    runner.join(HANG_GUARD_S)
    assert not runner.is_alive()
    [resumed] = outcome["result"]
    assert resumed["status"] == "finished"
    starts = {int(f.name.split(".")[1]): int(f.read_text()) for f in flags.glob("first-step.*")}
    assert starts.pop(pid) == 1 and list(starts.values()) == [saved_step + 1]  # the retry resumed, elsewhere

    a = flatten_tree(load_checkpoint(tmp_path / "straight" / cell["name"])["params"])
    b = flatten_tree(load_checkpoint(tmp_path / "killed" / cell["name"])["params"])
    assert list(a) == list(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    assert resumed["test_nll"] == straight["test_nll"] and resumed["train_nll"] == straight["train_nll"]


def test_split_evaluation_equals_the_single_process_one(cluster):
    from threadpoolctl import threadpool_limits
    data = load_data("mnist5k", train_subset=20, test_subset=30)
    x = data.binarized_test(seed=0)
    params = init_params(Architecture(784, (4,), ((12,),), ((12,),)), np.random.default_rng(1), np.float64)
    with threadpool_limits(1):  # as the workers (Dask starts them with one BLAS thread)
        local = iwae_log_likelihood(params, x, np.random.default_rng(7), k=50, batch_size=8, chunk_size=16)
    split = iwae_log_likelihood(params, x, np.random.default_rng(7), k=50, batch_size=8, chunk_size=16,
                                map_fn=functools.partial(dask_map, client=cluster))
    assert split.shape == (30,) and np.array_equal(split, local)
    other_seed = iwae_log_likelihood(params, x, np.random.default_rng(8), k=50, batch_size=8, chunk_size=16)
    assert not np.any(other_seed == local)  # the values depend on the noise: the comparison above can fail


def test_table_with_a_bad_scheduler_address_is_a_one_line_error(tmp_path, capsys):
    from iwae_np.cli import main
    rc = main(["table", "--data", "mnist5k", "--train-subset", "60", "--test-subset", "30", "--layers", "1",
               "--k", "1", "--stages", "1", "--scheduler", "notanaddress::", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("iwae-np table: error: cannot reach the Dask scheduler at 'notanaddress::'")


@pytest.fixture
def silent_port():
    """A TCP port on loopback that accepts connections and never speaks (not a Dask scheduler)."""
    import socket
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize("address", ["tls://127.0.0.1:PORT", "inproc://nothing", "tcp://127.0.0.1:1", "tls://127.0.0.1:1",
                                     "notanaddress::", "tcp://:8786", "127.0.0.1:1"])
def test_every_unusable_scheduler_address_is_one_line_before_anything_runs(tmp_path, capsys, silent_port, address):
    # catches (issue 20, item 13): a TypeError traceback for tls:// without TLS settings, "not enough values to
    # unpack" for inproc://nothing, a traceback or a generic message for the others
    from iwae_np.cli import main
    address = address.replace("PORT", str(silent_port))
    rc = main(["table", "--data", "mnist5k", "--train-subset", "60", "--test-subset", "30", "--layers", "1",
               "--k", "1", "--stages", "1", "--scheduler", address, "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"iwae-np table: error: cannot reach the Dask scheduler at {address!r}: "), err
    assert not (tmp_path / "t").exists()


def test_a_refused_port_is_reported_without_waiting_for_the_client(tmp_path, capsys, monkeypatch):
    # catches: a refused port reported after the client's 30 s timeout. Certain, not timed: the client is never
    # made (the connection is tried first, and a refusal is immediate)
    class NoClient(distributed.Client):
        def __init__(self, *args, **kwargs):
            pytest.fail("the client waited for a refused port")

    monkeypatch.setattr(distributed, "Client", NoClient)
    from iwae_np.experiments.cluster import connect
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:1': Connection refused"):
        connect("tcp://127.0.0.1:1")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kills the scheduler with SIGKILL (POSIX)")
def test_a_scheduler_that_dies_mid_table_fails_its_cells_in_one_line_each(tmp_path):
    # catches (issue 20, item 13): a 20-line CancelledError traceback at the end of stderr when the scheduler
    # dies. The moment is certain: the scheduler is killed once the cell's first checkpoint exists.
    import socket
    import subprocess
    import sys

    from conftest import ROOT, child_env
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker", "table")}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], stdout=logs["scheduler"],
                                 stderr=subprocess.STDOUT, env=child_env())
    processes = [scheduler]
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        while True:  # until the scheduler accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert scheduler.poll() is None and time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
                time.sleep(0.05)
        processes.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                           "1", "--no-dashboard"], stdout=logs["worker"], stderr=subprocess.STDOUT,
                                          env=child_env()))
        out = tmp_path / "t"
        table = subprocess.Popen([sys.executable, "-m", "iwae_np.cli", "table", "--data", "mnist5k", "--train-subset",
                                  "40", "--test-subset", "10", "--monitor-size", "0", "--latent", "2", "--hidden", "4",
                                  "--layers", "1", "--k", "2", "--objectives", "iwae", "--stages", "9", "--eval-k", "3",
                                  "--eval-train-subset", "0", "--scheduler", address, "--out", str(out),
                                  "--no-figures"], stdout=subprocess.DEVNULL, stderr=logs["table"], env=child_env(),
                                 cwd=ROOT)
        processes.append(table)
        while not (out / "iwae-k2-L1" / "checkpoint.npz").exists():
            assert table.poll() is None and time.monotonic() < deadline, (tmp_path / "table.log").read_text()
            time.sleep(0.05)
        scheduler.kill()
        assert table.wait(timeout=HANG_GUARD_S) == 1
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()
    err = (tmp_path / "table.log").read_text()
    assert "Traceback" not in err and "CancelledError\n" not in err, err
    assert err.splitlines()[-1].startswith("iwae-np table: cell iwae-k2-L1 failed: "), err
