"""The `facesets` command line: a thin adapter from subcommands to the stage modules."""
from facesets.cli.main import main  # noqa: F401  (the console script and `python -m facesets`)
