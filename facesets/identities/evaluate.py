"""evaluate: score a raw clustering or a refine manifest against a labels file.

Faces are matched to labels by source path; in a labeled photo the largest face carries the label and
the other faces are left out. Metrics: pairwise and BCubed precision/recall/F, NMI, and how many true
identities were split across clusters / how many clusters merge several identities.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from facesets.core import atomic
from facesets.embed.cache import FaceCache
from facesets.identities.clustering import bcubed


def manifest_groups(manifest: dict) -> dict[str, list[list[str]]]:
    """Cluster name -> [key, path] entries, for either manifest kind (raw singletons are own clusters)."""
    if manifest.get("kind") == "raw":
        groups = dict(manifest["persons"])
        for j, entry in enumerate(manifest.get("singletons", [])):
            groups[f"_singleton_{j}"] = [entry]
        return groups
    return {name: fs["faces"] for name, fs in manifest["facesets"].items()}


def read_labels(path: str | Path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["path"]: r["identity"] for r in csv.DictReader(fh) if r.get("identity")}


def pairwise(pred: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
    c = contingency_matrix(true, pred, sparse=True)
    same_both = (c.data.astype(np.int64) * (c.data - 1) // 2).sum()
    pred_sizes = np.asarray(c.sum(axis=0)).ravel().astype(np.int64)
    true_sizes = np.asarray(c.sum(axis=1)).ravel().astype(np.int64)
    same_pred = (pred_sizes * (pred_sizes - 1) // 2).sum()
    same_true = (true_sizes * (true_sizes - 1) // 2).sum()
    p = same_both / same_pred if same_pred else 1.0
    r = same_both / same_true if same_true else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return float(p), float(r), float(f)


def score(pred: list[str], true: list[str]) -> dict:
    if not pred:
        return {"n_faces": 0}
    _, pred_i = np.unique(pred, return_inverse=True)
    _, true_i = np.unique(true, return_inverse=True)
    pp, pr, pf = pairwise(pred_i, true_i)
    bp, br, bf = bcubed(pred_i, true_i)
    c = contingency_matrix(true_i, pred_i)
    return {
        "n_faces": len(pred), "n_clusters": int(pred_i.max() + 1), "n_identities": int(true_i.max() + 1),
        "pairwise_precision": pp, "pairwise_recall": pr, "pairwise_f": pf,
        "bcubed_precision": bp, "bcubed_recall": br, "bcubed_f": bf,
        "nmi": float(normalized_mutual_info_score(true_i, pred_i)),
        "identities_split": int(((c > 0).sum(axis=1) > 1).sum()),
        "clusters_merged": int(((c > 0).sum(axis=0) > 1).sum()),
    }


def evaluate(manifest_path: str | Path, labels_path: str | Path, root: str | Path,
             cache_path: str | Path | None = None) -> dict:
    manifest = atomic.read_json(manifest_path)
    cache = FaceCache.load(cache_path or manifest["cache"])
    labels = read_labels(labels_path)
    root = os.path.realpath(root)
    # the largest face of each labeled photo carries the label
    area = (cache.faces["bbox"][:, 2] - cache.faces["bbox"][:, 0]) * (cache.faces["bbox"][:, 3] - cache.faces["bbox"][:, 1])
    largest: dict[str, str] = {}
    best: dict[str, float] = {}
    keys = cache.face_keys()
    for k, p, a in zip(keys, cache.face_path.tolist(), area.tolist()):
        if a > best.get(p, -1):
            best[p], largest[p] = a, k
    label_of_key = {}
    for p, k in largest.items():
        rel = os.path.relpath(os.path.realpath(cache.abs_path(p)), root)
        if not rel.startswith("..") and Path(rel).as_posix() in labels:
            label_of_key[k] = labels[Path(rel).as_posix()]
    pred, true = [], []
    for name, faces in manifest_groups(manifest).items():
        for k, _ in faces:
            if k in label_of_key:
                pred.append(name)
                true.append(label_of_key[k])
    out = score(pred, true)
    out["labeled_faces"] = len(label_of_key)
    out["coverage"] = len(pred) / len(label_of_key) if label_of_key else 0.0
    return out
