"""folders: identities asserted by hand-sorted folders, plus routing of mixed folders.

Per trusted folder (one person each): the identity centroid with two-pass outlier rejection (0.55,
then 0.45), so bystanders in group photos drop out. Every face of the mixed folders joins every
identity whose centroid is within `route_threshold`: a photo of several known people lands in several
facesets, and export crops only the matching face. Folder identities get faceset numbers after the
highest refine number, kept across runs, and carry their label (bundles and a <label>.txt marker).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from facesets.core import atomic
from facesets.embed.cache import FaceCache
from facesets.identities import shared as ids

log = logging.getLogger(__name__)
MANIFEST = "folders_manifest.json"


def faces_under(cache: FaceCache, folder: str) -> list[int]:
    root = os.path.realpath(folder).rstrip("/") + "/"
    out = []
    for i, p in enumerate(cache.face_path.tolist()):
        if os.path.realpath(cache.abs_path(p)).startswith(root):
            out.append(i)
    return out


def trusted_members(emb: np.ndarray, idx: list[int], thresholds: list[float]) -> tuple[list[int], list[tuple[int, float]]]:
    """Centroid of the folder, re-centred after each pass; faces beyond the pass's threshold drop out."""
    kept = list(idx)
    dropped = []
    for t in thresholds:
        if not kept:
            break
        c = ids.centroid(emb[kept])
        d = 1.0 - emb[idx] @ c
        alive = set(kept)
        now = [i for i, di in zip(idx, d) if di <= t and i in alive]
        alive = set(now)
        dropped = [(i, float(di)) for i, di in zip(idx, d) if i not in alive]
        kept = now
    return kept, dropped


def run(cache_path: str | Path, out_dir: str | Path, params: dict, refine_manifest: str | Path | None = None) -> dict:
    out_dir = Path(out_dir)
    cache = FaceCache.load(cache_path)
    emb = cache.embeddings
    keys = cache.face_keys()
    previous = ids.read_ledger(out_dir)
    numbers = dict((previous or {}).get("numbers", {}))
    start = 1
    if refine_manifest and Path(refine_manifest).is_file():
        start = atomic.read_json(refine_manifest).get("next_number", 1)
    nxt = max([start, *[n + 1 for n in numbers.values()]])
    facesets, report = {}, {}
    cents = {}
    for t in params["trusted"]:
        idx = faces_under(cache, t["path"])
        kept, dropped = trusted_members(emb, idx, params["outlier_thresholds"])
        if t["label"] not in numbers:
            numbers[t["label"]] = nxt
            nxt += 1
        name = f"faceset_{numbers[t['label']]:03d}"
        facesets[name] = {"label": t["label"], "folder": t["path"], "members": kept}
        report[name] = {"faces_in_folder": len(idx), "kept": len(kept),
                        "dropped": [[keys[i], str(cache.face_path[i]), round(d, 4)] for i, d in dropped]}
        if kept:
            cents[name] = ids.centroid(emb[kept])
    routed = 0
    for folder in params["mixed"]:
        idx = faces_under(cache, folder)
        if not idx or not cents:
            continue
        names = list(cents)
        dist = 1.0 - emb[idx] @ np.stack([cents[n] for n in names]).T
        for row, i in zip(dist, idx):
            for n, d in zip(names, row):
                if d <= params["route_threshold"] and i not in facesets[n]["members"]:
                    facesets[n]["members"].append(i)
                    routed += 1
    manifest = ids.header("folders", str(cache_path), {k: params[k] for k in ("outlier_thresholds", "route_threshold")})
    manifest["numbers"] = numbers
    manifest["next_number"] = nxt
    manifest["facesets"] = {n: {"label": fs["label"], "folder": fs["folder"], "faces": ids.face_entries(cache, fs["members"]),
                                "n_faces": len(fs["members"]), **report[n]} for n, fs in sorted(facesets.items())}
    manifest["stats"] = {"identities": len(facesets), "routed_from_mixed": routed}
    out_dir.mkdir(parents=True, exist_ok=True)
    ids.write_manifest(out_dir, MANIFEST, manifest)
    log.info("folders: %s", manifest["stats"])
    return manifest
