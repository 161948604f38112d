"""embed: detect and embed every face of a source tree into a resumable, incremental face store.

Work per file: stat -> (unchanged? reuse) -> read + sha256 -> (content known? reuse) -> decode at a
reduced JPEG scale -> detect -> embed (from a larger decode when a face is small) -> record.
Everything up to the record runs in `io_threads` worker threads (decoding, hashing and onnxruntime all
release the GIL), so decoding one photo overlaps inference on another and every core is kept busy; the
calling thread only records results, in file order, and flushes the store.

The per-photo work is facesets.core.analysis, shared with the stand-alone worker that runs it under a
profile's interpreter (workers.python: facesets.embed.via_worker); either way the same entries are recorded.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from facesets.core import analysis
from facesets.core.engine import ENGINE_REVISION
from facesets.embed import scan
from facesets.embed.store import FaceStore, concat_faces

log = logging.getLogger(__name__)

BLUR_SIZE = analysis.BLUR_SIZE


def engine_signature(model: dict, embed: dict) -> str:
    """What determines the face records: a change here re-embeds, nothing else does."""
    keys = {
        "pack": os.path.basename(os.path.normpath(str(model["pack"]))),
        "det_size": model["det_size"],
        "det_thresh": model["det_thresh"],
        "decode_long_side": embed["decode_long_side"],
        "rec_min_face": embed["rec_min_face"],
        "det_recheck_margin": embed["det_recheck_margin"],
        "engine": ENGINE_REVISION,
    }
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


# the per-photo analysis is shared with the stand-alone worker (facesets.core.analysis); these names stay here
_Read = analysis.Photo
Embedder = analysis.PhotoAnalyzer
laplacian_blur = analysis.laplacian_blur


def _read(root: Path, rel: str, known_shas: set[str], cfg: dict) -> _Read:
    full = root / rel
    try:
        st = os.stat(full)
    except OSError as exc:
        return _Read(rel, None, skip=analysis.io_skip(exc))
    return analysis.read_photo(full, _Read(rel, st), known_shas, cfg)


class _LazyEmbedder:
    """Builds the engine on first need (never when all work is reused), once, for every worker thread."""

    def __init__(self, engine_factory, ecfg: dict, sig: str):
        self._factory, self._ecfg, self._sig = engine_factory, ecfg, sig
        self._lock = threading.Lock()
        self._embedder: Embedder | None = None
        self._error: BaseException | None = None

    def get(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._error is not None:
                    raise self._error
                if self._embedder is None:
                    try:
                        self._embedder = Embedder(self._factory(), self._ecfg, self._sig)
                    except BaseException as exc:
                        self._error = exc
                        raise
        return self._embedder


def _work(root: Path, rel: str, known_shas: set[str], cfg: dict, embedders: _LazyEmbedder) -> _Read:
    """One file's whole job in a worker thread: read, hash, decode, detect, embed."""
    return analysis.analyze(_read(root, rel, known_shas, cfg), known_shas, embedders.get)


class _Recorder:
    """File entries (and their face rows) buffered and appended to the store every `flush_every` files:
    a kill loses at most that much work."""

    def __init__(self, store: FaceStore, flush_every: int):
        self.store, self.flush_every = store, flush_every
        self.entries: list[dict] = []
        self.faces: list[dict] = []

    def record(self, entry: dict, rows=None) -> None:
        self.entries.append(entry)
        if rows is not None and len(rows["sha256"]):
            self.faces.append(rows)
        if len(self.entries) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.entries:
            self.store.append(list(self.entries), concat_faces(self.faces) if self.faces else None)
            self.entries.clear()
            self.faces.clear()


