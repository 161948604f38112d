"""The corpus journal: every file operation is written (fsync) before it happens, so `undo` can replay the
"apply" entries backwards; the corpus lock; and the journaled operations themselves (`Ops`)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from facesets.core import atomic
from facesets.core.errors import Locked
from facesets.core.faults import checkpoint
from facesets.core.locks import exclusive
from facesets.curation.state import QUARANTINES

CURATION = ".curation"


class CorpusLocked(Locked):
    pass


class Journal:
    def __init__(self, corpus: Path):
        self.dir = corpus / CURATION
        self.path = self.dir / "journal.jsonl"

    def entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue  # a line torn by a kill: the op it announced never started
        return out

    def next_run(self) -> int:
        return max((e.get("run", 0) for e in self.entries()), default=0) + 1

    def write(self, entry: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        torn = self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(("\n" if torn else "") + atomic.dumps_json(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


@contextlib.contextmanager
def locked(corpus: Path):
    msg = f"another facesets process is curating {corpus}; wait for it to finish"
    with exclusive(corpus / CURATION / "lock", CorpusLocked, msg):
        atomic.sweep_temps(corpus)
        yield


class Ops:
    """File operations that are journaled before they happen."""

    def __init__(self, corpus: Path, journal: Journal, run: int, kind: str):
        self.corpus, self.journal, self.run, self.kind = corpus, journal, run, kind
        self.count = 0

    def _rec(self, **entry) -> None:
        self.journal.write({"run": self.run, "kind": self.kind, **entry})
        self.count += 1
        checkpoint(f"journal {entry['op']}")  # announced, not yet done

    def move(self, src: str, dst: str) -> None:
        s, d = self.corpus / src, self.corpus / dst
        if not s.exists() or d.exists():
            raise FileExistsError(f"cannot move {src} -> {dst}")
        self._rec(op="move", src=src, dst=dst)
        d.parent.mkdir(parents=True, exist_ok=True)
        os.replace(s, d)
        prune_empty(s.parent, self.corpus)

    def link_in(self, src_abs: Path, dst: str) -> None:
        self._rec(op="create", path=dst)
        link_or_copy(src_abs, self.corpus / dst)

    def replace(self, path: str, writer) -> None:
        """Write `path` anew with writer(abs_path); an existing file is kept as a backup first."""
        p = self.corpus / path
        if p.exists():
            backup = f"{CURATION}/backups/run{self.run:04d}/{path}"
            self._rec(op="backup", path=path, backup=backup)
            b = self.corpus / backup
            b.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, b)
        else:
            self._rec(op="create", path=path)
        writer(p)


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)  # keeps the mtime, which corpus._re_rendered compares


def prune_empty(d: Path, stop: Path) -> None:
    while d != stop and d.is_dir() and not any(d.iterdir()) and d.name in ("_dropped",) + QUARANTINES:
        d.rmdir()
        d = d.parent
