"""What the running cells of a table are doing, a block of lines every half minute (a terminal only).

The cells report through :meth:`CellProgress.callback` (in this process) or a queue (from worker
processes; :func:`cell_reporter` throttles what goes into it); one thread of the table process reads
the reports and prints every running cell's stage, pass, step, rate and time left as one write, so
lines of cells running in parallel never mix. Whether to show it at all is the caller's decision
(``iwae-np table`` shows it when stderr is a terminal and ``--no-progress`` is not given).
"""
import math
import queue
import threading
import time

__all__ = ["PROGRESS_SECONDS", "CellProgress", "cell_reporter", "format_duration"]

#: Seconds between two blocks of progress lines.
PROGRESS_SECONDS = 30.0
#: Seconds between two reports a worker sends (its first report goes at once).
REPORT_SECONDS = 2.0


def format_duration(seconds):
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def cell_reporter(name, put, clock=time.monotonic, every=REPORT_SECONDS):
    """A training callback (see :func:`~iwae_np.experiments.training.train`) that calls ``put(report)`` with
    ``{"name", "time", "global_step", "stage", "n_stages", "pass", "passes", "step", "steps_per_pass",
    "total_steps"}`` on the first step and then at most every ``every`` seconds."""
    last = [None]

    def callback(info):
        now = clock()
        if last[0] is not None and now - last[0] < every and info.get("stage_record") is None:
            return
        last[0] = now
        pos, schedule, per_pass = info["position"], info["schedule"], info["steps_per_pass"]
        stage = min(pos["stage"], len(schedule) - 1)
        put({"name": name, "time": now, "global_step": pos["global_step"], "stage": stage,
             "n_stages": len(schedule), "pass": pos["pass"], "passes": schedule[stage]["passes"], "step": pos["step"],
             "steps_per_pass": per_pass, "total_steps": sum(s["passes"] for s in schedule) * per_pass})
    return callback


class CellProgress:
    """The latest report of every running cell, printed as one block every ``interval`` seconds by a thread.

    ``write(text)`` prints a block (one call per block). ``reports``: a queue the cells put their reports
    into (:func:`cell_reporter`; a ``multiprocessing`` queue for worker processes), or None for a fresh
    ``queue.Queue``; a report ``{"name", "phase": "done"}`` removes a cell. ``interval``: default
    :data:`PROGRESS_SECONDS`.
    Use as a context manager: the thread runs inside the block.
    """

    def __init__(self, write, reports=None, interval=None, clock=time.monotonic):
        self.write, self.clock = write, clock
        self.interval = PROGRESS_SECONDS if interval is None else interval
        self.reports = queue.Queue() if reports is None else reports
        self.latest, self.first = {}, {}
        self._stop = threading.Event()
        self._thread = None

    def callback(self, name):
        """A training callback for cell ``name`` in this process."""
        return cell_reporter(name, self.reports.put, self.clock)

    def add(self, report):
        name = report["name"]
        if report.get("phase") == "done":
            self.latest.pop(name, None)
            return
        self.first.setdefault(name, report)
        self.latest[name] = report

    def lines(self):
        """One line per running cell: stage, pass, step, steps per second and training time left."""
        out = []
        for name in sorted(self.latest):
            r = self.latest[name]
            if r["global_step"] >= r["total_steps"]:
                out.append(f"  [{name}] trained ({r['total_steps']} steps); evaluating")
                continue
            first = self.first[name]
            dt, done = r["time"] - first["time"], r["global_step"] - first["global_step"]
            rate = done / dt if dt > 0 and done > 0 else float("nan")
            left = (r["total_steps"] - r["global_step"]) / rate if rate == rate else float("nan")
            text = (f"  [{name}] stage {r['stage'] + 1}/{r['n_stages']}, pass {r['pass'] + 1}/{r['passes']}, "
                    f"step {r['step'] + 1}/{r['steps_per_pass']} ({r['global_step']}/{r['total_steps']} steps), "
                    + (f"{rate:.1f} steps/s, training left {format_duration(left)}" if rate == rate
                       else "rate: measuring"))
            out.append(text)
        return out

    def _run(self):
        last = self.clock()
        while not self._stop.is_set():
            try:
                self.add(self.reports.get(timeout=min(1.0, self.interval) if self.interval > 0 else 0.05))
            except queue.Empty:
                pass
            except (EOFError, OSError):  # the queue's process is gone: nothing more will come
                return
            now = self.clock()
            if now - last >= self.interval and self.latest:
                last = now
                lines = self.lines()
                self.write(f"progress ({time.strftime('%H:%M:%S')}):\n" + "\n".join(lines) + "\n")

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="iwae_np-table-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
