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


def labeled_faces(cache: FaceCache, labels: dict[str, str], root: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(face key -> identity, face key -> photo path) for every labeled photo under `root`: its largest
    face carries the label. A labeled photo with no cached face is keyed `path:<source>/<path>`, so the
    loss table can say why (no face, unreadable)."""
    root = os.path.realpath(root)
    area = (cache.faces["bbox"][:, 2] - cache.faces["bbox"][:, 0]) * (cache.faces["bbox"][:, 3] - cache.faces["bbox"][:, 1])
    largest: dict[str, str] = {}
    best: dict[str, float] = {}
    for k, p, a in zip(cache.face_keys(), cache.face_path.tolist(), area.tolist()):
        if a > best.get(p, -1):
            best[p], largest[p] = a, k
    label_of, path_of = {}, {}
    for e in cache.files:
        p = f"{e['source']}/{e['path']}"
        rel = os.path.relpath(os.path.realpath(cache.abs_path(p)), root)
        rel = Path(rel).as_posix()
        if rel.startswith("..") or rel not in labels:
            continue
        k = largest.get(e["alias_of"] if e["status"] == "alias" else p, f"path:{p}")
        label_of[k], path_of[k] = labels[rel], p
    return label_of, path_of


def _gated(cache: FaceCache, keys: list[str], gates: dict) -> list[str]:
    """The keys whose face passes refine's quality gates (the faces a faceset can be expected to hold)."""
    idx = {k: i for i, k in enumerate(cache.face_keys())}
    f = cache.faces
    return [k for k in keys if k in idx and f["face_short"][idx[k]] >= gates["min_short"]
            and f["blur"][idx[k]] >= gates["min_blur"] and f["det_score"][idx[k]] >= gates["min_det_score"]]


def evaluate_stage(results: str | Path, stage: str, labels_path: str | Path, root: str | Path,
                   cache_path: str | Path | None = None) -> dict:
    """Score one stage of a results folder (raw, refine, export or final: the curated corpus's bundles)
    against a labels CSV, with the loss table: every labeled face in no final faceset, the stage that let it
    go and why (for stages before the final one the table still describes the final outcome)."""
    from facesets.core.layout import Layout
    from facesets.curation import outcome

    layout = Layout(results)
    cache = FaceCache.load(cache_path or layout.cache)
    label_of, path_of = labeled_faces(cache, read_labels(labels_path), root)
    pred, true = [], []
    by_identity: dict[str, dict] = {}
    groups = outcome.membership(layout, stage)
    for name, keys in groups.items():
        for k in keys:
            if k in label_of:
                pred.append(name)
                true.append(label_of[k])
                by_identity.setdefault(label_of[k], {}).setdefault(name, 0)
                by_identity[label_of[k]][name] += 1
    out = {"stage": stage, **score(pred, true)}
    placed = {k for ks in groups.values() for k in ks}
    out["labeled_faces"] = len(label_of)
    out["coverage"] = sum(k in placed for k in label_of) / len(label_of) if label_of else 0.0
    gates = {k: (atomic.read_json(layout.refine_manifest)["params"][k] if layout.refine_manifest.is_file() else 0)
             for k in ("min_short", "min_blur", "min_det_score")}
    gated = _gated(cache, list(label_of), gates)
    out["quality_gates"] = gates
    out["coverage_of_gated"] = sum(k in placed for k in gated) / len(gated) if gated else 0.0
    out["per_identity"] = {i: {"faces": sum(t == i for t in label_of.values()), "facesets": dict(sorted(g.items()))}
                           for i, g in sorted(by_identity.items())}
    lost = outcome.loss(layout, path_of, cache)
    for row in lost:
        row["identity"] = label_of[row["key"]]
    out["loss"] = lost
    summary: dict[str, int] = {}
    for row in lost:
        summary[row["stage"]] = summary.get(row["stage"], 0) + 1
    out["loss_summary"] = dict(sorted(summary.items(), key=lambda kv: -kv[1]))
    return out


def stage_of_manifest(manifest: dict) -> str:
    return {"raw": "raw", "refine": "refine", "swap_ready": "export", "curated": "final"}.get(manifest.get("kind"), "")


def evaluate(manifest_path: str | Path, labels_path: str | Path, root: str | Path,
             cache_path: str | Path | None = None) -> dict:
    """Score a manifest of any stage. Raw and refine manifests may live anywhere (they name their cache);
    an export or corpus manifest is scored within its results folder."""
    manifest = atomic.read_json(manifest_path)
    stage = stage_of_manifest(manifest)
    if stage in ("export", "final"):
        return evaluate_stage(Path(manifest_path).resolve().parents[1], stage, labels_path, root, cache_path)
    cache = FaceCache.load(cache_path or manifest["cache"])
    label_of, _ = labeled_faces(cache, read_labels(labels_path), root)
    label_of = {k: v for k, v in label_of.items() if not k.startswith("path:")}
    pred, true = [], []
    for name, faces in manifest_groups(manifest).items():
        for k, _ in faces:
            if k in label_of:
                pred.append(name)
                true.append(label_of[k])
    out = score(pred, true)
    out["labeled_faces"] = len(label_of)
    out["coverage"] = len(pred) / len(label_of) if label_of else 0.0
    return out
