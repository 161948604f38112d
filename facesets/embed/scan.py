"""Listing photo trees: which files a source holds, which shard each belongs to, and what is odd."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat as _stat
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Image types facesets knows but does not use: such a file is listed with this reason, so embed records it
# as skipped (faces.csv, audit) instead of passing it over in silence. Naming the extension in
# embed.extensions scans it like any photo instead.
_RAW = (".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .orf .rw2 .raf .pef .srw .x3f .3fr .erf .kdc .mrw .rwl "
        ".iiq .mos .dcr").split()
UNSUPPORTED: dict[str, str] = {
    ".gif": "unsupported format (.gif): GIF animations and 256-colour images are not used for faces",
    **{e: f"unsupported format ({e}): camera RAW is not decoded (the camera's JPEG/HEIC of the shot is)" for e in _RAW},
    ".psd": "unsupported format (.psd): Photoshop documents are not decoded",
    ".svg": "unsupported format (.svg): a vector drawing, not a photo",
    ".svgz": "unsupported format (.svgz): a vector drawing, not a photo",
    ".jxl": "unsupported format (.jxl): JPEG XL is not decoded",
}


@dataclass(frozen=True)
class Entry:
    relpath: str            # posix-style path relative to the source root
    problem: str | None     # None for a regular file; otherwise why it cannot be read
    # the stat taken while listing (None for problems): embed compares it with the store without a second stat
    st: os.stat_result | None = field(default=None, compare=False, repr=False)


def shard_of(relpath: str, shards: int) -> int:
    """Stable shard number of a file: depends on its path only, so adding photos never moves others."""
    return zlib.crc32(os.fsencode(relpath)) % shards


def _has_ext(name: str, exts: tuple[str, ...]) -> bool:
    return name.lower().endswith(exts)


def _plural(n: int, ext: str) -> str:
    return f"{n:,} {ext or 'extension-less'} file{'' if n == 1 else 's'}"


@dataclass
class Unscanned:
    """Per extension (lower case, '' for none), the files of a listing that are not embedded."""
    not_scanned: Counter = field(default_factory=Counter)   # not in embed.extensions: listed nowhere
    unsupported: Counter = field(default_factory=Counter)   # known image types listed as skipped (UNSUPPORTED)

    def as_json(self) -> dict:
        return {"not_scanned": dict(sorted(self.not_scanned.items())),
                "unsupported": dict(sorted(self.unsupported.items()))}

    def lines(self, label: str, shown: int = 8) -> list[str]:
        """What to tell the user, e.g. "source 'phone': 1,204 .heic files not scanned: add them to embed.extensions"."""
        if not (self.not_scanned or self.unsupported):
            return []
        from facesets.core.imageio import (
            readable_extensions,  # only when there is something to say: no cv2 import otherwise
        )

        readable = readable_extensions()
        by_count = sorted(self.not_scanned.items(), key=lambda kv: (-kv[1], kv[0]))
        out = [f"{label}: {_plural(n, ext)} not scanned: add them to embed.extensions"
               for ext, n in by_count if ext in readable]
        rest = [(ext, n) for ext, n in by_count if ext not in readable]
        if rest:
            more = f" and {len(rest) - shown} more extensions" if len(rest) > shown else ""
            out.append(f"{label}: also not scanned (not photo types facesets reads): "
                       + ", ".join(_plural(n, ext) for ext, n in rest[:shown]) + more)
        if self.unsupported:
            out.append(f"{label}: recorded as skipped, an unsupported type (the reason is in faces.csv): "
                       + ", ".join(_plural(n, ext) for ext, n in sorted(self.unsupported.items(),
                                                                         key=lambda kv: (-kv[1], kv[0]))))
        return out


def list_source(root: str | Path, extensions: list[str] | tuple[str, ...],
                shard: tuple[int, int] | None = None, unscanned: Unscanned | None = None) -> list[Entry]:
    """Every image-named entry under `root` (only shard `shard[0]` of `shard[1]` when given), sorted by path.

    The shard is picked from the name before any file is stat'ed: one embed job of a 100k-photo tree then
    stats 1/shards of it, not all of it (measured 7.5 s -> 0.8 s per job at 100k photos, 64 shards).
    Directory symlinks are not followed (a loop cannot trap the walk); unreadable folders, broken or
    looping file links and non-regular files named like images are listed with their problem so they
    can be recorded as skipped rather than silently lost; so are files of a known image type that is not
    used (UNSUPPORTED: GIF, camera RAW, ...) unless `extensions` names it. Every other file is counted
    per extension into `unscanned` when given (the same walk: no stat, one dict update per file).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder not found: {root}")
    exts = tuple(e.lower() for e in extensions)
    out: list[Entry] = []

    def mine(rel: str) -> bool:
        return shard is None or shard_of(rel, shard[1]) == shard[0]

    def on_error(err: OSError) -> None:
        rel = os.path.relpath(err.filename, root) if err.filename else "?"
        rel = Path(rel).as_posix() + "/"
        if mine(rel):
            out.append(Entry(rel, f"folder unreadable: {err.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"  # string joins: pathlib is 10x slower here
        for name in dirnames:
            if _has_ext(name, exts) and mine(prefix + name) and os.path.islink(os.path.join(dirpath, name)):
                out.append(Entry(prefix + name, "symlink to a folder (not followed)"))
        for name in filenames:
            rel = prefix + name
            low = name.lower()
            if low.endswith(exts):
                if mine(rel):
                    out.append(_entry(rel, os.path.join(dirpath, name)))
                continue
            ext = os.path.splitext(low)[1]
            why = UNSUPPORTED.get(ext)
            if why is not None:
                if mine(rel):
                    out.append(Entry(rel, why))  # decided by the name: not even stat'ed
                    if unscanned is not None:
                        unscanned.unsupported[ext] += 1
            elif unscanned is not None and mine(rel):
                unscanned.not_scanned[ext] += 1
    out.sort(key=lambda e: e.relpath)
    return out


def _entry(rel: str, full: str) -> Entry:
    try:
        st = os.stat(full)  # follows links: a loop or dangling link raises here
    except OSError as exc:
        if os.path.islink(full):
            return Entry(rel, f"broken or looping symlink: {exc.strerror}")
        return Entry(rel, f"cannot stat: {exc.strerror}")
    if not _stat.S_ISREG(st.st_mode):
        return Entry(rel, "not a regular file")
    return Entry(rel, None, st)


def listing_line(e: Entry) -> str:
    """What a shard's job depends on for one file: its path and size/mtime, or why it cannot be read."""
    if e.problem is not None:
        return f"{e.relpath}\t!{e.problem}\n"
    return f"{e.relpath}\t{e.st.st_size}\t{e.st.st_mtime_ns}\n"


def _digest(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:16]


def shard_listing_digests(folder: str | Path, shards: int) -> list[str]:
    """The digests of the listings on disk (what a job on another machine sees): '' where one is missing."""
    out = []
    for k in range(shards):
        try:
            out.append(_digest((Path(folder) / f"shard_{k:03d}.tsv").read_bytes()))
        except OSError:
            out.append("")
    return out


NOT_SCANNED = "not_scanned.json"


@dataclass
class ShardListings:
    """A source's listing, split by shard, held in memory: parsing the Snakefile computes it (reads only);
    the `shard_listing` jobs write it (see `write_shard_listings`)."""
    texts: list[bytes]
    unscanned: Unscanned

    @property
    def digests(self) -> list[str]:
        return [_digest(t) for t in self.texts]


def shard_listings(root: str | Path, extensions, shards: int) -> ShardListings:
    """Walk `root` once: each shard's listing text (path and size/mtime of each file, or why it cannot be
    read) and the per-extension counts of the files that are not embedded. Writes nothing.

    The pipeline makes each embed job depend on its shard's listing instead of its photos: Snakemake
    spends ~0.2 ms per input file building the DAG (a 100k-photo no-op dry run took 23 s, nearly all of
    it in Snakemake's per-file bookkeeping), while one listing per shard costs the same at any library
    size. A file added, changed (size/mtime), removed or newly unreadable changes its shard's listing
    and so re-runs exactly that shard.
    """
    texts = [[] for _ in range(shards)]
    unscanned = Unscanned()
    for e in list_source(root, extensions, unscanned=unscanned):
        texts[shard_of(e.relpath, shards)].append(listing_line(e))
    # names that are not UTF-8 stay as on disk
    return ShardListings(["".join(lines).encode("utf-8", "surrogateescape") for lines in texts], unscanned)


def write_listing(path: str | Path, data: bytes) -> None:
    """Write one shard's listing, leaving it alone (mtime included) when it already holds `data`."""
    _write_if_changed(Path(path), data)


def write_not_scanned(path: str | Path, unscanned: Unscanned) -> None:
    """`not_scanned.json` beside the listings: {"not_scanned": {".heic": 1204, ...}, "unsupported": {".gif": 3}}."""
    _write_if_changed(Path(path), (json.dumps(unscanned.as_json(), indent=1) + "\n").encode())


def write_shard_listings(root: str | Path, extensions, shards: int, folder: str | Path) -> list[str]:
    """Every shard's listing (`shard_NNN.tsv`) and `not_scanned.json` written into `folder` now (direct use
    and tests; the pipeline writes them in jobs). Returns each listing's digest."""
    folder = Path(folder)
    lst = shard_listings(root, extensions, shards)
    for k, data in enumerate(lst.texts):
        write_listing(folder / f"shard_{k:03d}.tsv", data)
    write_not_scanned(folder / NOT_SCANNED, lst.unscanned)
    for line in lst.unscanned.lines(f"source '{folder.name}'"):
        log.warning(line)
    return lst.digests


def _write_if_changed(path: Path, data: bytes) -> None:
    from facesets.core.atomic import atomic_open

    try:
        same = path.read_bytes() == data
    except OSError:
        same = False
    if not same:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb", sweep=False) as fh:  # concurrent Snakemake processes may write it too
            fh.write(data)
