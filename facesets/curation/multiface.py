"""The multi-face audit's scores: every exported crop's faces at (model.det_size, the audit's detector floor).

That setting is one of the `verify.checks` by default ([640, 0.3]), so the detection store
(facesets.export.verdicts) already holds it for every crop the export checked: the audit reads it and runs
no model. A crop the store does not know is detected once, in process or, where a profile names a worker
interpreter, by the face worker's `detect` task, whose detections are stored like the export's.
"""
from __future__ import annotations

import logging
import sys
from contextlib import closing
from pathlib import Path

from facesets.core import atomic
from facesets.core.analysis import in_order
from facesets.core.worker_route import route
from facesets.core.workitems import read_png
from facesets.export.verdicts import UNSETTLED, StoredEngine, settled, store_only

log = logging.getLogger(__name__)


def faces_of(det) -> list[dict]:
    """What the plan reads per face: detector score and the short side of its box (crop pixels)."""
    return [{"det_score": round(float(s), 4), "short": round(float(min(b[2] - b[0], b[3] - b[1])), 1)}
            for b, s in zip(det.bboxes.tolist(), det.scores.tolist())]


def audit(queue_path: str | Path, results_path: str | Path, cfg: dict, store, engine_factory, threads: int = 1) -> dict:
    """Writes the results file the multi-face plan reads: {"results": {crop id: {"faces": [...]}}}, with how
    many detections ran now and how many were read from the store."""
    queue = atomic.read_json(queue_path)
    s, export = queue["settings"], Path(queue["export"])
    size, thresh = int(s["det_size"]), float(s["det_thresh"])
    known = store_only(store)

    def from_store(item: dict) -> tuple[dict, object]:
        img = read_png(str(export / item["id"]))
        if img is None:
            return item, {"error": "unreadable", "faces": []}
        det = settled(known.detect, img, size, thresh)
        return item, (det if det is UNSETTLED else {"faces": faces_of(det)})

    results, misses = {}, []
    with closing(in_order(from_store, queue["items"], threads, 2 * max(1, threads))) as done:
        for item, res in done:
            if res is UNSETTLED:
                misses.append(item)
            else:
                results[item["id"]] = res
    reused = sum("error" not in r for r in results.values())
    ran_by, errors = _detect(misses, export, Path(results_path).parent, cfg, store, engine_factory, size, thresh,
                             threads) if misses else (None, {})
    for item in misses:
        img = read_png(str(export / item["id"]))
        det = settled(known.detect, img, size, thresh) if img is not None else UNSETTLED
        why = errors.get(item["id"]) or "unreadable"
        results[item["id"]] = {"faces": faces_of(det)} if det is not UNSETTLED else {"error": why, "faces": []}
    out = {"worker": "multiface", "python": ran_by, "settings": s, "results": dict(sorted(results.items())),
           "detections": {"detector_runs": store.runs, "detections_reused": reused}}
    atomic.write_json(results_path, out)
    log.info("multi-face audit: %d crops, %d read from the detection store, %d detected now (%s)",
             len(queue["items"]), reused, len(misses), ran_by or "nothing ran")
    return out


def _detect(misses: list[dict], export: Path, folder: Path, cfg: dict, store, engine_factory, size: int,
            thresh: float, threads: int) -> tuple[str, dict[str, str]]:
    """Detect the crops the store does not know, storing what is found; returns the interpreter that ran them
    and the worker's reason for each crop it could not detect."""
    worker = route(cfg, "detect", folder)
    if worker is not None:
        items = [{"id": it["id"], "path": worker.map(export / it["id"])} for it in misses]
        res = worker.run(items, worker.settings(("detection",), checks=[[size, thresh]]))
        store.put_recorded([d for r in res.values() for d in r.get("detections", [])])
        return worker.python, {i: r["error"] for i, r in res.items() if r.get("error")}
    engine = StoredEngine(engine_factory, store)

    def one(item: dict) -> None:
        img = read_png(str(export / item["id"]))
        if img is not None:
            engine.detect(img, det_size=size, det_thresh=thresh)

    with closing(in_order(one, misses, threads, 2 * max(1, threads))) as done:
        for _ in done:
            pass
    return sys.executable, {}
