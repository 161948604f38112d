"""The curated corpus: a function of (export, plans), applied by journaled moves and undone exactly.

- The export (results/export) is never edited. The corpus (results/facesets_swap_ready) mirrors it:
  `sync` links new export files in (journal kind "sync").
- `apply` computes the desired state from the plans -- where each faceset lives (active, _masked/,
  _merged/, _thin/) and which crops are dropped (faces/_dropped/) -- and moves files until the corpus
  matches, in either direction, so changed thresholds bring back what the new config keeps. Bundles
  are re-zipped only where membership changed; the old bundle and manifest are kept as backups.
  Whether they changed is decided on CRC-32s of the member PNGs, which a stat-keyed ledger
  (.curation/png_ledger.json) remembers so that an unchanged PNG is not read again.
- Every operation is written to the journal (fsync) before it happens; `undo` replays the "apply"
  entries backwards, which restores the corpus byte for byte. Nothing is deleted: files an apply
  created are moved into .curation/undone/ by undo.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from facesets import __version__
from facesets.core import atomic
from facesets.core.faults import checkpoint
from facesets.core.locks import exclusive
from facesets.export.fsz import write_fsz

log = logging.getLogger(__name__)
QUARANTINES = ("_masked", "_merged", "_thin")
CURATION = ".curation"
MANIFEST = "manifest.json"
PNG_LEDGER = "png_ledger.json"
# a file whose ctime is this close to the moment it was read could be rewritten within the same
# timestamp tick (coarse kernel clocks, 2 s on FAT) without its stat changing: such entries are not kept
RACY_NS = 2_000_000_000


class CorpusLocked(RuntimeError):
    pass


# ---------------------------------------------------------------- inventory of the export
@dataclass
class Crop:
    faceset: str
    name: str
    key: str | None
    composite: float


@dataclass
class Inventory:
    facesets: dict[str, list[Crop]]
    thin_markers: set[str] = field(default_factory=set)
    top_n: int = 30
    prefix: dict[str, str] = field(default_factory=dict)  # bundle name prefix (a label) per faceset

    def bundle(self, faceset: str, label: str) -> str:
        return f"{faceset}/{self.prefix.get(faceset, faceset)}_{label}.fsz"

    def crop(self, faceset: str, name: str) -> Crop | None:
        return next((c for c in self.facesets.get(faceset, []) if c.name == name), None)


def inventory(export_dir: str | Path) -> Inventory:
    """Every PNG of every exported faceset, with its face key and composite where crops.json knows it."""
    export_dir = Path(export_dir)
    known: dict[tuple[str, str], dict] = {}
    prefix: dict[str, str] = {}
    top_n = 30
    index_path = export_dir / "crops.json"
    if index_path.is_file():
        index = atomic.read_json(index_path)
        for fs_name, fs in index["facesets"].items():
            if fs.get("meta", {}).get("bundle_prefix"):
                prefix[fs_name] = fs["meta"]["bundle_prefix"]
            for m in fs["members"]:
                known[(fs_name, Path(m["crop"]).name)] = m
    manifest_path = export_dir / MANIFEST
    if manifest_path.is_file():
        top_n = atomic.read_json(manifest_path).get("params", {}).get("top_n", top_n)
    out: dict[str, list[Crop]] = {}
    thin = set()
    for d in sorted(p for p in export_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        faces = d / "faces"
        crops = []
        for png in sorted(faces.glob("*.png")) if faces.is_dir() else []:
            m = known.get((d.name, png.name))
            crops.append(Crop(d.name, png.name, m["key"] if m else None, m["composite"] if m else 0.0))
        out[d.name] = crops
        if (d / "THIN.txt").exists():
            thin.add(d.name)
    return Inventory(out, thin, top_n, prefix)


# ---------------------------------------------------------------- desired state from plans
@dataclass
class Desired:
    location: dict[str, str]                      # faceset -> "" (active) or a quarantine folder
    reason: dict[str, dict]                       # faceset -> {reason, evidence, into?}
    dropped: dict[tuple[str, str], dict]          # (faceset, crop) -> {pass, reason}

    def active(self, inv: Inventory, faceset: str) -> list[Crop]:
        return [c for c in inv.facesets[faceset] if (faceset, c.name) not in self.dropped]

    def members(self, inv: Inventory, faceset: str) -> list[Crop]:
        """A surviving faceset's bundle members: its own active crops plus those of facesets merged into it."""
        crops = list(self.active(inv, faceset))
        for other, r in self.reason.items():
            if r.get("into") == faceset and self.location[other] == "_merged":
                crops += self.active(inv, other)
        return sorted(crops, key=lambda c: (-c.composite, c.faceset, c.name))


