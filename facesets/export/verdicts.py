"""Detections of crops, stored by content: a crop is run through the detector at most once per setting.

A detection of a PNG crop is a function of (the PNG's bytes, the detector setting, the detector model), so
it is kept in one content-addressed store that the export's one-face check, both verifies and the
multi-face audit read and fill. The key holds the PNG's sha256, (det_size, det_thresh) and the detector's
identity (its model file's digest and the engine revision): a changed pack or setting never reuses an old
verdict. The store is SQLite in WAL mode: a kill -9 loses at most the detections of the transaction in
flight, never the file, and several processes read and write it at once.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from facesets.core.digests import sha256_file
from facesets.core.engine import ENGINE_REVISION, Detections
from facesets.core.recorded import from_json, pixels_digest, record_key, to_json

SCHEMA = ("CREATE TABLE IF NOT EXISTS detections (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
          # the raw recognizer embedding of a crop's one face as roop computes it (the bundle consistency check)
          "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@functools.lru_cache(maxsize=8)
def detector_identity(model_file: str) -> str:
    """The detector's identity: its weights' digest and the engine revision (a new decode/alignment code
    changes what a detection means, so it starts afresh)."""
    return hashlib.sha1(f"{sha256_file(model_file)}:{ENGINE_REVISION}".encode()).hexdigest()[:16]


def _key(png_sha: str, det_size: int, det_thresh: float, detector: str) -> str:
    return f"{png_sha}:{int(det_size)}:{float(det_thresh):g}:{detector}"


class DetectionStore:
    """Thread-safe; one connection per thread (all closed by close()). `runs` and `reused` count this process's
    lookups; a detection two threads miss at once runs once, the other thread waits for it."""

    def __init__(self, path: str | Path, detector: str, recognizer: str | None = None):
        self.path, self.detector, self.recognizer = Path(path), detector, recognizer
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._count_lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._inflight: dict[str, Future] = {}
        self.runs = self.reused = 0
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            for table in SCHEMA:
                c.execute(table)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # used only by its own thread; close() may come from another one
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
            with self._count_lock:
                self._conns.append(conn)
        return conn

    def get(self, png_sha: str, det_size: int, det_thresh: float) -> Detections | None:
        row = self._conn().execute("SELECT value FROM detections WHERE key=?",
                                   (_key(png_sha, det_size, det_thresh, self.detector),)).fetchone()
        return from_json(json.loads(row[0])) if row else None

    def put(self, png_sha: str, det_size: int, det_thresh: float, det: Detections) -> None:
        self.put_json(png_sha, det_size, det_thresh, to_json(det))

    def put_json(self, png_sha: str, det_size: int, det_thresh: float, det: dict) -> None:
        self._conn().execute("INSERT OR REPLACE INTO detections (key, value) VALUES (?, ?)",
                             (_key(png_sha, det_size, det_thresh, self.detector), json.dumps(det)))

    def _embedding_key(self, png_sha: str) -> str:
        """The embedding is of the face the detector found: both models are part of its key."""
        return f"{png_sha}:{self.detector}:{self.recognizer}"

    def get_embedding(self, png_sha: str) -> np.ndarray | None:
        row = self._conn().execute("SELECT value FROM embeddings WHERE key=?", (self._embedding_key(png_sha),)).fetchone()
        return np.asarray(json.loads(row[0]), np.float32) if row else None

    def put_embedding(self, png_sha: str, emb: np.ndarray) -> None:
        self._conn().execute("INSERT OR REPLACE INTO embeddings (key, value) VALUES (?, ?)",
                             (self._embedding_key(png_sha), json.dumps(np.asarray(emb, np.float64).tolist())))

    def known(self, digests: list[str], settings) -> dict[str, dict]:
        """What the store holds for these images at these settings, keyed as the worker's Recorder looks it up
        (facesets.core.recorded.record_key): handed to the worker so that it never detects a stored one again."""
        out = {}
        for digest in digests:
            for size, thresh in settings:
                row = self._conn().execute("SELECT value FROM detections WHERE key=?",
                                           (_key(digest, size, thresh, self.detector),)).fetchone()
                if row:
                    out[record_key(digest, size, thresh)] = json.loads(row[0])
        return out

    def put_recorded(self, records: list[dict]) -> None:
        """What a worker ran (facesets.core.recorded.Recorder), in one transaction; counted as detector runs."""
        if not records:
            return
        conn = self._conn()
        with self._count_lock:
            self.runs += len(records)
        conn.execute("BEGIN")
        try:
            for r in records:
                self.put_json(r["digest"], r["det_size"], r["det_thresh"], r["det"])
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def detect(self, engine, png_sha: str, image_of, det_size: int, det_thresh: float) -> Detections:
        """The stored detection, or run the detector once (on `image_of()`, decoded only then) and store it."""
        key = _key(png_sha, det_size, det_thresh, self.detector)
        with self._count_lock:
            fut = self._inflight.get(key)
            mine = fut is None
            if mine:
                fut = self._inflight[key] = Future()
        if not mine:  # another thread is on it right now
            det = fut.result()
            with self._count_lock:
                self.reused += 1
            return det
        try:
            det, ran = self.get(png_sha, det_size, det_thresh), False
            if det is None:
                det, ran = engine.detect(image_of(), det_size=int(det_size), det_thresh=float(det_thresh)), True
                self.put(png_sha, det_size, det_thresh, det)
            fut.set_result(det)
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        finally:
            with self._count_lock:
                self._inflight.pop(key, None)
        with self._count_lock:
            self.runs += ran
            self.reused += not ran
        return det

    def stats(self) -> dict[str, int]:
        return {"detector_runs": self.runs, "detections_reused": self.reused}

    def close(self) -> None:
        """Every thread's connection (the store is not used afterwards)."""
        with self._count_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


