"""Logging set-up shared by every subcommand: stderr plus an optional log file (results/logs/...)."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path


def setup(log_file: str | None = None, verbose: bool = False) -> None:
    # insightface's alignment calls a deprecated scikit-image API on every face: noise, not news
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface(\..*)?")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) for h in root.handlers):
        sh = logging.StreamHandler()
        sh.setFormatter(fmt)
        root.addHandler(sh)
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
