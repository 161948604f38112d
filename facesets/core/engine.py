"""The face engine: one wrapper around insightface's FaceAnalysis used by every stage.

A pack is a folder of .onnx files or the name of one installed under model.root (facesets.core.models
resolves and checks it; the engine never downloads). Works with any recognizer width (128-d, 512-d);
optional modules are used only when the pack has them.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np

from facesets.core import models

log = logging.getLogger(__name__)
# insightface's alignment calls a deprecated scikit-image API on every face: noise, not news
warnings.filterwarnings("ignore", message=".*`estimate` is deprecated.*", category=FutureWarning)

BASE_MODULES = ("detection", "recognition")
# Bumped whenever detection or alignment changes what the same photo yields: part of the embed signature,
# so a cache built by an older engine is re-embedded rather than mixed with new records.
ENGINE_REVISION = 3  # 2: anti-aliased alignment; 3: its half-pixel centring fixed
MAX_SUPERSAMPLE = 8  # beyond 8x the extra source pixels change nothing measurable at 112 px
LANDMARK_MODULES = ("landmark_2d_106", "landmark_3d_68")


def resolve_providers(requested: list[str]) -> list[str]:
    """Keep the requested onnxruntime providers that this install has; say which were dropped."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    usable = [p for p in requested if p in available]
    missing = [p for p in requested if p not in available]
    if missing:
        log.warning("execution provider(s) %s not available here (have %s)", missing, sorted(available))
    if not usable:
        log.warning("falling back to CPUExecutionProvider")
        usable = ["CPUExecutionProvider"]
    return usable


@dataclass
class Detections:
    bboxes: np.ndarray   # (n, 4) x1, y1, x2, y2
    scores: np.ndarray   # (n,)
    kps: np.ndarray      # (n, 5, 2)

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, keep: np.ndarray) -> "Detections":
        return Detections(self.bboxes[keep], self.scores[keep], self.kps[keep])

    def scaled(self, s: float) -> "Detections":
        return Detections(self.bboxes * s, self.scores, self.kps * s)


def aligned_face(bgr: np.ndarray, kps: np.ndarray, size: int) -> np.ndarray:
    """insightface's arcface alignment, anti-aliased.

    norm_crop warps straight to 112 px with bilinear sampling: a face 1000 px wide is then sampled at
    one pixel in nine, and its embedding depends on where the grid happens to fall (the plain loop
    against itself on a photo shifted by 2 px: cosine down to 0.92). Warping at an integer multiple of
    the output size and area-averaging down keeps every source pixel, so the same face gives the same
    embedding at any photo resolution, whether decoded full size or reduced.
    """
    import cv2
    from insightface.utils import face_align

    m = face_align.estimate_norm(kps, size)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # output px per source px
    k = int(min(MAX_SUPERSAMPLE, np.floor(1.0 / max(scale, 1e-6) + 0.5)))
    if k <= 1:
        return cv2.warpAffine(bgr, m, (size, size), borderValue=0.0)
    big_m = m * k
    # output pixel j averages big pixels kj .. kj+k-1, centred on kj + (k-1)/2: put that centre where
    # norm_crop samples pixel j, or the crop shifts by (k-1)/2k of a pixel
    big_m[:, 2] += (k - 1) / 2.0
    big = cv2.warpAffine(bgr, big_m, (size * k, size * k), borderValue=0.0)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


class FaceEngine:
    def __init__(
        self,
        pack: str = "buffalo_l",
        providers: list[str] | None = None,
        det_size: int = 640,
        det_thresh: float = 0.5,
        root: str = "~/.insightface",
        modules: tuple[str, ...] | None = BASE_MODULES,
        threads: int = 0,
    ):
        from insightface.app import FaceAnalysis

        # a folder, never a bare name: insightface would try to download a name it does not find
        folder = models.locate(pack, root)
        self.pack = str(folder)
        self.providers = resolve_providers(list(providers or ["CPUExecutionProvider"]))
        self.det_size = int(det_size)
        self.det_thresh = float(det_thresh)
        extra = {}
        if threads:
            # several embed workers each run inference: one thread per session, no spin-waiting,
            # measured 3-4x less CPU per image than onnxruntime's default on a busy 2-core machine
            import onnxruntime

            so = onnxruntime.SessionOptions()
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            extra["sess_options"] = so
        need = tuple(m for m in BASE_MODULES if m in (modules or BASE_MODULES))
        try:
            self.app = FaceAnalysis(
                name=self.pack,
                root=os.path.expanduser(root),
                providers=self.providers,
                allowed_modules=list(modules) if modules else None,
                **extra,
            )
        except AssertionError:  # insightface asserts a detector: say which model is missing, and the fix
            models.inspect(folder, pack).require(need)
            raise
        if any(m not in self.app.models for m in need):
            models.inspect(folder, pack).require(need)
        ctx = -1 if self.providers == ["CPUExecutionProvider"] else 0
        self.app.prepare(ctx_id=ctx, det_thresh=self.det_thresh, det_size=(self.det_size, self.det_size))
        self.det = self.app.det_model
        self.rec = self.app.models.get("recognition")

    @classmethod
    def from_config(cls, cfg: dict, modules: tuple[str, ...] | None = BASE_MODULES, threads: int = 0) -> "FaceEngine":
        m = cfg["model"]
        return cls(m["pack"], m["providers"], m["det_size"], m["det_thresh"], m["root"], modules, threads)

    @property
    def modules(self) -> list[str]:
        return list(self.app.models)

    @property
    def has_landmarks(self) -> bool:
        return all(m in self.app.models for m in LANDMARK_MODULES)

    def detect(self, bgr: np.ndarray, det_size: int | None = None, det_thresh: float | None = None) -> Detections:
        size = (det_size, det_size) if det_size else None
        bboxes, kpss = self.det.detect(bgr, input_size=size, max_num=0, det_thresh=det_thresh)
        n = 0 if bboxes is None else bboxes.shape[0]
        if n == 0:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        kps = kpss.astype(np.float32) if kpss is not None else np.zeros((n, 5, 2), np.float32)
        return Detections(bboxes[:, :4].astype(np.float32), bboxes[:, 4].astype(np.float32), kps)

    def aligned(self, bgr: np.ndarray, kps: np.ndarray) -> list[np.ndarray]:
        size = self.rec.input_size[0]
        return [aligned_face(bgr, k, size) for k in kps]

    def embed(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Raw (un-normalised) embeddings of the faces whose 5-point keypoints are given, one batch."""
        if len(kps) == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        feats = self.rec.get_feat(self.aligned(bgr, kps))
        return np.asarray(feats, dtype=np.float32).reshape(len(kps), -1)

    def roop_embedding(self, bgr: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """The raw embedding of one face the way roop-unleashed computes it when it loads a faceset: insightface's
        own norm_crop alignment from the 5 keypoints, then the recognizer (roop averages these raw vectors)."""
        from insightface.utils import face_align

        aimg = face_align.norm_crop(bgr, landmark=np.asarray(kps, np.float32), image_size=self.rec.input_size[0])
        return np.asarray(self.rec.get_feat(aimg), dtype=np.float32).reshape(-1)

    @property
    def embedding_dim(self) -> int:
        shape = self.rec.output_shape
        return int(shape[-1]) if shape and isinstance(shape[-1], int) else 512

    def analyze(self, bgr: np.ndarray):
        """Full insightface analysis (all loaded modules) for stages that need landmarks or pose."""
        return self.app.get(bgr)
