"""embed's model part in the profile's worker interpreter (config workers.python).

The shard job keeps everything but the photos: it lists and triages the tree, stats each file to read, and
hands the worker the paths (mapped for its interpreter) and the content this store already has; the worker
reads each photo once (bytes -> sha256 -> decode, the same facesets.core.analysis code as in process) and
returns per file its sha256, a skip reason, or the image info and face rows. They are recorded here in file
order, exactly as the in-process path records its own results, so the store ends the same either way.
"""
from __future__ import annotations

import logging
import os

from facesets.core import analysis, workitems
from facesets.core.engine import BASE_MODULES

log = logging.getLogger(__name__)
WORKER_EMBED_KEYS = ("decode_long_side", "rec_min_face", "det_recheck_margin", "max_image_pixels", "io_threads")


def photo_of(rel: str, st: os.stat_result, result: dict) -> analysis.Photo:
    """The worker's result for one file as the in-process path would have it (a file it could not read has
    no stat, as in process)."""
    if result.get("error"):  # the worker caught something the in-process path would not have survived
        return analysis.Photo(rel, None, skip=f"face analysis failed: {result['error']}")
    rows = result.get("rows")
    return analysis.Photo(rel, st if result["sha256"] else None, sha=result["sha256"], skip=result.get("skip"),
                          info=result.get("info"),
                          rows={k: workitems.decode(v) for k, v in rows.items()} if rows is not None else None)


def embed_via_worker(run, todo: list[str], worker) -> None:
    """`run` is the embedder's _SourceRun (the store's state and the recorder); `worker` a worker Route."""
    ecfg = run.ecfg
    known_shas = set(run.known)
    stats: dict[str, os.stat_result | None] = {}
    skips: dict[str, str] = {}
    items = []
    for rel in todo:
        full = run.root / rel
        try:
            stats[rel] = os.stat(full)
        except OSError as exc:
            skips[rel] = analysis.io_skip(exc)
            continue
        items.append({"id": rel, "path": worker.map(full), "size": stats[rel].st_size,
                      "mtime_ns": stats[rel].st_mtime_ns})
    results = {}
    if items:
        settings = worker.settings(BASE_MODULES, ecfg["ort_threads"], embed={k: ecfg[k] for k in WORKER_EMBED_KEYS})
        results = worker.run(items, settings, known=sorted(known_shas))
    for rel in todo:  # in file order, as in process
        if rel in skips:
            r = analysis.Photo(rel, None, skip=skips[rel])
        else:
            r = photo_of(rel, stats[rel], results[rel])
            if r.sha and not r.skip and r.info is None and r.sha not in run.known:
                raise RuntimeError(f"the worker took {rel} for known content ({r.sha[:12]}) that this store lacks")
        run.take(r, known_shas)
