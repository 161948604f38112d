"""The composite quality score that ranks a faceset's faces for export.

    composite = 0.30 frontality + 0.20 det_score + 0.20 landmark_symmetry + 0.15 face_size + 0.15 sharpness

Each term is normalised to [0, 1] (weights from config `export.weights`):
- frontality: 1 - hypot(yaw, pitch) / 90 degrees, clipped (pose from enrich: 3-D landmarks or 5 keypoints);
- det_score: the detector's score as is (already a probability in [0, 1]);
- landmark_symmetry: mirror symmetry of eyes and mouth corners about the nose (facesets.identities.pose);
- face_size: face short edge / 256 px, clipped: a 512 px roop-framed crop holds the face at about
  256 px, so larger sources add no detail;
- sharpness: log(1 + blur) / log(1 + 1000), clipped; blur is the Laplacian variance of the face
  resized to 112x112, where ~1000 is a crisp face and < 40 is refine's reject level.
"""
from __future__ import annotations

import numpy as np

from facesets.identities.pose import symmetry_from_kps

TERMS = ("frontality", "det_score", "landmark_symmetry", "face_size", "sharpness")
FACE_SIZE_FULL = 256.0
SHARP_FULL = 1000.0


def terms(pose: np.ndarray, det_score: np.ndarray, kps: np.ndarray, face_short: np.ndarray,
          blur: np.ndarray) -> dict[str, np.ndarray]:
    pose = np.nan_to_num(np.asarray(pose, np.float64), nan=90.0)
    return {
        "frontality": np.clip(1.0 - np.hypot(pose[:, 0], pose[:, 1]) / 90.0, 0, 1),
        "det_score": np.clip(np.asarray(det_score, np.float64), 0, 1),
        "landmark_symmetry": symmetry_from_kps(kps).astype(np.float64),
        "face_size": np.clip(np.asarray(face_short, np.float64) / FACE_SIZE_FULL, 0, 1),
        "sharpness": np.clip(np.log1p(np.maximum(blur, 0)) / np.log1p(SHARP_FULL), 0, 1),
    }


def composite(t: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    total = sum(weights[k] for k in TERMS) or 1.0
    return sum(weights[k] * t[k] for k in TERMS) / total
