"""Argument types of the command line: a bad value is refused by argparse, naming the flag, before anything runs.

``type=integer(1)`` accepts integers >= 1; ``type=number(low=0, low_open=True)`` finite numbers > 0; and
so on. argparse turns the ``ArgumentTypeError`` into ``iwae-np CMD: error: argument --flag: ...`` with
exit status 2, which :class:`Parser` prints as one line.
"""
import argparse
import math
import sys

__all__ = ["Parser", "UsageError", "integer", "number", "path_argument", "warning_line"]


class UsageError(Exception):
    """A bad command line; :func:`iwae_np.cli.main` prints it as one line and returns 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the error and where to find the options), exit status 2.

    It raises :class:`UsageError` instead of exiting, so that ``main(argv)`` returns 2 like every other error.
    """

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def integer(low=None, high=None):
    """An argparse type: an integer in ``[low, high]`` (either end may be None)."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {_range(low, high)}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def number(low=None, high=None, low_open=False, high_open=False, infinite=False):
    """An argparse type: a finite number (or ``inf`` with ``infinite``) in the interval given; NaN never."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = not math.isnan(value) and (infinite or math.isfinite(value))
        ok = ok and (low is None or (value > low if low_open else value >= low))
        ok = ok and (high is None or (value < high if high_open else value <= high))
        if not ok:
            kind = "a number" if infinite else "a finite number"
            raise argparse.ArgumentTypeError(f"must be {kind} {_range(low, high, low_open, high_open)}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def path_argument(what="path"):
    """An argparse type: a non-empty path (``--out ''``, an unset shell variable, would mean the current
    directory or a default, silently)."""
    def parse(text):
        if not text.strip():
            raise argparse.ArgumentTypeError(f"an empty {what} ({text!r}): name a directory or file "
                                             "(an unset shell variable?)")
        return text
    parse.__name__ = "path"
    return parse


def _range(low, high, low_open=False, high_open=False):
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def warning_line(prog):
    """A ``warnings.showwarning`` that prints ``prog: warning: message`` on one line of stderr."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=file or sys.stderr)
    return show


def add_engine_argument(p, what):
    """``--engine definition|fast`` (:mod:`iwae_np.engines`); ``what`` says what the engine computes."""
    from ..engines import DEFAULT_ENGINE, ENGINES
    p.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE,
                   help=f"what computes {what}: fast (default; iwae_np.fast) or definition (the paper in plain "
                        "autograd, slower); equal to rounding, tested")
