"""Run the ``iwae-np`` command line in this process with a hook at an exact point of training.

Tests that interrupt, kill or starve a run in a child process use it so that the moment is certain,
not a race against the clock:

    python cli_driver.py HOOK STEP FLAG iwae-np-arguments...

- ``wait-for-signal``: after global step STEP, write FLAG and wait (indefinitely) for a signal; the
  parent sends SIGINT once FLAG exists, so Ctrl-C lands in the middle of the run, always;
- ``limit-file-size``: after global step STEP, write FLAG and set RLIMIT_FSIZE to half the size of the
  checkpoint just written, so that the next checkpoint write fails with EFBIG (a real write failure);
- ``kill-before-metrics``: when ``metrics.jsonl`` is about to be written with STEP records, write FLAG
  and SIGKILL this process: the checkpoint is saved, the metrics file lacks its last record.
"""
import os
import signal
import sys
import time
from pathlib import Path

from iwae_np.cli import main
from iwae_np.experiments import training


def install(hook, step, flag):
    real_train, real_write_metrics = training.train, training.write_metrics

    def callback(info):
        if info["global_step"] != step:
            return
        if hook == "wait-for-signal":
            flag.write_text(str(step))
            while True:  # interrupted by the parent's SIGINT: KeyboardInterrupt is raised here
                time.sleep(0.05)
        if hook == "limit-file-size":
            import resource
            size = (Path(info["run_dir"]) / "checkpoint.npz").stat().st_size
            resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))
            flag.write_text(str(size // 2))

    def train(dataset, config, run_dir, **kwargs):
        def with_run_dir(info):
            callback(dict(info, run_dir=run_dir))
        return real_train(dataset, config, run_dir, **dict(kwargs, callback=with_run_dir))

    def write_metrics(run_dir, history):
        if hook == "kill-before-metrics" and len(history) == step:
            flag.write_text(str(step))
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write_metrics(run_dir, history)

    training.train, training.write_metrics = train, write_metrics


if __name__ == "__main__":
    # Ctrl-C raises KeyboardInterrupt even where this process inherited SIGINT ignored (started from the
    # background of a shell without job control, as a test runner may be): the parent's SIGINT stands for Ctrl-C
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
    sys.exit(main(sys.argv[4:]))
