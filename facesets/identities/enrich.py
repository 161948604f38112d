"""enrich: landmarks and head pose for every cached face, in a sidecar next to the cache.

With a pack that has landmark_2d_106 and landmark_3d_68 (buffalo_l), each photo is re-detected and
the matching face's landmarks and 3-D pose are stored (method `landmark_3d_68`). Otherwise pose is
estimated from the five keypoints (method `kps5`) so export's frontality score still works.
Where a profile names a worker interpreter (workers.python) the landmark models run there
(WorkerLandmarks), with the same per-photo code (facesets.core.analysis.landmarks_of).
Results of earlier runs are reused for faces already enriched with the same method.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesets.core import analysis, atomic, imageio, workitems
from facesets.core.engine import BASE_MODULES, LANDMARK_MODULES
from facesets.embed.cache import FaceCache
from facesets.identities.pose import pose_from_kps

log = logging.getLogger(__name__)
LEDGER = ".enrich_ledger.npz"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def _load(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic.write_bytes(path, buf.getvalue())


def _found_here(cache: FaceCache, paths: list[str], engine, max_pixels: int):
    """(path, faces or None, why not) per photo, analysed in this process."""
    for path in paths:
        try:
            yield path, analysis.landmarks_of(engine, cache.abs_path(path).read_bytes(), max_pixels), None
        except (OSError, imageio.ImageSkip) as exc:
            yield path, None, str(exc)


class WorkerLandmarks:
    """enrich's model part in the profile's worker interpreter (a facesets.core.worker_route.Route): the
    same analysis.landmarks_of per photo; the face matching stays here."""

    def __init__(self, worker, cfg: dict):
        from facesets.core import models

        self.worker, self.max_pixels = worker, cfg["embed"]["max_image_pixels"]
        tasks = models.inspect(worker.pack_folder(), cfg["model"]["pack"]).tasks
        self.has_landmarks = all(m in tasks for m in LANDMARK_MODULES)

    def found(self, cache: FaceCache, paths: list[str]):
        items = [{"id": p, "path": self.worker.map(cache.abs_path(p))} for p in paths]
        res = self.worker.run(items, self.worker.settings(BASE_MODULES + LANDMARK_MODULES, max_pixels=self.max_pixels))
        for p in paths:
            r = res[p]
            faces = [{k: workitems.decode(v) for k, v in f.items()} for f in r["faces"]] if "faces" in r else None
            yield p, faces, r.get("error")


def landmarks_for(cache: FaceCache, idx: list[int], engine, max_pixels: int, progress: bool):
    """Re-detect the photos of faces `idx` with the landmark models; match faces by bbox overlap."""
    n = len(cache)
    lmk106 = np.full((n, 106, 2), np.nan, np.float32)
    lmk68 = np.full((n, 68, 3), np.nan, np.float32)
    pose = np.full((n, 3), np.nan, np.float32)
    by_path: dict[str, list[int]] = {}
    for i in idx:
        by_path.setdefault(str(cache.face_path[i]), []).append(i)
    found_in = (engine.found(cache, list(by_path)) if isinstance(engine, WorkerLandmarks)
                else _found_here(cache, list(by_path), engine, max_pixels))
    for path, found, why in tqdm(found_in, total=len(by_path), desc="enrich", unit="img", disable=not progress):
        if why is not None:
            log.warning("enrich: cannot read %s: %s", path, why)
            continue
        if not found:
            continue
        faces = by_path[path]
        boxes = np.array([f["bbox"] for f in found], np.float32)
        ious = _iou(cache.faces["bbox"][faces], boxes)
        for row, i in enumerate(faces):
            j = int(ious[row].argmax())
            if ious[row, j] < 0.5:
                continue
            f = found[j]
            if f["landmark_2d_106"] is not None:
                lmk106[i] = f["landmark_2d_106"]
            if f["landmark_3d_68"] is not None:
                lmk68[i] = f["landmark_3d_68"]
            if f["pose"] is not None:
                pose[i] = f["pose"]
    return lmk106, lmk68, pose


def run(cache_path: str | Path, out: str | Path, engine_factory=None, max_pixels: int = 250_000_000,
        progress: bool = False, worker: WorkerLandmarks | None = None) -> dict:
    """`worker`: the landmark models run in the profile's worker interpreter instead of `engine_factory`'s."""
    cache = FaceCache.load(cache_path)
    out = Path(out)
    keys = np.array(cache.face_keys(), dtype=str)
    n = len(keys)
    method = np.full(n, "kps5", dtype="U16")
    pose = pose_from_kps(cache.faces["kps"]) if n else np.zeros((0, 3), np.float32)
    arrays = {"key": keys, "pose": pose}
    engine = worker or (engine_factory() if engine_factory else None)
    if engine is not None and engine.has_landmarks and n:
        ledger = _load(out.parent / LEDGER)
        lmk106 = np.full((n, 106, 2), np.nan, np.float32)
        lmk68 = np.full((n, 68, 3), np.nan, np.float32)
        lpose = np.full((n, 3), np.nan, np.float32)
        todo = list(range(n))
        if ledger is not None and "landmark_2d_106" in ledger:
            where = {k: j for j, k in enumerate(ledger["key"].tolist())}
            hit = [(i, where[k]) for i, k in enumerate(keys.tolist()) if k in where]
            if hit:
                a, b = map(list, zip(*hit))
                lmk106[a], lmk68[a], lpose[a] = ledger["landmark_2d_106"][b], ledger["landmark_3d_68"][b], ledger["pose"][b]
            todo = sorted(set(range(n)) - set(a if hit else []))
        n106, n68, np3 = landmarks_for(cache, todo, engine, max_pixels, progress)
        lmk106[todo], lmk68[todo], lpose[todo] = n106[todo], n68[todo], np3[todo]
        ok = ~np.isnan(lpose).any(axis=1)
        pose[ok] = lpose[ok]
        method[ok] = "landmark_3d_68"
        arrays.update(landmark_2d_106=lmk106, landmark_3d_68=lmk68)
    arrays["pose"] = pose
    arrays["pose_method"] = method
    _save(out, arrays)
    if "landmark_2d_106" in arrays:
        _save(out.parent / LEDGER, arrays)
    stats = {"faces": n, "by_method": {m: int((method == m).sum()) for m in np.unique(method)} if n else {}}
    log.info("enrich: %s", stats)
    return stats


def load(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
