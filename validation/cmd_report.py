"""``sgd-minima report``: tables and figures from saved runs (``validation.report.build_report``)."""

from __future__ import annotations

HELP = "tables and figures from saved runs"


def add_arguments(p):
    p.add_argument("runs_dir")
    p.add_argument("--out", default="report")


def run(args) -> int:
    from .report import build_report

    out = build_report(args.runs_dir, args.out)
    print(f"wrote {out}")
    return 0
