"""The `facesets` command line: one subcommand per pipeline step (the Snakemake rules call these).

Each stage group registers its subcommands (facesets/cli/<group>.py); the work itself is in the stage
modules. An error the user can fix (facesets.core.errors.FacesetsError) prints one line,
`facesets: <what failed>: <what to do>`; anything else prints one line pointing at the traceback, which
is always in the --log file and shown on the terminal with -v.
"""
from __future__ import annotations

import argparse
import logging
import sys
import traceback

from facesets import __version__
from facesets.cli import curation, embed, export, identities, models, report, review
from facesets.core import logs, messages
from facesets.core.errors import FacesetsError

log = logging.getLogger("facesets")
GROUPS = (embed, identities, export, curation, report, review, models)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facesets", description=__doc__.split("\n\n")[0],
                                 epilog="`facesets CMD --help` describes one subcommand")
    ap.add_argument("--version", action="version", version=f"facesets {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="CMD")
    for group in GROUPS:
        group.register(sub)
    return ap


def _to_log_file(message: str, exc_info) -> None:
    """The error and its traceback, to the --log file only (the terminal gets one line)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, exc_info)
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"


def fail(args: argparse.Namespace, exc: BaseException) -> int:
    """Report `exc` as one line on stderr; the traceback goes to the log file, and to stderr with -v."""
    if isinstance(exc, FacesetsError):
        line, code = f"facesets: {exc.one_line()}", exc.exit_code
    else:
        text = (messages.UNEXPECTED_VERBOSE if args.verbose else
                messages.UNEXPECTED if args.log else messages.UNEXPECTED_NO_LOG)
        line, code = text.format(cmd=args.cmd, exc=_one_line(exc), log=args.log), 1
    _to_log_file(line, (type(exc), exc, exc.__traceback__))
    sys.stdout.flush()
    if args.verbose:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(line, file=sys.stderr, flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log, args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"facesets {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure is one line; see fail()
        return fail(args, exc)


if __name__ == "__main__":
    sys.exit(main())