class StoredEngine:
    """Stands in for the face engine wherever crops are checked: `detect(crop, det_size=, det_thresh=)` looks the
    crop up by its pixels and runs the real engine (built on first need, never when every verdict is stored)
    only on a miss. Thread-safe; `embed` and the rest go to the real engine."""

    def __init__(self, engine_factory, store: DetectionStore):
        self._factory, self.store = engine_factory, store
        self._engine = None
        self._lock = threading.Lock()

    @property
    def engine(self):
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._factory()
        return self._engine

    def detect(self, img, det_size: int = 640, det_thresh: float = 0.5) -> Detections:
        return self.store.detect(_OnMiss(self), pixels_digest(img), lambda: img, det_size, det_thresh)

    def __getattr__(self, name):
        return getattr(self.engine, name)


class _OnMiss:
    """What the store runs on a miss: the real engine, built only then."""

    def __init__(self, owner: StoredEngine):
        self.owner = owner

    def detect(self, img, det_size: int, det_thresh: float) -> Detections:
        return self.owner.engine.detect(img, det_size=det_size, det_thresh=det_thresh)


class Unstored(LookupError):
    """A detection a store-only engine was asked for and does not hold: the crop goes to whoever runs the model."""


def _unstored():
    raise Unstored


def store_only(store: DetectionStore) -> StoredEngine:
    """An engine that answers from the store alone and raises Unstored on a miss: what the pipeline side uses to
    settle a crop without the model (the worker is started only for the crops it cannot settle)."""
    return StoredEngine(_unstored, store)


UNSETTLED = object()


def settled(fn, *args):
    """fn(*args) (a verdict computed with a store_only engine), or UNSETTLED when a detection it needs is not
    stored."""
    try:
        return fn(*args)
    except Unstored:
        return UNSETTLED


def open_store(path: str | Path, pack: str, root: str = "~/.insightface") -> DetectionStore:
    """The results folder's detection store for the configured pack's detector (and recognizer, for the bundle
    consistency check's embeddings)."""
    from facesets.core import models

    tasks = models.check(pack, root).tasks
    rec = tasks.get("recognition")
    return DetectionStore(path, detector_identity(str(tasks["detection"].path)),
                          detector_identity(str(rec.path)) if rec is not None else None)
