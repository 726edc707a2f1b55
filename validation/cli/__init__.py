"""The ``sgd-minima`` command line.

Each subcommand lives in its own ``validation/cli/<name>.py``, which declares its
options (``add_arguments``) and turns them into a frozen config and one library
call (``run``); ``_args`` holds the argument types they share.  This module only
dispatches.  The package may import every other part of ``validation`` (lazily,
inside ``run``), and nothing imports it but the console script.  Library errors (``ValueError`` and
its subclasses, ``TypeError``, ``OSError``) become one line on stderr and exit
code 2, without a traceback.  Heavy DNN imports happen inside the DNN
subcommands' ``run`` only.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ._args import UsageError

__all__ = ["main", "COMMANDS", "UsageError"]

PROG = "sgd-minima"

#: subcommand -> module holding its ``HELP``, ``add_arguments(parser)`` and ``run(args)``
COMMANDS = {
    "quick": "validation.cli.quick",
    "simulate": "validation.cli.simulate",
    "train": "validation.cli.train",
    "estimate": "validation.cli.estimate",
    "grid": "validation.cli.grid",
    "report": "validation.cli.report",
    "smallnet": "validation.cli.smallnet",
}


class _Parser(argparse.ArgumentParser):
    # argparse prints usage plus an error and exits; we want one line and code 2,
    # the same as any other bad input.
    def error(self, message):
        raise UsageError(message)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Check where SGD settles: synthetic problems and ResNet-56.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP))
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _build_parser().parse_args(argv)
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except (ValueError, TypeError, OSError) as exc:
        # OSError: an --out that is a file, an unwritable folder, a missing run folder.
        cmd = argv[0] if argv and not argv[0].startswith("-") else ""
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}{' ' + cmd if cmd else ''}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
