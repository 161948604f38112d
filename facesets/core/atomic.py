"""Atomic file writes: temp file in the same folder, fsync, rename. A kill leaves old or new, never half."""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO, Iterator

from facesets.core.faults import checkpoint


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which races
    with threads creating files meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", sweep: bool = True, **kw) -> Iterator[IO]:
    """Open a temp file next to `path`; on clean exit it replaces `path` atomically.

    `sweep=False` where several processes may write the same path at once (each writes whole, identical
    content): their live temps must not be taken for a killed writer's leftovers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a killed earlier write of this same file left its temp behind; one writer per path, so it is ours
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp") if sweep else ():
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes 0600 files; outputs are shared with roop under another user or over a NAS share,
        # so they get the mode any file the user creates gets
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode, **kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        checkpoint(f"write {path.name}")  # the new content is on disk, not yet in place
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sweep_temps(folder: str | Path) -> int:
    """Remove the temp files of atomic writes that a kill interrupted (`.<name>.<random>.tmp`): they were
    never renamed into place, so they are no one's data. Call it while holding the folder's lock."""
    n = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for p in folder.rglob(".*.tmp"):
        if p.is_file() and p.name.count(".") >= 3:
            p.unlink(missing_ok=True)
            n += 1
    return n


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | Path, text: str) -> None:
    """Text for people (HTML, markers): a file name's undecodable byte shows as `\\udcXX`, never a crash."""
    with atomic_open(path, "w", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write(text)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(obj, indent: int | None = None) -> str:
    """JSON text that is valid UTF-8 even for file names that are not: os.fsdecode turns such a name's
    undecodable bytes into lone surrogates, which UTF-8 cannot encode. They are written as `\\udcXX`
    escapes, which json.loads turns back into the same str (and os.fsencode into the same bytes)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_json(path: str | Path, obj, indent: int | None = 1) -> None:
    write_text(path, dumps_json(obj, indent) + "\n")


def read_json(path: str | Path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
