"""The per-photo face analysis every model-running stage shares, in process or in a worker.

Worker-safe: imports only numpy, opencv, Pillow (pillow-heif when present), onnxruntime and insightface
(through the engine) and the other worker-safe facesets modules, so the stand-alone worker
(scripts/face_worker.py) runs it from the source tree under an interpreter that has no facesets install
(e.g. a Windows DirectML venv). tests/test_worker_route.py checks that with an import guard.

One photo's job: read the bytes once -> sha256 -> (content already embedded? stop) -> decode at a reduced
JPEG scale -> detect (deciding borderline detections on the full-size decode) -> embed (from a larger decode
when a face is small) -> the face rows.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from facesets.core import imageio
from facesets.core.engine import Detections

log = logging.getLogger(__name__)

BLUR_SIZE = 112  # face crops are resized to this before the Laplacian, so blur is comparable across sizes


@dataclass
class Photo:
    """One file's job: what was read and found, then (in the pipeline) recorded."""
    rel: str
    stat: os.stat_result | None = None
    sha: str | None = None
    data: bytes | None = None
    decoded: imageio.Decoded | None = None
    skip: str | None = None
    known: bool = False
    info: dict | None = None                    # set once embedded (faces_of's results)
    rows: dict[str, np.ndarray] | None = None


def io_skip(exc: OSError) -> str:
    """Why a file that cannot be stat'ed or read is skipped (recorded in the cache)."""
    if isinstance(exc, FileNotFoundError):
        return "vanished while scanning"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"read failed: {exc.strerror or exc}"


def read_photo(path, photo: Photo, known_shas: set[str], cfg: dict) -> Photo:
    """Read the file once: bytes -> sha256 -> (unknown content) decode at the reduced scale. A file that
    cannot be read loses its stat too (it is recorded as a skip without size)."""
    try:
        with open(path, "rb") as fh:  # read-only: source trees are never written
            data = fh.read()
    except OSError as exc:
        photo.stat, photo.skip = None, io_skip(exc)
        return photo
    photo.sha, photo.data = hashlib.sha256(data).hexdigest(), data
    if photo.sha in known_shas:
        photo.known, photo.data = True, None
        return photo
    try:
        photo.decoded = imageio.decode(data, max_pixels=cfg["max_image_pixels"], long_side=cfg["decode_long_side"])
    except imageio.ImageSkip as exc:
        photo.skip, photo.data = exc.reason, None
    return photo


def analyze(photo: Photo, known_shas: set[str], analyzer) -> Photo:
    """Detect and embed a decoded photo whose content is not known yet (`analyzer()` gives the
    PhotoAnalyzer, built on first need); a photo the models cannot take is a skip with the reason."""
    if photo.decoded is not None and not photo.known and photo.sha not in known_shas:
        a = analyzer()  # a pack that cannot load stops the run: every photo would fail alike
        try:
            photo.info, photo.rows = a.faces_of(photo)
        except (imageio.ImageSkip, cv2.error, MemoryError, ValueError) as exc:
            # one photo the models cannot take (odd geometry, no memory for it) is recorded, not fatal
            photo.skip = getattr(exc, "reason", None) or f"face analysis failed: {type(exc).__name__}: {exc}"
    photo.data = photo.decoded = None  # the photo is no longer needed: keep only what gets recorded
    return photo


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


def face_rows(sha: str, det: Detections, scale: float, img: np.ndarray, boxes: np.ndarray,
              raw: np.ndarray) -> dict[str, np.ndarray]:
    """The cache's rows for the faces `det` (in decoded pixels at `scale`) with raw embeddings `raw`; the
    blur is measured on `img`, where the faces are `boxes`. No faces: the store's empty rows."""
    norm = np.linalg.norm(raw, axis=1).astype(np.float32)
    emb = raw / np.maximum(norm, 1e-12)[:, None]
    bbox_full = det.bboxes * scale
    n = len(det)
    return {
        "sha256": np.array([sha] * n, dtype="U64"),
        "face_index": np.arange(n, dtype=np.int32),
        "bbox": bbox_full.astype(np.float32).reshape(n, 4),
        "kps": (det.kps * scale).astype(np.float32).reshape(n, 5, 2),
        "det_score": det.scores.astype(np.float32),
        "face_short": _short(bbox_full.reshape(n, 4)).astype(np.float32),
        "blur": np.array([laplacian_blur(img, b) for b in boxes], np.float32),
        "emb_norm": norm,
        "embedding": emb.astype(np.float32),
    }


class PhotoAnalyzer:
    """Turns a read photo into its image info and face rows with one FaceEngine."""

    def __init__(self, engine, embed_cfg: dict, sig: str | None = None):
        self.engine = engine
        self.cfg = embed_cfg
        self.sig = sig

    def _detect(self, r: Photo) -> tuple[imageio.Decoded, Detections]:
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

    def faces_of(self, r: Photo) -> tuple[dict, dict[str, np.ndarray]]:
        dec, det = self._detect(r)
        info = {"width": dec.width, "height": dec.height, "exif_datetime": dec.exif_datetime}
        if len(det) == 0:
            return dict(info, status="noface", n_faces=0), face_rows(r.sha, det, dec.scale, dec.bgr, det.bboxes,
                                                                    np.zeros((0, 0), np.float32))
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
        return dict(info, status="face", n_faces=len(det)), face_rows(r.sha, det, dec.scale, img, boxes, raw)


def landmarks_of(engine, data: bytes, max_pixels: int) -> list[dict]:
    """enrich's model part: every face insightface finds in the full-size photo, with its landmarks and pose
    (None where the pack has no such model). Raises OSError / ImageSkip for a photo it cannot decode."""
    dec = imageio.decode(data, max_pixels=max_pixels)
    out = []
    for f in engine.analyze(dec.bgr):
        out.append({"bbox": np.asarray(f.bbox), **{k: getattr(f, k, None) for k in
                                                   ("landmark_2d_106", "landmark_3d_68", "pose")}})
    return out


def in_order(fn, items, threads: int, window: int):
    """fn(item) for every item in `threads` worker threads, at most `window` submitted ahead; yields the
    results in item order. Close the generator (contextlib.closing) so that an error stops the pool: the
    items still queued are cancelled and the running ones waited for."""
    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:
        it = iter(items)
        queue: deque = deque()
        for item in it:
            queue.append(pool.submit(fn, item))
            if len(queue) >= window:
                break
        while queue:
            result = queue.popleft().result()
            for nxt in it:
                queue.append(pool.submit(fn, nxt))
                break
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
