"""The review subcommand (a local page that writes the person's decisions), and the `--decisions` flag of the
stages that apply them (each rule passes only its own part, facesets.review.decisions.part)."""
from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from facesets.cli.common import command, settings, settings_flags
from facesets.core import inputs

log = logging.getLogger("facesets")


def decisions_flag(p: argparse.ArgumentParser, anchors: bool = False) -> None:
    p.add_argument("--decisions", metavar="JSON|YAML",
                   help="the person's decisions: this stage's part as JSON (what the pipeline passes) or a "
                        "decisions YAML file (config review.decisions)")
    if anchors:
        p.add_argument("--anchors", metavar="YAML", help="decisions file whose anchors keep faceset numbers in a "
                                                         "fresh results folder (default: config review.decisions)")


def decisions_of(args) -> dict:
    """The decisions a stage applies (every section present; the ones not given empty)."""
    from facesets.review.decisions import from_arg

    return from_arg(getattr(args, "decisions", None))


def anchors_of(args) -> dict:
    from facesets.review.decisions import load

    return load(getattr(args, "anchors", None) or settings(args)["review"]["decisions"])["anchors"]


def cmd_review(args) -> int:
    from facesets.review.server import serve

    cfg = settings(args)
    results = args.results or cfg["results"]
    inputs.existing(results, "results folder", "run the pipeline first, or pass the folder it wrote (config results)")
    decisions = args.decisions or cfg["review"]["decisions"]
    how = "snakemake --cores all" + "".join(f" --configfile {shlex.quote(c)}" for c in args.config or [])
    server = serve(results, decisions, port=args.port, apply_command=how)
    url = f"http://127.0.0.1:{server.server_port}/"
    print(f"review page: {url}  (decisions: {Path(decisions).resolve()}; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def register(sub) -> None:
    p = command(sub, "review", cmd_review,
                "serve the review page on 127.0.0.1: name, merge, remove, hide, keep (writes the decisions file)")
    p.add_argument("results", nargs="?", metavar="RESULTS", help="the pipeline's results folder (default: config results)")
    p.add_argument("--decisions", metavar="YAML", help="the decisions file to write (default: config review.decisions)")
    p.add_argument("--port", type=int, default=0, metavar="N", help="port on 127.0.0.1 (default: a free one)")
    settings_flags(p)
