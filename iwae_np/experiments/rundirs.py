"""Output directories: telling the project's files from a user's, one writer at a time, no leftovers.

The commands write a few files with fixed names into directories the user names (``--out``):
``config.json``, ``checkpoint.npz``, ``metrics.jsonl`` and ``evaluation.json`` in a run directory,
``results.json``, ``table.md`` and figures (``*.png``) in a table directory, ``snr.json``, ``snr.png``
and ``model.npz`` from ``snr``. A user's own file may have one of those names, so before one is
replaced its content is checked to be what iwae-np writes there (:data:`PROJECT_FILES`,
:func:`check_not_foreign`; figures carry a PNG text chunk, ``model.npz`` a marker array); a file that
is not is never overwritten, and the command stops with a one-line error naming it before anything is
written. (``checkpoint.npz`` is never replaced by a fresh run: it is resumed or refused.)

:func:`check_output_dir` rejects a path that is a file or lies below one. :func:`claim_directory`
holds an exclusive lock on a directory (``flock`` on the directory itself: no lock file, and the
lock goes away with the process, however it ends) and then removes the temporaries that
:func:`iwae_np.files.atomic_write` of a killed process left there; only the lock holder may do that.
"""
import contextlib
import io
import json
import os
import struct
import zipfile
from pathlib import Path

from ..files import remove_stale_temporaries

__all__ = ["ForeignFileError", "DirectoryInUseError", "PROJECT_FILES", "NPZ_MARK", "PNG_SOFTWARE", "is_project_file",
           "check_not_foreign",
           "check_output_dir", "claim_directory"]


class ForeignFileError(ValueError):
    """A file with a name iwae-np writes, but content iwae-np did not write: it is left alone."""


class DirectoryInUseError(ValueError):
    """Another process holds the directory (it is training there)."""


def _json(data):
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:  # not UTF-8, not JSON
        return None


def _is_config(data):
    d = _json(data)
    return isinstance(d, dict) and {"architecture", "objective", "k", "schedule", "adam"} <= set(d)


def _is_metrics(data):
    try:
        records = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    except ValueError:
        return False
    return all(isinstance(r, dict) and {"stage", "lr", "passes_done", "global_step"} <= set(r) for r in records)


def _is_evaluation(data):
    d = _json(data)
    return isinstance(d, dict) and {"eval_k", "test_nll", "run_dir"} <= set(d)


def _is_results(data):
    d = _json(data)
    return isinstance(d, list) and all(isinstance(r, dict) and "status" in r for r in d)


def _is_table(data):
    return data.startswith(b"| layers | k |")


def _is_snr(data):
    d = _json(data)
    return isinstance(d, dict) and {"grid", "slopes", "settings"} <= set(d)


#: The name of the array that marks an ``.npz`` of parameters written by iwae-np (``snr``'s ``model.npz``).
NPZ_MARK = "__iwae_np__"
#: The value of the PNG text chunk ``Software`` in every figure iwae-np draws.
PNG_SOFTWARE = "iwae-np"


def _is_marked_npz(data):
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return f"{NPZ_MARK}.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def _is_png(data):
    """A PNG whose text chunk ``Software`` is :data:`PNG_SOFTWARE` (what :func:`~iwae_np.experiments.figures.save_figure` writes)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"tEXt":
            key, _, value = data[at + 8:at + 8 + length].partition(b"\0")
            if key == b"Software" and value.decode("latin-1").startswith(PNG_SOFTWARE):
                return True
        if kind in (b"IDAT", b"IEND"):
            return False
        at += 12 + length
    return False


#: File name (or, for ``"*.png"``, a suffix) -> a test of its bytes that is true for what iwae-np writes under it.
#: Every file a command writes is one of these, so a user's file of the same name is never replaced.
PROJECT_FILES = {"config.json": _is_config, "metrics.jsonl": _is_metrics, "evaluation.json": _is_evaluation,
                 "results.json": _is_results, "table.md": _is_table, "snr.json": _is_snr, "model.npz": _is_marked_npz,
                 "*.png": _is_png}


def _test_of(name):
    if name in PROJECT_FILES:
        return PROJECT_FILES[name]
    if name.endswith(".png"):
        return PROJECT_FILES["*.png"]
    raise KeyError(f"{name!r} is not a file iwae-np writes")


def is_project_file(path, kind=None):
    """Whether the file at ``path`` holds what iwae-np writes under the name ``kind`` (default: its own name).

    An empty file counts as the project's (replacing it loses nothing); an unreadable one does not.
    """
    path = Path(path)
    test = _test_of(kind or path.name)
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if not data.strip():
        return True
    return test(data)


def check_not_foreign(path, kind=None, flag=None):
    """Raise :class:`ForeignFileError` if ``path`` exists and is not a file iwae-np wrote (see :func:`is_project_file`)."""
    path = Path(path)
    what = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise ForeignFileError(f"{what} is a directory; iwae-np would write its {kind or path.name} there")
    if path.exists() and not is_project_file(path, kind):
        raise ForeignFileError(f"{what} exists and was not written by iwae-np; it is left as it is: move it away "
                               "or choose another " + ("file" if flag else "directory"))


def check_output_dir(path, flag=None):
    """``path`` must be a directory or not exist yet, and no part of it may be a file; ValueError naming it."""
    path = Path(path)
    what = f"{flag} {path}" if flag else f"output directory {path}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} is a file, not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{what} lies below {parent}, which is a file, not a directory")
            break


_held = set()  # the directories this process holds (a nested claim of one of them is a no-op)


@contextlib.contextmanager
def claim_directory(directory, temporaries=()):
    """Hold an exclusive lock on ``directory`` while the block runs, after removing the stale temporaries of
    each name in ``temporaries``. :class:`DirectoryInUseError` when another process holds it.

    Claims nest within a process (the inner one does nothing). Without ``fcntl`` (Windows) nothing is
    locked and no temporaries are removed.
    """
    key = os.path.realpath(directory)
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if fcntl is None or key in _held:
        yield
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DirectoryInUseError(f"{directory} is in use by another iwae-np process; wait for it to end "
                                      "or choose another directory") from None
        _held.add(key)
        try:
            for name in temporaries:
                remove_stale_temporaries(Path(key) / name)
            yield
        finally:
            _held.discard(key)
    finally:
        os.close(fd)  # releases the lock
