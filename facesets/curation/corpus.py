"""The curated corpus: a function of (export, plans), applied by journaled moves and undone exactly.
The pieces: state.py (inventory, desired state), journal.py (journal, lock, journaled operations),
crc_ledger.py (the CRC-32 ledger); this module syncs, applies and undoes.

- The export (results/export) is never edited. The corpus (results/facesets_swap_ready) mirrors it:
  `sync` links new export files in (journal kind "sync").
- `apply` computes the desired state from the plans -- where each faceset lives (active, _masked/,
  _merged/, _thin/) and which crops are dropped (faces/_dropped/) -- and moves files until the corpus
  matches, in either direction, so changed thresholds bring back what the new config keeps. Bundles
  are re-zipped only where membership changed; the old bundle and manifest are kept as backups.
  Whether they changed is decided on CRC-32s of the member PNGs, which a stat-keyed ledger
  (.curation/png_ledger.json) remembers so that an unchanged PNG is not read again (crc_ledger.py).
- Every operation is written to the journal (fsync) before it happens; `undo` replays the "apply"
  entries backwards, which restores the corpus byte for byte. Nothing is deleted: files an apply
  created are moved into .curation/undone/ by undo.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path

from facesets import __version__
from facesets.core import atomic
from facesets.curation.crc_ledger import PNG_LEDGER, RACY_NS, CrcLedger, bundle_digest
from facesets.curation.journal import CURATION, CorpusLocked, Journal, Ops, link_or_copy, locked, prune_empty
from facesets.curation.state import MANIFEST, QUARANTINES, Crop, Desired, Inventory, counts, desired, inventory
from facesets.export.fsz import write_fsz

# the names callers have always imported from here
__all__ = ["CURATION", "MANIFEST", "PNG_LEDGER", "QUARANTINES", "RACY_NS", "CorpusLocked", "CrcLedger", "Crop",
           "Desired", "Inventory", "Journal", "Ops", "apply", "counts", "current_location", "desired", "inventory",
           "locked", "mirror", "sync", "undo"]

log = logging.getLogger(__name__)


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


def sync(export_dir: Path, corpus: Path, inv: Inventory, journal: Journal, run: int, want: Desired | None = None) -> int:
    """Link every export file the corpus lacks into the faceset wherever it lives now, and bring in
    anew, keeping the old one as a backup, every file the export has rendered again since."""
    ops = Ops(corpus, journal, run, "sync")
    for f in inv.facesets:
        loc = current_location(corpus, f) or ""
        src_dir = export_dir / f
        # once the corpus has bundles for an active faceset they are its own: apply re-zips them as needed. A
        # faceset that is (going) out of play keeps the export's, so that taking a decision back that had
        # re-zipped them while it was active leaves the corpus as it was before
        own_bundles = (corpus / _fdir(loc, f)).is_dir() and any((corpus / _fdir(loc, f)).glob("*.fsz")) and \
            (want is None or want.location[f] == "")
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
                ops.replace(have, lambda p, s=src: link_or_copy(s, p))
    return ops.count


def _re_rendered(src: Path, have: Path) -> bool:
    """The export wrote this file anew (e.g. crops after an out_size change) since the corpus took it:
    the corpus holds a hard link to, or a copy of, the old one. A corpus file edited by hand after the
    export's is newer than it and is kept."""
    try:
        return not os.path.samefile(src, have) and src.stat().st_mtime_ns > have.stat().st_mtime_ns
    except OSError:
        return False


# ---------------------------------------------------------------- apply / undo
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
        synced = sync(export_dir, corpus, inv, journal, run, desired(inv, plans, thin_below))
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
        _set_aside_stale(corpus, inv, want, ops)
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
            if chosen and bundle_digest(corpus / path) != want_digest:
                members = [(n, corpus / rel) for n, rel in chosen]
                ops.replace(path, lambda p, ch=members: write_fsz(p, ch))
                rezipped.append(path)
    # after every bundle is in place; a kill before this only leaves an older ledger, i.e. more reads
    ledger.save()
    return rezipped, ledger.reads


def _set_aside_stale(corpus: Path, inv: Inventory, want: Desired, ops: Ops) -> None:
    """What nobody should load any more moves to the backups (journaled: undo brings it back): the crop of a
    face that left its faceset in the export (the person removed it, a threshold moved it), and the bundles of
    an active faceset under an earlier name or top_n, and any of a hidden faceset's."""
    for f, crops in inv.facesets.items():
        loc = want.location[f]
        base = _fdir(loc, f)
        names = {c.name for c in crops}
        for sub in ("faces", "faces/_dropped"):
            for png in sorted((corpus / base / sub).glob("*.png")):
                if png.name not in names:
                    ops.move(f"{base}/{sub}/{png.name}", f"{CURATION}/backups/run{ops.run:04d}/{base}/{sub}/{png.name}")
        if loc not in ("", "_hidden"):
            continue
        wanted = {Path(inv.bundle(f, f"top{inv.top_n}")).name, Path(inv.bundle(f, "all")).name} if loc == "" else set()
        for b in sorted((corpus / base).glob("*.fsz")):
            if b.name not in wanted:
                ops.move(f"{base}/{b.name}", f"{CURATION}/backups/run{ops.run:04d}/{base}/{b.name}")


def _observed_counts(corpus: Path, inv: Inventory) -> dict:
    m = corpus / MANIFEST
    if m.is_file():
        prov = atomic.read_json(m).get("provenance") or [{}]
        return prov[-1].get("after", {})
    return {"active_facesets": len(inv.facesets), "active_pngs": sum(map(len, inv.facesets.values())),
            "masked": 0, "thin": 0, "merged": 0, "hidden": 0, "dropped": 0}


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
            facesets.append({"name": f, **({"label": inv.prefix[f]} if f in inv.prefix else {}),
                             "active_pngs": len(d.members(inv, f)),
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
            "thin": quarantined["_thin"], "hidden": quarantined["_hidden"], "dropped": dropped, "counts": after,
            "provenance": prov}


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
                    prune_empty(dst.parent, corpus)
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