def desired(inv: Inventory, plans: list[dict], thin_below: int = 0) -> Desired:
    loc = {f: "" for f in inv.facesets}
    why: dict[str, dict] = {}
    dropped: dict[tuple[str, str], dict] = {}
    for plan in plans:
        for ch in plan.get("changes", []):
            f = ch["faceset"]
            if f not in loc:
                continue
            if ch["action"] == "drop":
                dropped.setdefault((f, ch["crop"]), {"pass": plan["pass"], "reason": ch["reason"]})
            elif ch["action"] in ("quarantine", "merge") and loc[f] == "":
                loc[f] = ch.get("to", "_merged")
                why[f] = {"pass": plan["pass"], "reason": ch["reason"], "evidence": ch.get("evidence"),
                          **({"into": ch["into"]} if ch["action"] == "merge" else {})}
    d = Desired(loc, why, dropped)
    for f in inv.facesets:
        if loc[f] == "" and (f in inv.thin_markers or (thin_below and len(d.members(inv, f)) < thin_below)):
            loc[f] = "_thin"
            why[f] = {"pass": "thin", "reason": "THIN marker" if f in inv.thin_markers
                      else f"{len(d.members(inv, f))} active PNGs < {thin_below}"}
    return d


# ---------------------------------------------------------------- journal
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
        _prune_empty(s.parent, self.corpus)

    def link_in(self, src_abs: Path, dst: str) -> None:
        self._rec(op="create", path=dst)
        _link_or_copy(src_abs, self.corpus / dst)

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


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)  # keeps the mtime, which _re_rendered compares


def _re_rendered(src: Path, have: Path) -> bool:
    """The export wrote this file anew (e.g. crops after an out_size change) since the corpus took it:
    the corpus holds a hard link to, or a copy of, the old one. A corpus file edited by hand after the
    export's is newer than it and is kept."""
    try:
        return not os.path.samefile(src, have) and src.stat().st_mtime_ns > have.stat().st_mtime_ns
    except OSError:
        return False


def _prune_empty(d: Path, stop: Path) -> None:
    while d != stop and d.is_dir() and not any(d.iterdir()) and d.name in ("_dropped",) + QUARANTINES:
        d.rmdir()
        d = d.parent


# ---------------------------------------------------------------- where things are now
def current_location(corpus: Path, faceset: str) -> str | None:
    if (corpus / faceset).is_dir():
        return ""
    for q in QUARANTINES:
        if (corpus / q / faceset).is_dir():
            return q
    return None


def _fdir(loc: str, faceset: str) -> str:
    return f"{loc}/{faceset}" if loc else faceset


def sync(export_dir: Path, corpus: Path, inv: Inventory, journal: Journal, run: int) -> int:
    """Link every export file the corpus lacks into the faceset wherever it lives now, and bring in
    anew, keeping the old one as a backup, every file the export has rendered again since."""
    ops = Ops(corpus, journal, run, "sync")
    for f in inv.facesets:
        loc = current_location(corpus, f) or ""
        src_dir = export_dir / f
        # once the corpus has bundles for a faceset they are its own: apply re-zips them as needed
        own_bundles = (corpus / _fdir(loc, f)).is_dir() and any((corpus / _fdir(loc, f)).glob("*.fsz"))
        for src in sorted(src_dir.rglob("*")):
            if not src.is_file():
                continue
            rel = src.relative_to(src_dir).as_posix()
            here = f"{_fdir(loc, f)}/{rel}"
            dropped = f"{_fdir(loc, f)}/faces/_dropped/{Path(rel).name}" if rel.startswith("faces/") else None
            if rel.endswith(".fsz") and own_bundles:
                continue
            have = next((p for p in (here, dropped) if p and (corpus / p).exists()), None)
            if have is None:
                ops.link_in(src, here)
            elif _re_rendered(src, corpus / have):
                ops.replace(have, lambda p, s=src: _link_or_copy(s, p))
    return ops.count


