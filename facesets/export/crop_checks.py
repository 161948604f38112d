"""export_crops' one-face check, in process or in the profile's worker interpreter (config workers.python).

The exporter frames and renders every crop here; what differs is who re-detects it:
- LocalChecks: the engine in this process, crop by crop (crops.make_crop), as always;
- WorkerChecks: each crop (and, when someone else is in frame, its bystander-masked variant) is written as a
  PNG to the stage's work folder, the worker runs the same crops.checked on every one of them, and a crop
  that passes is renamed into place -- the very bytes the in-process path writes (PNG is lossless, so the
  worker checks exactly the pixels the crop holds).
Both fill in each crop's ledger entry (problem, masked); finish() is called before the ledger is written.
Both read and fill the detection store (facesets.export.verdicts): WorkerChecks settles every crop whose
detections are stored on this side and hands the worker only the rest, whose detections come back and are
stored. submit() is called from several threads.
"""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from facesets.core import atomic
from facesets.core.recorded import pixels_digest
from facesets.export import crops
from facesets.export.verdicts import UNSETTLED, settled, store_only


def _png(img: np.ndarray) -> bytes:
    _, buf = cv2.imencode(".png", img)
    return buf.tobytes()


class LocalChecks:
    def __init__(self, engine_factory, p: dict, checks):
        self.engine = engine_factory() if engine_factory else None
        self.p, self.checks = p, checks

    def submit(self, entry: dict, png: Path, bgr: np.ndarray, bbox: np.ndarray, others: list[np.ndarray]) -> None:
        _take(entry, png, crops.make_crop(self.engine, bgr, bbox, others, self.p["pad_ratio"], self.p["out_size"],
                                          self.checks))

    def finish(self) -> None:
        pass


def _take(entry: dict, png: Path, made: tuple) -> None:
    """A crop's verdict (make_crop's crop, problem, masked) into its ledger entry, and the crop written if it passed."""
    crop, problem, masked = made
    if crop is None:
        entry["problem"] = f"one-face check: {problem}"
    else:
        atomic.write_bytes(png, _png(crop))
        entry["masked"] = masked


class WorkerChecks:
    def __init__(self, worker, out_dir: Path, p: dict, checks, store=None):
        self.worker, self.out_dir, self.p, self.checks, self.store = worker, Path(out_dir), p, checks, store
        self.known = store_only(store) if store is not None else None
        self.staged = worker.work_dir / "staged"
        self.items: list[dict] = []
        self.pending: dict[str, tuple[dict, Path, Path, Path | None]] = {}
        self._lock = threading.Lock()

    def submit(self, entry: dict, png: Path, bgr: np.ndarray, bbox: np.ndarray, others: list[np.ndarray]) -> None:
        if self.known is not None:  # every detection it needs is stored: settled here, the worker never sees it
            made = settled(crops.make_crop, self.known, bgr, bbox, others, self.p["pad_ratio"], self.p["out_size"],
                           self.checks)
            if made is not UNSETTLED:
                _take(entry, png, made)
                return
        crop, target, near, frame = crops.framed(bgr, bbox, others, self.p["pad_ratio"], self.p["out_size"])
        rel = str(png.relative_to(self.out_dir))
        stem = self.staged / hashlib.sha1(os.fsencode(rel)).hexdigest()[:20]
        plain, masked = stem.with_suffix(".png"), (stem.with_suffix(".masked.png") if near else None)
        images = [crop]
        atomic.write_bytes(plain, _png(crop))
        if masked is not None:
            images.append(crops.render(bgr, frame, self.p["out_size"], near))
            atomic.write_bytes(masked, _png(images[-1]))
        # what the store holds of a partly checked crop goes along: the worker detects only the rest
        known = self.store.known([pixels_digest(i) for i in images], self.checks) if self.store is not None else {}
        with self._lock:
            self.items.append({"id": rel, "sig": entry["sig"], "path": self.worker.map(plain),
                               "masked": self.worker.map(masked) if masked else None,
                               "target": [float(x) for x in target], **({"known": known} if known else {})})
            self.pending[rel] = (entry, png, plain, masked)

    def finish(self) -> None:
        if not self.items:
            return
        items = sorted(self.items, key=lambda it: it["id"])  # the same queue whatever order the threads ran in
        results = self.worker.run(items, self.worker.settings(("detection",), checks=self.checks), clean=False)
        if self.store is not None:
            self.store.put_recorded([d for r in results.values() for d in r.get("detections", [])])
        for rel, (entry, png, plain, masked) in sorted(self.pending.items()):
            r = results[rel]
            problem = r.get("problem") or r.get("error")
            if problem:
                entry["problem"] = f"one-face check: {problem}"
                continue
            png.parent.mkdir(parents=True, exist_ok=True)
            os.replace(masked if r["masked"] else plain, png)  # the staged file, already written atomically
            entry["masked"] = bool(r["masked"])
        self.worker.clean()


def checker(worker, out_dir: Path, engine_factory, p: dict, checks, store=None):
    """WorkerChecks where a worker route is given, else LocalChecks (whose engine is built only if needed:
    pass engine_factory=None when there is nothing to check; with a store it is a StoredEngine already)."""
    if worker is not None:
        return WorkerChecks(worker, out_dir, p, checks, store)
    return LocalChecks(engine_factory, p, checks)
