"""What the stand-alone face worker does per item, and how arrays travel in its JSON files.

Worker-safe (see facesets.core.analysis): the worker script (scripts/face_worker.py) imports this from the
source tree under the profile's interpreter; the pipeline side imports it to read the results back. Every
task calls the same functions as the in-process path, so both give the same answers:

- embed:  a photo (mapped path) -> sha256, skip reason, image info, face rows (analysis.read_photo/analyze)
- enrich: a photo -> every face with its landmarks and pose (analysis.landmarks_of)
- crops:  a staged crop PNG (+ its bystander-masked variant) -> the one-face check's verdict (crops.checked)
- verify: a bundle member PNG -> the one-face check's verdict, and its roop-style embedding (verify_image)
- detect: a crop PNG -> its detections at each setting of the queue's `checks` (the multi-face audit)

The crop tasks hand back every detection they ran (`detections`, facesets.core.recorded), which the pipeline
side keeps in its detection store: a crop is detected once per setting whichever interpreter did it.
"""
from __future__ import annotations

import base64
import threading

import numpy as np

from facesets.core import analysis
from facesets.core.recorded import Recorder, pixels_digest
from facesets.export import crops

TASKS = ("embed", "enrich", "crops", "verify", "detect")


def encode(a) -> dict | None:
    """An array as JSON, bit-exact (dtype, shape, base64 of its bytes); None stays None."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode(d: dict | None):
    if d is None:
        return None
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def png_image(data) -> np.ndarray | None:
    """PNG bytes (or a uint8 array of them) as 8-bit BGR, the way roop decodes a member; None when undecodable."""
    import cv2

    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None


def read_png(path: str):
    """A PNG as BGR (None when unreadable); np.fromfile + imdecode reads any path on any OS."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    return png_image(data)


def verify_image(engine, img, checks, embed: bool = False, known: dict | None = None) -> dict:
    """verify-fsz's model part for one decoded member: why it fails the one-face contract (None: it passes),
    every detection run (not those `known`: stored already), and with `embed` its roop-style embedding (bundle
    consistency) and pixel digest."""
    from facesets.export.consistency import roop_embedding

    rec = Recorder(engine, known)
    out = {"problem": crops.one_face_problem(rec, img, checks)}
    if embed and out["problem"] is None:
        out["embedding"] = encode(roop_embedding(rec, img))
        out["digest"] = pixels_digest(img)
    out["detections"] = rec.records
    return out


class TakingTurns:
    """An engine whose model calls take turns: DirectML runs one inference at a time per session (concurrent
    Run calls are not supported there), while reading, hashing and decoding in other threads still overlap."""

    def __init__(self, engine):
        self._engine, self._lock = engine, threading.Lock()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def detect(self, *a, **k):
        with self._lock:
            return self._engine.detect(*a, **k)

    def embed(self, *a, **k):
        with self._lock:
            return self._engine.embed(*a, **k)

    def analyze(self, *a, **k):
        with self._lock:
            return self._engine.analyze(*a, **k)


def engine_of(s: dict):
    """The face engine a queue's settings describe (pack: a folder, as this interpreter sees it)."""
    from facesets.core.engine import FaceEngine

    engine = FaceEngine(s["pack"], s["providers"], s["det_size"], s["det_thresh"], s.get("root", "~/.insightface"),
                        tuple(s["modules"]), int(s.get("threads", 0)))
    serial = "DmlExecutionProvider" in engine.det.session.get_providers()
    return TakingTurns(engine) if serial else engine


class Task:
    """One queue's work: `work(item)` in worker threads, `took(result)` in order in the main thread (and for
    each result resumed from an interrupted run)."""
    threads = 1

    def __init__(self, s: dict, engine, queue: dict):
        self.s, self.engine = s, engine

    def took(self, result: dict) -> None:
        pass

    def reusable(self, result: dict) -> bool:
        """Whether a result saved by an interrupted run still holds for this queue."""
        return True


class EmbedTask(Task):
    def __init__(self, s: dict, engine, queue: dict):
        super().__init__(s, engine, queue)
        self.cfg = s["embed"]
        self.threads = int(self.cfg.get("io_threads", 1))
        self.known = set(queue.get("known", []))  # content this store already has: read and hashed only
        self.analyzer = analysis.PhotoAnalyzer(engine, self.cfg)

    def work(self, item: dict) -> dict:
        r = analysis.read_photo(item["path"], analysis.Photo(item["id"]), self.known, self.cfg)
        r = analysis.analyze(r, self.known, lambda: self.analyzer)
        return {"sha256": r.sha, "skip": r.skip, "info": r.info,
                "rows": {k: encode(v) for k, v in r.rows.items()} if r.rows is not None else None}

    def took(self, result: dict) -> None:
        if result.get("info"):  # embedded: a later copy of these bytes is known content, as in the pipeline
            self.known.add(result["sha256"])

    def reusable(self, result: dict) -> bool:
        """"Known content" holds only while that content is known to this queue's store."""
        return bool(result.get("info") or result.get("skip") or result.get("error")) or result["sha256"] in self.known


class EnrichTask(Task):
    def work(self, item: dict) -> dict:
        from facesets.core import imageio

        try:
            with open(item["path"], "rb") as fh:
                data = fh.read()
            faces = analysis.landmarks_of(self.engine, data, int(self.s["max_pixels"]))
        except (OSError, imageio.ImageSkip) as exc:
            return {"error": str(exc)}
        return {"faces": [{k: encode(v) for k, v in f.items()} for f in faces]}


class CropsTask(Task):
    def work(self, item: dict) -> dict:
        crop = read_png(item["path"])
        if crop is None:
            return {"problem": "staged crop unreadable", "masked": False}
        masked = (lambda: read_png(item["masked"])) if item.get("masked") else None
        rec = Recorder(self.engine, item.get("known"))
        problem, was_masked = crops.checked(rec, crop, self.s["checks"], np.asarray(item["target"]), masked)
        return {"problem": problem, "masked": was_masked, "detections": rec.records}


class VerifyTask(Task):
    def work(self, item: dict) -> dict:
        try:
            with open(item["path"], "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return {"problem": f"staged member unreadable: {exc}"}
        img = png_image(data)
        if img is None:
            return {"problem": "undecodable PNG"}
        if item.get("kps"):  # its one-face check is settled: only roop's embedding of the face is wanted
            emb = self.engine.roop_embedding(img, np.asarray(item["kps"], np.float32))
            return {"problem": None, "embedding": encode(emb), "digest": pixels_digest(img), "detections": []}
        return verify_image(self.engine, img, self.s["checks"], bool(self.s.get("embed")), item.get("known"))


class DetectTask(Task):
    def work(self, item: dict) -> dict:
        img = read_png(item["path"])
        if img is None:
            return {"error": "unreadable"}
        rec = Recorder(self.engine)
        for size, thresh in self.s["checks"]:
            rec.detect(img, det_size=int(size), det_thresh=float(thresh))
        return {"detections": rec.records}


def task_of(name: str, s: dict, engine, queue: dict) -> Task:
    tasks = {"embed": EmbedTask, "enrich": EnrichTask, "crops": CropsTask, "verify": VerifyTask, "detect": DetectTask}
    return tasks[name](s, engine, queue)
