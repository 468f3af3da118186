"""The ``iwae-np`` command line: a thin dispatcher over the modules of this package.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""
import argparse
import importlib
import signal
import sys
import threading
import warnings

from .arguments import Parser, UsageError, warning_line

__all__ = ["main", "COMMANDS"]

#: Subcommand name -> module implementing it.
COMMANDS = {
    "check": "iwae_np.cli.check",
    "train": "iwae_np.cli.train",
    "evaluate": "iwae_np.cli.evaluate",
    "table": "iwae_np.cli.table",
    "claims": "iwae_np.cli.claims",
    "plot": "iwae_np.cli.plot",
    "oracle": "iwae_np.cli.oracle",
    "snr": "iwae_np.cli.snr",
}


def build_parser():
    parser = Parser(
        prog="iwae-np",
        description="Importance Weighted Autoencoders in NumPy + autograd: a reference implementation "
                    "of Burda, Grosse & Salakhutdinov (ICLR 2016).")
    from ..version import __version__
    parser.add_argument("--version", action="version", version=f"iwae-np {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _build_parser_holding_ctrl_c():
    """:func:`build_parser`, with Ctrl-C held back while it imports numpy, scipy and autograd (a KeyboardInterrupt
    inside an extension's initialization surfaces as an ImportError or a traceback); True if one came."""
    if threading.current_thread() is not threading.main_thread():
        return build_parser(), False
    came = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        return build_parser(), bool(came)
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv=None):
    try:
        parser, interrupted = _build_parser_holding_ctrl_c()  # imports every command's modules
    except KeyboardInterrupt:  # before the handler was in place
        interrupted = True
    if interrupted:
        print("iwae-np: interrupted", file=sys.stderr)
        return 130
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    prog = f"iwae-np {args.command}"
    try:
        with warnings.catch_warnings():
            warnings.showwarning = warning_line(prog)
            return int(args._run(args) or 0)
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a file that cannot be read or written (full disk, permissions, a directory in the way)
        print(f"{prog}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _one_line(err):
    """The message of ``err``; an OSError from the system as ``path: reason``, not ``[Errno 28] ...: 'path'``."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err) if err.args else type(err).__name__

