"""Detections of crops as they are kept and as they travel: the content key, the JSON form, and a recorder.

Worker-safe (numpy only, see facesets.core.analysis): the stand-alone face worker records every detection it
runs on a crop and hands it back, and the pipeline side keeps it in the detection store
(facesets.export.verdicts) under the very key it would have computed itself, so a crop the worker checked is
never detected again, in either interpreter.
"""
from __future__ import annotations

import hashlib
import threading

import numpy as np

from facesets.core.engine import Detections


def pixels_digest(img: np.ndarray) -> str:
    """The content key of a crop: its pixels (PNG is lossless, so a crop and the PNG written from it, read back
    anywhere, have the same key; no encoding needed to compute it)."""
    h = hashlib.sha256(f"{img.shape}|{img.dtype}|".encode())
    h.update(np.ascontiguousarray(img).data)
    return h.hexdigest()


def to_json(det: Detections) -> dict:
    """Bit-exact: float32 values survive float64 JSON and back."""
    return {"b": np.asarray(det.bboxes, np.float64).tolist(), "s": np.asarray(det.scores, np.float64).tolist(),
            "k": np.asarray(det.kps, np.float64).tolist()}


def from_json(d: dict) -> Detections:
    return Detections(np.asarray(d["b"], np.float32).reshape(-1, 4), np.asarray(d["s"], np.float32),
                      np.asarray(d["k"], np.float32).reshape(-1, 5, 2))


def record_key(digest: str, det_size: int, det_thresh: float) -> str:
    return f"{digest}:{int(det_size)}:{float(det_thresh):g}"


class Recorder:
    """An engine that remembers each detection it runs, by the crop's pixels and the setting: what a worker
    item returns as `detections` for the pipeline side to store. `known` (record_key -> to_json form): what the
    pipeline's store already holds for the item, answered from there and never run again."""

    def __init__(self, engine, known: dict[str, dict] | None = None):
        self._engine = engine
        self._lock = threading.Lock()
        self.records: list[dict] = []
        self._seen: dict[str, Detections] = {k: from_json(v) for k, v in (known or {}).items()}

    def detect(self, img: np.ndarray, det_size: int = 640, det_thresh: float = 0.5) -> Detections:
        """A crop asked for twice at one setting (the one-face check, then roop's embedding) is detected once."""
        digest = pixels_digest(img)
        key = record_key(digest, det_size, det_thresh)
        with self._lock:
            if key in self._seen:
                return self._seen[key]
        det = self._engine.detect(img, det_size=int(det_size), det_thresh=float(det_thresh))
        with self._lock:
            self._seen[key] = det
            self.records.append({"digest": digest, "det_size": int(det_size), "det_thresh": float(det_thresh),
                                 "det": to_json(det)})
        return det

    def __getattr__(self, name):
        return getattr(self._engine, name)
