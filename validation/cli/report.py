"""``sgd-minima report``: tables and figures from saved runs (``validation.report.build_report``).

Every sub-folder that is not a usable run, and every unreadable or outdated file
of one, is named on stderr (and in ``report.md``); the exit code is then still 0.
With nothing usable (a missing folder, a file, an empty folder, only unusable
sub-folders) the command writes nothing, prints one line naming the path, and
exits 2, as for any other bad input.
"""

from __future__ import annotations

import sys

HELP = "tables and figures from saved runs"


def add_arguments(p):
    p.add_argument("runs_dir")
    p.add_argument("--out", default="report")


def run(args) -> int:
    from ..report import build_report

    def log(line):
        print(f"sgd-minima report: {line}", file=sys.stderr)

    out = build_report(args.runs_dir, args.out, log=log)
    print(f"wrote {out}")
    return 0