@dataclass
class _SourceRun:
    """One embed_source call under the store lock: what the store knew, and what this run records."""
    root: Path
    source: str
    sig: str
    shard: tuple[int, int] | None
    ecfg: dict
    prev: dict[str, dict]  # path -> the store's entry for this source
    known: dict[str, dict]  # sha256 -> an entry whose faces this engine signature already has
    rec: _Recorder
    stats: dict

    def base(self, rel: str, st) -> dict:
        return {"source": self.source, "root": str(self.root), "path": rel, "sig": self.sig,
                "size": st.st_size if st else None, "mtime_ns": st.st_mtime_ns if st else None}

    def triage(self, entries: list) -> list[str]:
        """Record listing problems, count unchanged files; returns the paths to read."""
        todo = []
        for e in entries:
            old = self.prev.get(e.relpath)
            if e.problem is not None:
                entry = dict(self.base(e.relpath, None), status="skipped", reason=e.problem, sha256=None)
                if not old or old.get("reason") != e.problem:
                    self.rec.record(entry)
                self.stats["skipped"] += 1
                continue
            st = e.st
            if (old and old["status"] in ("face", "noface") and old.get("sig") == self.sig
                    and old["size"] == st.st_size and old["mtime_ns"] == st.st_mtime_ns):
                self.stats["unchanged"] += 1
                continue
            todo.append(e.relpath)
        return todo

    def record_removed(self, in_scope: set[str]) -> None:
        shard = self.shard
        for rel in self.prev:
            if rel not in in_scope and (shard is None or scan.shard_of(rel, shard[1]) == shard[0]):
                self.rec.record({"source": self.source, "path": rel, "status": "removed"})
                self.stats["removed"] += 1

    def embed(self, todo: list[str], engine_factory, progress: bool, worker=None) -> None:
        """Read, detect and embed `todo` in worker threads, a bounded window ahead; record in file order.
        With `worker` (the profile's worker interpreter) the model part runs there instead."""
        if worker is not None:
            from facesets.embed.via_worker import embed_via_worker

            return embed_via_worker(self, todo, worker)
        ecfg, shard = self.ecfg, self.shard
        embedders = _LazyEmbedder(engine_factory, ecfg, self.sig)
        known_shas = set(self.known)
        window = max(2, ecfg["io_threads"] * 2)
        bar = tqdm(total=len(todo), desc=f"embed {self.source}" + (f" shard {shard[0]}" if shard else ""),
                   unit="img", disable=not progress, mininterval=1.0)
        work = functools.partial(_work, self.root, known_shas=known_shas, cfg=ecfg, embedders=embedders)
        # on an error (or Ctrl-C) the photos still queued are not finished: closing cancels them
        with contextlib.closing(analysis.in_order(work, todo, ecfg["io_threads"], window)) as results:
            for r in results:
                self.take(r, known_shas)
                bar.update(1)
        bar.close()

    def take(self, r: _Read, known_shas: set[str]) -> None:
        """Record one worker's result."""
        entry = self.base(r.rel, r.stat)
        entry["sha256"] = r.sha
        if r.skip:
            old = self.prev.get(r.rel)
            if not old or old.get("reason") != r.skip or old.get("size") != entry["size"]:
                self.rec.record(dict(entry, status="skipped", reason=r.skip))
            self.stats["skipped"] += 1
        elif r.sha in self.known:
            # content seen before, or embedded by another worker while this copy was in flight
            src = self.known[r.sha]
            self.rec.record(dict(entry, status=src["status"], n_faces=src.get("n_faces", 0), width=src.get("width"),
                                 height=src.get("height"), exif_datetime=src.get("exif_datetime")))
            self.stats["reused"] += 1
        else:
            info, rows = r.info, r.rows  # a worker saw the sha unknown, so it embedded the photo
            entry.update(info)
            self.known[r.sha] = entry
            known_shas.add(r.sha)
            self.rec.record(entry, rows)
            self.stats["embedded"] += 1
            self.stats["noface"] += info["status"] == "noface"
            self.stats["faces_added"] += info["n_faces"]


def embed_source(
    root: str | Path,
    store_dir: str | Path,
    source: str,
    cfg: dict,
    engine_factory,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    worker=None,
) -> dict:
    """Bring the store for `source` (optionally one shard of it) up to date with the tree on disk. With
    `worker` (a facesets.core.worker_route.Route) the photos are read and analysed by the profile's worker
    interpreter; listing, the store and every decision stay here."""
    t0 = time.time()
    root = Path(root).resolve()
    ecfg = cfg["embed"]
    sig = engine_signature(cfg["model"], ecfg)
    store = FaceStore(store_dir)
    with store.locked():
        state = store.load()
        unscanned = scan.Unscanned()
        entries = scan.list_source(root, ecfg["extensions"], shard, unscanned)
        stats = {"files": len(entries), "unchanged": 0, "reused": 0, "embedded": 0, "noface": 0,
                 "skipped": 0, "faces_added": 0, "removed": 0, "not_scanned": unscanned.as_json()["not_scanned"]}
        run = _SourceRun(root, source, sig, shard, ecfg,
                         prev={p: e for (s, p), e in state.files.items() if s == source},
                         known=state.content(sig), rec=_Recorder(store, ecfg["flush_every"]), stats=stats)
        todo = run.triage(entries)
        run.record_removed({e.relpath for e in entries})
        run.embed(todo, engine_factory, progress, worker)
        run.rec.flush()
        store.maybe_compact()
    stats["seconds"] = round(time.time() - t0, 3)
    log.info("embed %s%s: %s", source, f" shard {shard[0]}/{shard[1]}" if shard else "", stats)
    if shard is None:  # a pipeline shard's counts are in its summary; the Snakemake run prints the totals
        for line in unscanned.lines(f"source '{source}'"):
            log.warning(line)
    return stats
