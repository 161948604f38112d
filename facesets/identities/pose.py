"""Head pose from the five detector keypoints, for packs without landmark models.

Keypoints (insightface order): left eye, right eye, nose, left mouth corner, right mouth corner, in
image coordinates. The estimate is geometric, not a 3-D fit: roll is the eye-line angle; yaw is the
nose's horizontal offset from the eye/mouth midline relative to the eye distance; pitch is where the
nose sits between the eye line and the mouth line relative to a frontal face. Good enough to rank
frontality; the landmark_3d_68 pose is used instead whenever the pack has that model.
"""
from __future__ import annotations

import numpy as np

FRONTAL_NOSE_T = 0.56   # nose position between eye line (0) and mouth line (1) on a frontal face
PITCH_SPAN = 0.35       # change of that position that corresponds to ~90 degrees of pitch


def pose_from_kps(kps: np.ndarray) -> np.ndarray:
    """(n, 5, 2) keypoints -> (n, 3) [pitch, yaw, roll] in degrees."""
    kps = np.asarray(kps, dtype=np.float64).reshape(-1, 5, 2)
    le, re, nose, lm, rm = (kps[:, i] for i in range(5))
    d = re - le
    roll = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    eye_dist = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-6)
    # de-roll around the eye midpoint so yaw/pitch are measured in the face's own frame
    c, s = np.cos(np.radians(-roll)), np.sin(np.radians(-roll))
    eye_mid = (le + re) / 2

    def rot(p):
        q = p - eye_mid
        return np.stack([q[:, 0] * c - q[:, 1] * s, q[:, 0] * s + q[:, 1] * c], axis=1)

    n, mouth = rot(nose), rot((lm + rm) / 2)
    mid_x = mouth[:, 0] / 2  # midline between eye midpoint (0) and mouth midpoint
    yaw = np.degrees(np.arcsin(np.clip(2 * (n[:, 0] - mid_x) / eye_dist, -1, 1)))
    t = n[:, 1] / np.maximum(mouth[:, 1], 1e-6)
    pitch = np.degrees(np.arcsin(np.clip((t - FRONTAL_NOSE_T) / PITCH_SPAN, -1, 1)))
    return np.stack([pitch, yaw, roll], axis=1).astype(np.float32)


def symmetry_from_kps(kps: np.ndarray) -> np.ndarray:
    """(n,) in [0, 1]: 1 when eyes and mouth corners mirror each other about the nose."""
    kps = np.asarray(kps, dtype=np.float64).reshape(-1, 5, 2)
    le, re, nose, lm, rm = (kps[:, i] for i in range(5))
    eye_dist = np.maximum(np.linalg.norm(re - le, axis=1), 1e-6)
    eye_asym = np.abs(np.linalg.norm(nose - le, axis=1) - np.linalg.norm(nose - re, axis=1)) / eye_dist
    mouth_asym = np.abs(np.linalg.norm(nose - lm, axis=1) - np.linalg.norm(nose - rm, axis=1)) / eye_dist
    return np.clip(1.0 - (eye_asym + mouth_asym) / 2, 0.0, 1.0).astype(np.float32)
