"""Writing files so that a reader never sees half of one: the one atomic writer of the package.

Checkpoints, metrics, evaluations, oracle fixtures and downloads all go through
:func:`atomic_write`: the bytes go to a temporary file in the target's directory, are flushed to
disk, optionally verified, and only then renamed over the target with ``os.replace`` (atomic on
POSIX and Windows). A crash, a full disk or Ctrl-C leaves either the old file or the new one,
never a mixture, and the temporary file is removed on any failure that Python sees.
Temporary names are ``.<name>.iwae-np-<8 random characters>.tmp`` (:func:`temporary_prefix`);
:func:`remove_stale_temporaries` clears the ones a killed process (SIGKILL, power loss) could not
remove, and only names of exactly that form: a user's ``.<name>.backup.tmp`` is not the project's.
"""
import json
import os
import re
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_text", "write_json", "read_json", "temporary_prefix", "is_temporary_of",
           "remove_stale_temporaries"]

#: What marks the project's temporaries (between the target's name and the random part).
_MARK = "iwae-np-"
#: The random part ``tempfile.mkstemp`` puts between prefix and suffix: 8 of these characters.
_RANDOM = "[a-z0-9_]{8}"


def temporary_prefix(path):
    """The prefix of the temporary names of ``path``: ``.<name>.iwae-np-`` (then 8 random characters, ``.tmp``)."""
    return f".{Path(path).name}.{_MARK}"


def is_temporary_of(candidate, path):
    """Whether the file name ``candidate`` is one that :func:`atomic_write` of ``path`` generates."""
    return re.fullmatch(re.escape(temporary_prefix(path)) + _RANDOM + re.escape(".tmp"), Path(candidate).name) is not None


def atomic_write(path, write, verify=None):
    """Write ``path`` through a temporary file in the same directory and ``os.replace`` (atomic).

    ``write(f)`` writes the content to the binary file object ``f``. ``verify(tmp_path)``, if
    given, is called on the complete temporary file before it replaces ``path`` and may raise to
    refuse it (a checksum or structure check of a download). Returns ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text(path, text):
    """:func:`atomic_write` of a UTF-8 string."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path, obj, indent=1):
    """:func:`atomic_write` of ``obj`` as JSON (with a final newline)."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path, error=ValueError, missing=None):
    """Parse the JSON file ``path``.

    A missing file raises ``error(missing)`` (or ``error`` naming the path); a file that is not
    JSON or not UTF-8 raises ``error`` naming the file. ``error`` is an exception class.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(missing or f"{path} does not exist") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, expected a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path} is not valid JSON: {err}") from None


def remove_stale_temporaries(path):
    """Remove the temporary files :func:`atomic_write` left next to ``path`` when its process was killed.

    Only names that :func:`atomic_write` generates (:func:`is_temporary_of`) are removed. Call it only where
    no other process may be writing ``path`` at the same time (a run directory that this process owns).
    Returns the number of files removed.
    """
    path = Path(path)
    removed = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        if not is_temporary_of(tmp, path):
            continue
        try:
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
