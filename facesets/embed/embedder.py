"""embed: detect and embed every face of a source tree into a resumable, incremental face store.

Work per file: stat -> (unchanged? reuse) -> read + sha256 -> (content known? reuse) -> decode at a
reduced JPEG scale -> detect -> embed (from a larger decode when a face is small) -> record.
Everything up to the record runs in `io_threads` worker threads (decoding, hashing and onnxruntime all
release the GIL), so decoding one photo overlaps inference on another and every core is kept busy; the
calling thread only records results, in file order, and flushes the store.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facesets.core import imageio
from facesets.core.engine import ENGINE_REVISION, Detections
from facesets.embed import scan
from facesets.embed.store import FaceStore, concat_faces, empty_faces

log = logging.getLogger(__name__)

BLUR_SIZE = 112  # face crops are resized to this before the Laplacian, so blur is comparable across sizes


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


def laplacian_blur(bgr: np.ndarray, bbox: np.ndarray) -> float:
    h, w = bgr.shape[:2]
    x1, y1, x2, y2 = bbox
    x1, y1 = max(int(x1), 0), max(int(y1), 0)
    x2, y2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    gray = cv2.cvtColor(bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (BLUR_SIZE, BLUR_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _short(b: np.ndarray) -> np.ndarray:
    return np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


@dataclass
class _Read:
    rel: str
    stat: os.stat_result | None
    sha: str | None = None
    data: bytes | None = None
    decoded: imageio.Decoded | None = None
    skip: str | None = None
    known: bool = False
    info: dict | None = None                    # set once embedded (faces_of's results)
    rows: dict[str, np.ndarray] | None = None


class Embedder:
    """Turns files into store entries and face rows with one FaceEngine."""

    def __init__(self, engine, embed_cfg: dict, sig: str):
        self.engine = engine
        self.cfg = embed_cfg
        self.sig = sig

    def _detect(self, r: _Read) -> tuple[imageio.Decoded, Detections]:
        """Detections as the full-size photo gives them, from the reduced decode wherever that is certain.

        Reducing the photo moves detection scores by about +-0.01, so a face right at det_thresh can
        appear or vanish with the decode scale. When any candidate scores within det_recheck_margin of
        the threshold, the photo is decoded at full size and detected again: its faces are then exactly
        the full-size photo's. Clear-cut photos, nearly all of them, stay on the cheap path.
        """
        dec = r.decoded
        thresh, margin = self.engine.det_thresh, self.cfg["det_recheck_margin"]
        if dec.scale <= 1.0 or margin <= 0:
            return dec, self.engine.detect(dec.bgr)
        det = self.engine.detect(dec.bgr, det_thresh=max(thresh - margin, 1e-3))
        if ((det.scores >= thresh - margin) & (det.scores < thresh + margin)).any():
            try:
                full = imageio.decode(r.data, max_pixels=self.cfg["max_image_pixels"], long_side=0)
            except imageio.ImageSkip as exc:  # e.g. out of memory at full size: the reduced verdict stands
                log.warning("%s: full-size re-check failed (%s); keeping the reduced decode's faces", r.rel, exc.reason)
            else:
                return full, self.engine.detect(full.bgr)
        return dec, det.take(det.scores >= thresh)

    def faces_of(self, r: _Read) -> tuple[dict, dict[str, np.ndarray]]:
        dec, det = self._detect(r)
        info = {"width": dec.width, "height": dec.height, "exif_datetime": dec.exif_datetime}
        if len(det) == 0:
            return dict(info, status="noface", n_faces=0), empty_faces()
        img, kps, boxes = dec.bgr, det.kps, det.bboxes
        short = _short(det.bboxes)
        min_face = self.cfg["rec_min_face"]
        if dec.scale > 1.0 and (short < min_face).any():
            # A small face loses detail in the reduced decode: embed every face from a larger decode, the
            # smallest JPEG scale at which the smallest face spans min_face pixels (full size at most).
            # On 12 MP photos a 1/2-scale decode costs a third of a full one, and its embeddings match
            # the plain full-size loop's as closely as a full decode's do (mean cosine 0.992 vs 0.993).
            need = dec.scale * max(float(short.min()), 1.0) / min_face  # full-size px per decoded px, at most
            long_side = 0 if need <= 1.0 else int(np.ceil(max(dec.width, dec.height) / need))
            try:
                hi = imageio.decode(r.data, max_pixels=self.cfg["max_image_pixels"], long_side=long_side)
            except imageio.ImageSkip as exc:  # e.g. out of memory at full size: embed from what we have
                log.warning("%s: larger decode failed (%s); embedding from the reduced decode", r.rel, exc.reason)
            else:
                f = dec.scale / hi.scale
                img, kps, boxes = hi.bgr, det.kps * f, det.bboxes * f
        raw = self.engine.embed(img, kps)
        norm = np.linalg.norm(raw, axis=1).astype(np.float32)
        emb = raw / np.maximum(norm, 1e-12)[:, None]
        bbox_full = det.bboxes * dec.scale
        n = len(det)
        rows = {
            "sha256": np.array([r.sha] * n, dtype="U64"),
            "face_index": np.arange(n, dtype=np.int32),
            "bbox": bbox_full.astype(np.float32),
            "kps": (det.kps * dec.scale).astype(np.float32),
            "det_score": det.scores.astype(np.float32),
            "face_short": _short(bbox_full).astype(np.float32),
            "blur": np.array([laplacian_blur(img, b) for b in boxes], np.float32),
            "emb_norm": norm,
            "embedding": emb.astype(np.float32),
        }
        return dict(info, status="face", n_faces=n), rows


def _read(root: Path, rel: str, known_shas: set[str], cfg: dict) -> _Read:
    full = root / rel
    try:
        st = os.stat(full)
        with open(full, "rb") as fh:  # read-only: source trees are never written
            data = fh.read()
    except FileNotFoundError:
        return _Read(rel, None, skip="vanished while scanning")
    except PermissionError:
        return _Read(rel, None, skip="permission denied")
    except OSError as exc:
        return _Read(rel, None, skip=f"read failed: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    r = _Read(rel, st, sha=sha, data=data)
    if sha in known_shas:
        r.known, r.data = True, None
        return r
    try:
        r.decoded = imageio.decode(data, max_pixels=cfg["max_image_pixels"], long_side=cfg["decode_long_side"])
    except imageio.ImageSkip as exc:
        r.skip, r.data = exc.reason, None
    return r


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
    r = _read(root, rel, known_shas, cfg)
    if r.decoded is not None and not r.known and r.sha not in known_shas:
        embedder = embedders.get()  # a pack that cannot load stops the run: every photo would fail alike
        try:
            r.info, r.rows = embedder.faces_of(r)
        except (imageio.ImageSkip, cv2.error, MemoryError, ValueError) as exc:
            # one photo the models cannot take (odd geometry, no memory for it) is recorded, not fatal
            r.skip = getattr(exc, "reason", None) or f"face analysis failed: {type(exc).__name__}: {exc}"
    r.data = r.decoded = None  # the photo is no longer needed: keep only what gets recorded
    return r


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

    def embed(self, todo: list[str], engine_factory, progress: bool) -> None:
        """Read, detect and embed `todo` in worker threads, a bounded window ahead; record in file order."""
        ecfg, shard = self.ecfg, self.shard
        embedders = _LazyEmbedder(engine_factory, ecfg, self.sig)
        known_shas = set(self.known)
        window = max(2, ecfg["io_threads"] * 2)
        bar = tqdm(total=len(todo), desc=f"embed {self.source}" + (f" shard {shard[0]}" if shard else ""),
                   unit="img", disable=not progress, mininterval=1.0)
        pool = ThreadPoolExecutor(max_workers=ecfg["io_threads"])
        try:
            it = iter(todo)
            queue: deque = deque()
            for rel in it:
                queue.append(pool.submit(_work, self.root, rel, known_shas, ecfg, embedders))
                if len(queue) >= window:
                    break
            while queue:
                r: _Read = queue.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    queue.append(pool.submit(_work, self.root, nxt, known_shas, ecfg, embedders))
                self.take(r, known_shas)
                bar.update(1)
        finally:
            # on an error (or Ctrl-C) do not finish the photos still queued: cancel them, wait for the running
            pool.shutdown(wait=True, cancel_futures=True)
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
) -> dict:
    """Bring the store for `source` (optionally one shard of it) up to date with the tree on disk."""
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
        run.embed(todo, engine_factory, progress)
        run.rec.flush()
        store.maybe_compact()
    stats["seconds"] = round(time.time() - t0, 3)
    log.info("embed %s%s: %s", source, f" shard {shard[0]}/{shard[1]}" if shard else "", stats)
    if shard is None:  # a pipeline shard's counts are in its summary; the Snakemake run prints the totals
        for line in unscanned.lines(f"source '{source}'"):
            log.warning(line)
    return stats
