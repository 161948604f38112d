"""The `facesets` command line: a thin adapter from subcommands to the stage modules (cli/<group>.py
registers each group's subcommands; cli/main.py assembles the parser and reports errors)."""
from facesets.cli.main import main  # noqa: F401  (the console script and `python -m facesets`)
