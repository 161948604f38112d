"""Listing photo trees: which files a source holds, which shard each belongs to, and what is odd."""
from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    relpath: str            # posix-style path relative to the source root
    problem: str | None     # None for a regular file; otherwise why it cannot be read


def shard_of(relpath: str, shards: int) -> int:
    """Stable shard number of a file: depends on its path only, so adding photos never moves others."""
    return zlib.crc32(os.fsencode(relpath)) % shards


def _has_ext(name: str, exts: tuple[str, ...]) -> bool:
    return name.lower().endswith(exts)


def list_source(root: str | Path, extensions: list[str] | tuple[str, ...]) -> list[Entry]:
    """Every image-named entry under `root`, sorted by path.

    Directory symlinks are not followed (a loop cannot trap the walk); unreadable folders, broken or
    looping file links and non-regular files named like images are listed with their problem so they
    can be recorded as skipped rather than silently lost.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder not found: {root}")
    exts = tuple(e.lower() for e in extensions)
    out: list[Entry] = []

    def on_error(err: OSError) -> None:
        rel = os.path.relpath(err.filename, root) if err.filename else "?"
        out.append(Entry(Path(rel).as_posix() + "/", f"folder unreadable: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if _has_ext(name, exts) and os.path.islink(full):
                out.append(Entry(_rel(rel_dir, name), "symlink to a folder (not followed)"))
        for name in sorted(filenames):
            if not _has_ext(name, exts):
                continue
            full = os.path.join(dirpath, name)
            rel = _rel(rel_dir, name)
            out.append(Entry(rel, _problem(full)))
    out.sort(key=lambda e: e.relpath)
    return out


def _rel(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else Path(rel_dir, name).as_posix()


def _problem(full: str) -> str | None:
    try:
        st = os.stat(full)  # follows links: a loop or dangling link raises here
    except OSError as exc:
        if os.path.islink(full):
            return f"broken or looping symlink: {exc.strerror}"
        return f"cannot stat: {exc.strerror}"
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def regular_files(entries: list[Entry]) -> list[str]:
    return [e.relpath for e in entries if e.problem is None]