# ---------------------------------------------------------------- CRC ledger of member PNGs
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


# ---------------------------------------------------------------- apply / undo
def _bundle_digest(path: Path) -> list[tuple[str, int]] | None:
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return [(i.filename, i.CRC) for i in zf.infolist()]
    except zipfile.BadZipFile:
        return None


def counts(inv: Inventory, d: Desired) -> dict:
    active = [f for f in inv.facesets if d.location[f] == ""]
    return {"active_facesets": len(active),
            "active_pngs": sum(len(d.members(inv, f)) for f in active),
            "masked": sum(v == "_masked" for v in d.location.values()),
            "thin": sum(v == "_thin" for v in d.location.values()),
            "merged": sum(v == "_merged" for v in d.location.values()),
            "dropped": len(d.dropped)}


def mirror(export_dir: str | Path, corpus_dir: str | Path) -> int:
    """Only link the export in (no plan): the state that `undo` returns to."""
    export_dir, corpus = Path(export_dir), Path(corpus_dir)
    corpus.mkdir(parents=True, exist_ok=True)
    with locked(corpus):
        journal = Journal(corpus)
        return sync(export_dir, corpus, inventory(export_dir), journal, journal.next_run())


def apply(export_dir: str | Path, corpus_dir: str | Path, plans: list[dict], config_used: dict | None = None,
          thin_below: int = 0) -> dict:
    export_dir, corpus = Path(export_dir), Path(corpus_dir)
    corpus.mkdir(parents=True, exist_ok=True)
    with locked(corpus):
        inv = inventory(export_dir)
        journal = Journal(corpus)
        run = journal.next_run()
        synced = sync(export_dir, corpus, inv, journal, run)
        previous = atomic.read_json(corpus / MANIFEST) if (corpus / MANIFEST).is_file() else None
        before = _observed_counts(corpus, inv)
        want = desired(inv, plans, thin_below)
        ops = Ops(corpus, journal, run, "apply")
        # 1. facesets to their folders
        for f in inv.facesets:
            loc = current_location(corpus, f)
            if loc is not None and loc != want.location[f]:
                ops.move(_fdir(loc, f), _fdir(want.location[f], f))
        # 2. crops in or out of faces/_dropped/
        for f, crops in inv.facesets.items():
            base = _fdir(want.location[f], f)
            for c in crops:
                active, dropped = f"{base}/faces/{c.name}", f"{base}/faces/_dropped/{c.name}"
                if (f, c.name) in want.dropped and (corpus / active).exists():
                    ops.move(active, dropped)
                elif (f, c.name) not in want.dropped and (corpus / dropped).exists():
                    ops.move(dropped, active)
        rezipped, png_reads = _rezip(corpus, inv, want, ops)
        after = counts(inv, want)
        manifest = _manifest(inv, want, previous, plans, config_used, before, after, run)
        if ops.count or previous is None or _strip_volatile(previous) != _strip_volatile(manifest):
            ops.replace(MANIFEST, lambda p: atomic.write_json(p, manifest))
        stats = {"run": run, "synced": synced, "operations": ops.count, "rezipped": rezipped,
                 "png_reads": png_reads, "counts": after}
        log.info("apply: %s", stats)
        return stats


def _rezip(corpus: Path, inv: Inventory, want: Desired, ops: Ops) -> tuple[list[str], int]:
    """Re-zip the bundles of active facesets whose members (names or bytes) differ from the zip's;
    returns them and how many PNGs had to be read for that."""
    ledger = CrcLedger(corpus)
    rezipped = []
    for f in inv.facesets:
        if want.location[f] != "":
            continue
        files = [(f"{r:04d}_{c.name}", f"{_fdir(want.location[c.faceset], c.faceset)}/faces/{c.name}")
                 for r, c in enumerate(want.members(inv, f), 1)]
        for label, chosen in ((f"top{inv.top_n}", files[:inv.top_n]), ("all", files)):
            path = inv.bundle(f, label)
            want_digest = [(n, ledger.crc(rel)) for n, rel in chosen]
            if chosen and _bundle_digest(corpus / path) != want_digest:
                members = [(n, corpus / rel) for n, rel in chosen]
                ops.replace(path, lambda p, ch=members: write_fsz(p, ch))
                rezipped.append(path)
    # after every bundle is in place; a kill before this only leaves an older ledger, i.e. more reads
    ledger.save()
    return rezipped, ledger.reads


