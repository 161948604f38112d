"""The report subcommand: a self-contained HTML report of a results folder."""
from __future__ import annotations

from pathlib import Path

from facesets.cli.common import command
from facesets.core import inputs


def cmd_report(args) -> int:
    from facesets.report.render import build

    inputs.existing(args.results, "results folder", "pass the folder the pipeline wrote (config results)")
    print(build(args.results, args.out or str(Path(args.results) / "report")))
    return 0


def register(sub) -> None:
    p = command(sub, "report", cmd_report, "self-contained HTML report of a results folder")
    p.add_argument("results", metavar="RESULTS", help="the pipeline's results folder")
    p.add_argument("--out", metavar="DIR", help="report folder (default: RESULTS/report)")
