"""Swap-ready crops: roop-style framing, square letterbox, and the one-face re-detection check.

roop-unleashed appends every face it re-detects in a PNG to the identity, so a crop is shipped only
if exactly one face -- the target -- is found at every configured (det_size, det_thresh).
Worker-safe (numpy and opencv only): the stand-alone face worker runs the same check (facesets.core.workitems).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Frame:
    """A square window in source pixels: top-left corner and side."""
    x: float
    y: float
    side: float

    def to_crop(self, box: np.ndarray, out_size: int) -> np.ndarray:
        s = out_size / self.side
        return np.array([(box[0] - self.x) * s, (box[1] - self.y) * s, (box[2] - self.x) * s, (box[3] - self.y) * s])


def roop_frame(bbox: np.ndarray, pad_ratio: float) -> Frame:
    """roop's writer grows the bbox by 0.5 h above, 0.25 h below and 0.25 w each side, then letterboxes
    to a square; `pad_ratio` scales that (0.5 = roop's own framing)."""
    x1, y1, x2, y2 = map(float, bbox[:4])
    w, h = x2 - x1, y2 - y1
    left, right = x1 - pad_ratio / 2 * w, x2 + pad_ratio / 2 * w
    top, bottom = y1 - pad_ratio * h, y2 + pad_ratio / 2 * h
    side = max(right - left, bottom - top)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return Frame(cx - side / 2, cy - side / 2, side)


def dct_reduction(bboxes: list[np.ndarray], pad_ratio: float, out_size: int) -> int:
    """The largest JPEG DCT reduction (1/2, 1/4, 1/8) after which every crop frame of the photo still
    spans >= out_size pixels, i.e. the resize to out_size still only shrinks; 1 = decode full size."""
    smallest = min(roop_frame(b, pad_ratio).side for b in bboxes)
    return next((r for r in (8, 4, 2) if smallest >= r * out_size), 1)


def render(bgr: np.ndarray, frame: Frame, out_size: int, mask_boxes: list[np.ndarray] = ()) -> np.ndarray:
    """Cut the frame from the image (black outside it) and resize to out_size x out_size; frame and
    boxes are in the image's own pixels."""
    h, w = bgr.shape[:2]
    x0, y0 = int(np.floor(frame.x)), int(np.floor(frame.y))
    side = int(np.ceil(frame.side))
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    canvas = np.zeros((side, side, 3), np.uint8)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = bgr[sy0:sy1, sx0:sx1]
    for b in mask_boxes:  # other people's faces, blacked out so roop cannot pick them up
        bx0, by0 = int(max(b[0] - x0, 0)), int(max(b[1] - y0, 0))
        bx1, by1 = int(min(b[2] - x0, side)), int(min(b[3] - y0, side))
        if bx1 > bx0 and by1 > by0:
            canvas[by0:by1, bx0:bx1] = 0
    interp = cv2.INTER_AREA if side > out_size else cv2.INTER_CUBIC
    return cv2.resize(canvas, (out_size, out_size), interpolation=interp)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def one_face_problem(engine, crop: np.ndarray, checks: list[list[float]], target: np.ndarray | None = None) -> str | None:
    """None if every check finds exactly one face (overlapping `target`, in crop pixels); else why not."""
    for size, thresh in checks:
        det = engine.detect(crop, det_size=int(size), det_thresh=float(thresh))
        if len(det) != 1:
            return f"{len(det)} faces at det_size {int(size)}, threshold {thresh}"
        if target is not None and _iou(det.bboxes[0], target) < 0.3:
            return f"the face found at det_size {int(size)}, threshold {thresh} is not the target"
    return None


def expanded(box: np.ndarray, by: float = 0.15) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] - by * w, box[1] - by * h, box[2] + by * w, box[3] + by * h])


def framed(bgr: np.ndarray, bbox: np.ndarray, others: list[np.ndarray], pad_ratio: float,
           out_size: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], Frame]:
    """(crop, target box in crop pixels, the other faces in frame grown a little, frame): the roop-framed crop
    of face `bbox` and what the bystander-masked retry would black out."""
    frame = roop_frame(bbox, pad_ratio)
    near = [expanded(o) for o in others if _overlaps(o, frame)]
    return render(bgr, frame, out_size), frame.to_crop(bbox, out_size), near, frame


def checked(engine, crop: np.ndarray, checks: list[list[float]], target: np.ndarray,
            masked=None) -> tuple[str | None, bool]:
    """(problem, masked): the one-face check of a crop, tried once more on `masked()` (the crop with the
    bystanders blacked out; None when no one else is in frame) if the crop itself fails. Shared by the
    in-process export and the stand-alone worker."""
    problem = one_face_problem(engine, crop, checks, target)
    if problem is None:
        return None, False
    if masked is not None:
        retry = one_face_problem(engine, masked(), checks, target)
        if retry is None:
            return None, True
        problem = f"{problem}; with bystanders masked: {retry}"
    return problem, False


def make_crop(engine, bgr: np.ndarray, bbox: np.ndarray, others: list[np.ndarray], pad_ratio: float,
              out_size: int, checks: list[list[float]]) -> tuple[np.ndarray | None, str | None, bool]:
    """(crop, problem, masked): the framed crop if it passes the one-face check, trying once more with
    the other people's faces blacked out when a bystander is in frame."""
    crop, target, near, frame = framed(bgr, bbox, others, pad_ratio, out_size)
    masked_crop: list[np.ndarray] = []

    def masked() -> np.ndarray:
        masked_crop.append(render(bgr, frame, out_size, near))
        return masked_crop[-1]

    problem, was_masked = checked(engine, crop, checks, target, masked if near else None)
    if problem is not None:
        return None, problem, False
    return (masked_crop[-1] if was_masked else crop), None, was_masked


def _overlaps(box: np.ndarray, frame: Frame) -> bool:
    return box[2] > frame.x and box[0] < frame.x + frame.side and box[3] > frame.y and box[1] < frame.y + frame.side
