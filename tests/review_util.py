"""A synthetic results folder for the review page (its tests and benchmarks/bench_review.py): the manifests the
page reads and small real PNG crops; no photo, no cache."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from facesets.core.layout import Layout

QUALITY = {"frontality": 0.9, "det_score": 0.8, "landmark_symmetry": 0.7, "face_size": 0.6, "sharpness": 0.5}


def key(i: int, j: int) -> str:
    return f"{i:032x}{j:032x}:0"


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _png(path: Path, value: int, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), value % 256, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 3, (40, 80, (value * 7) % 256), -1)
    assert cv2.imwrite(str(path), img)


def synthetic_results(root: Path, n_facesets: int = 12, crops: int = 4, pngs: str = "all", size: int = 64,
                      hostile: str = "") -> Layout:
    """`n_facesets` exported facesets (faceset_001 the largest), every 5th named, some quarantined; `pngs`:
    "all" crops as PNG files, "best" only each faceset's rank-1 crop. `hostile` is put into every reason."""
    lay = Layout(root)
    summary, statuses = [], {"masked": [], "merged": [], "thin": [], "hidden": []}
    for i in range(1, n_facesets + 1):
        name = f"faceset_{i:03d}"
        n = max(1, crops + (n_facesets - i) // 3)
        members = []
        for j in range(n):
            crop = f"{name}/faces/{key(i, j)[:16]}_0.png"
            members.append({"key": key(i, j), "path": f"src/p{i}/img{j}.jpg", "crop": crop, "quality": QUALITY,
                            "composite": round(0.9 - j / (n + 1), 4), "rank": j + 1, "masked_bystanders": False})
            if pngs == "all" or j == 0:
                _png(lay.export / crop, 40 + i * 13 + j, size)
        label = f"person {i}" if i % 5 == 0 else None
        bundles = {"top30": f"{label or name}_top30.fsz", "all": f"{label or name}_all.fsz"}
        _json(lay.export / name / "manifest.json",
              {"faceset": name, **({"label": label} if label else {}), "top_n": 30, "bundles": bundles,
               "members": members, "in_top": [m["key"] for m in members[:30]],
               "excluded": [{"key": key(i, 999), "stage": "size", "reason": f"face_short 50 < 100{hostile}",
                             "path": f"src/p{i}/small.jpg"}]})
        summary.append({"name": name, **({"label": label} if label else {}), "n_members": n, "n_top": min(n, 30),
                        "bundles": bundles, "best": members[0]["crop"], "excluded": {"size": 1}})
        for q, every in (("masked", 7), ("merged", 11), ("thin", 13)):
            if i % every == 0:
                statuses[q].append({"name": name, "reason": f"{q}{hostile}", **({"into": "faceset_001"} if q == "merged" else {})})
                break
    _json(lay.export_manifest, {"kind": "swap_ready", "facesets": summary, "candidates": {},
                                "stats": {"facesets": n_facesets, "pngs": sum(s["n_members"] for s in summary)}})
    _json(lay.corpus_manifest, {"kind": "curated", "facesets": [], **statuses, "provenance": []})
    drop = {"action": "drop", "faceset": "faceset_001", "crop": f"{key(1, 1)[:16]}_0.png",
            "reason": f"near-duplicate of faceset_001/{key(1, 0)[:16]}_0.png{hostile}",
            "evidence": {"similarity": 0.97, "kept": f"{key(1, 0)[:16]}_0.png", "note": hostile}}
    merge = {"action": "merge", "faceset": "faceset_003", "into": "faceset_002", "reason": f"same identity{hostile}",
             "evidence": {"group": ["faceset_002", "faceset_003"], "centroid_similarity": 0.81}}
    for p in ("occlusion", "bytedup", "multiface"):
        _json(lay.plans / f"{p}.json", {"pass": p, "changes": [], "stats": {}})
    _json(lay.plans / "neardup.json", {"pass": "neardup", "changes": [drop], "stats": {"drop": 1}})
    _json(lay.plans / "consolidate.json", {"pass": "consolidate", "changes": [merge], "stats": {"merge": 1}})
    return lay


@contextlib.contextmanager
def run_lock_held(lay: Layout):
    """Another process holds the results folder's run lock (as a live pipeline run does) while the block runs;
    yields that process."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from facesets.core import runlock; runlock.hold(sys.argv[1], sys.argv[2]); "
        "print('held', flush=True); time.sleep(60)"), str(lay.results), str(lay.run_lock)], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()