def _observed_counts(corpus: Path, inv: Inventory) -> dict:
    m = corpus / MANIFEST
    if m.is_file():
        prov = atomic.read_json(m).get("provenance") or [{}]
        return prov[-1].get("after", {})
    return {"active_facesets": len(inv.facesets), "active_pngs": sum(map(len, inv.facesets.values())),
            "masked": 0, "thin": 0, "merged": 0, "dropped": 0}


def _strip_volatile(m: dict) -> dict:
    m = dict(m)
    m.pop("provenance", None)
    m.pop("created", None)
    return m


def _manifest(inv: Inventory, d: Desired, previous: dict | None, plans: list[dict], config_used: dict | None,
              before: dict, after: dict, run: int) -> dict:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    dropped: dict[str, dict[str, int]] = {}
    for (f, _), r in d.dropped.items():
        dropped.setdefault(f, {}).setdefault(r["pass"], 0)
        dropped[f][r["pass"]] += 1
    facesets = []
    for f in inv.facesets:
        if d.location[f] == "":
            facesets.append({"name": f, "active_pngs": len(d.members(inv, f)),
                             "absorbed": sorted(o for o, r in d.reason.items() if r.get("into") == f),
                             "bundles": [Path(inv.bundle(f, f"top{inv.top_n}")).name, Path(inv.bundle(f, "all")).name],
                             "dropped": dropped.get(f, {})})
    quarantined = {q: [{"name": f, **d.reason[f]} for f in inv.facesets if d.location[f] == q] for q in QUARANTINES}
    prov = list((previous or {}).get("provenance", []))
    prov.append({"run": run, "time": now, "tool": f"facesets {__version__}", "config": config_used or {},
                 "plans": {p["pass"]: {"changes": len(p.get("changes", [])), "params": p.get("params")} for p in plans},
                 "before": before, "after": after})
    return {"kind": "curated", "version": 1, "tool": f"facesets {__version__}", "created": now, "top_n": inv.top_n,
            "facesets": facesets, "masked": quarantined["_masked"], "merged": quarantined["_merged"],
            "thin": quarantined["_thin"], "dropped": dropped, "counts": after, "provenance": prov}


def undo(corpus_dir: str | Path, applied: str | Path | None = None) -> dict:
    """Reverse every applied operation not yet undone, newest first: the corpus as it was before any plan.

    `applied` is the apply rule's record of the applied state: it is set aside too, so the pipeline sees the
    corpus as not applied (`snakemake -n` proposes apply again) instead of trusting a stale record."""
    corpus = Path(corpus_dir)
    with locked(corpus):
        journal = Journal(corpus)
        entries = journal.entries()
        undone_runs = {r for e in entries if e.get("op") == "undo" for r in e["runs"]}
        todo = [e for e in entries if e.get("kind") == "apply" and e["run"] not in undone_runs]
        runs = sorted({e["run"] for e in todo})
        n = 0
        for e in reversed(todo):
            if e["op"] == "move":
                src, dst = corpus / e["src"], corpus / e["dst"]
                if dst.exists() and not src.exists():
                    src.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(dst, src)
                    _prune_empty(dst.parent, corpus)
                    n += 1
            elif e["op"] == "backup" and not (corpus / e["backup"]).exists():
                continue  # announced, then killed before it happened: the original never moved
            elif e["op"] in ("create", "backup"):
                p = corpus / e["path"]
                if p.exists():
                    keep = corpus / CURATION / "undone" / f"run{e['run']:04d}" / e["path"]
                    keep.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(p, keep)
                if e["op"] == "backup" and (corpus / e["backup"]).exists():
                    os.replace(corpus / e["backup"], p)
                n += 1
        if runs:
            journal.write({"op": "undo", "runs": runs, "time": _dt.datetime.now(_dt.timezone.utc).isoformat()})
        if applied is not None and Path(applied).is_file():
            keep = corpus / CURATION / "undone" / f"run{max(runs or [0]):04d}" / Path(applied).name
            keep.parent.mkdir(parents=True, exist_ok=True)
            os.replace(applied, keep)
        log.info("undo: %d operations of runs %s reversed", n, runs)
        return {"runs": runs, "operations": n}
