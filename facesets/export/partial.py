"""The partial-face gate: a face cut by the photo's edge does not become a crop.

roop averages every crop of a faceset into one identity, so half a face pulls it off. The detector boxes
what it sees and places the five keypoints where the parts would be, so a cut face shows as keypoints
outside the photo or a box that runs past its edge. Measured with the shared pack on 25 one-face photos
(benchmarks/README.md, "partial faces"): whole faces, also 2 px from the edge, have every keypoint inside
and their whole box inside (visible fraction 1.0); faces cut at 50 % of their width have 2-3 keypoints
outside and a visible fraction of 0.59-0.89; at 30 %, 0.33-0.62; with 30 % of the width removed, 0.83-1.0.
"""
from __future__ import annotations

import numpy as np


def visible_fraction(bbox: np.ndarray, width: int, height: int) -> float:
    """The share of the face's box that lies inside the photo."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    inter = max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))
    return inter / max((x2 - x1) * (y2 - y1), 1e-6)


def partial_reason(bbox: np.ndarray, kps: np.ndarray, width: int, height: int, min_visible: float) -> str | None:
    """Why a face is partial (None for a whole face). Photos of unknown size are not judged."""
    if not width or not height:
        return None
    outside = int(((kps[:, 0] < 0) | (kps[:, 0] >= width) | (kps[:, 1] < 0) | (kps[:, 1] >= height)).sum())
    if outside:
        return f"{outside} of 5 keypoints outside the photo: the face is cut by its edge"
    vis = visible_fraction(bbox, width, height)
    if vis < min_visible:
        return f"only {vis:.0%} of the face's box is inside the photo (< {min_visible:.0%})"
    return None
