"""Whether a bundle's members changed is decided on CRC-32s of the member PNGs, compared with the zip's own;
a stat-keyed ledger (.curation/png_ledger.json) remembers them so that an unchanged PNG is not read again."""
from __future__ import annotations

import os
import time
import zipfile
import zlib
from pathlib import Path

from facesets.core import atomic
from facesets.curation.journal import CURATION

PNG_LEDGER = "png_ledger.json"
# a file whose ctime is this close to the moment it was read could be rewritten within the same
# timestamp tick (coarse kernel clocks, 2 s on FAT) without its stat changing: such entries are not kept
RACY_NS = 2_000_000_000


def _crc32(path: Path) -> int:
    return zlib.crc32(path.read_bytes()) & 0xFFFFFFFF


def _stat_key(st: os.stat_result) -> list[int]:
    # ctime and inode too: an in-place edit that restores the mtime, or a file replaced by a rename,
    # still changes the key; a move between folders changes the ctime and costs one more read
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class CrcLedger:
    """CRC-32 per corpus PNG, trusted only while the file's stat is the one it was read with.

    It is a cache and nothing else: the bundles are still compared with their own zip CRCs, so an
    entry that is stale, missing or unreadable only costs one more read of that file.
    """

    def __init__(self, corpus: Path):
        self.corpus = corpus
        self.path = corpus / CURATION / PNG_LEDGER
        self.known = self._load()
        self.keep: dict[str, list[int]] = {}  # what the next run may trust
        self.this_run: dict[str, int] = {}  # a PNG is in the top-N and the all bundle: one look each run
        self.reads = 0

    def _load(self) -> dict[str, list[int]]:
        try:
            data = atomic.read_json(self.path)
        except (OSError, ValueError):
            return {}
        files = data.get("files") if isinstance(data, dict) and data.get("version") == 1 else None
        return files if isinstance(files, dict) else {}

    def crc(self, rel: str) -> int:
        if rel in self.this_run:
            return self.this_run[rel]
        path = self.corpus / rel
        key = _stat_key(os.stat(path))  # before the read: a change after it shows as a different key
        old = self.known.get(rel)
        if isinstance(old, list) and len(old) == 5 and old[:4] == key:
            crc = old[4]
        else:
            crc = _crc32(path)
            self.reads += 1
        if time.time_ns() - key[2] >= RACY_NS:
            self.keep[rel] = key + [crc]
        self.this_run[rel] = crc
        return crc

    def save(self) -> None:
        """Keep exactly the files looked at this run; write only when that differs from what is on disk."""
        if self.keep != self.known:
            atomic.write_json(self.path, {"version": 1, "files": self.keep}, indent=None)


def bundle_digest(path: Path) -> list[tuple[str, int]] | None:
    """A corpus bundle's (member, CRC) list; None when there is none to compare, or it cannot be read (damaged
    or edited by hand: zipfile raises more than BadZipFile on a bad central directory), so it is written anew."""
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return [(i.filename, i.CRC) for i in zf.infolist()]
    except Exception:  # noqa: BLE001 -- BadZipFile, NotImplementedError, ValueError, EOFError, OSError...: rewrite it
        return None
