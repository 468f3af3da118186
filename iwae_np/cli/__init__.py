"""The ``iwae-np`` command line: a thin dispatcher over the modules of this package.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""
import argparse
import importlib
import sys

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
    parser = argparse.ArgumentParser(
        prog="iwae-np",
        description="Importance Weighted Autoencoders in NumPy + autograd: a reference implementation "
                    "of Burda, Grosse & Salakhutdinov (ICLR 2016).")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"iwae-np {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ValueError as err:  # bad input: a clear message, no traceback
        print(f"iwae-np {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"iwae-np {args.command}: interrupted", file=sys.stderr)
        return 130

