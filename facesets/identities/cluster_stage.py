"""cluster: raw agglomerative clustering of the whole cache into person_NNN / _singletons / _noface.

A re-run with the same threshold folds new faces into the existing persons (numbers and memberships
never change); a re-run with a different threshold re-clusters and keeps numbers by overlap.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from facesets.embed.cache import FaceCache
from facesets.identities import shared as ids
from facesets.identities.clustering import cluster_embeddings

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def _groups_from_labels(labels: np.ndarray, idx: list[int]) -> tuple[list[list[int]], list[int]]:
    by: dict[int, list[int]] = {}
    for i, lab in zip(idx, labels.tolist()):
        by.setdefault(lab, []).append(i)
    multi = [g for g in by.values() if len(g) > 1]
    single = [g[0] for g in by.values() if len(g) == 1]
    return multi, single


def cluster_cache(cache: FaceCache, threshold: float, extend_threshold: float, previous: dict | None,
                  progress: bool = False) -> tuple[dict[str, list[int]], list[int], int, str]:
    """Return (persons name -> face indices, singleton indices, next_number, mode)."""
    emb = cache.embeddings
    kidx = ids.key_index(cache)
    params_same = previous is not None and previous["params"]["threshold"] == threshold
    if params_same:
        persons = {n: [kidx[k] for k, _ in faces if k in kidx] for n, faces in previous["persons"].items()}
        seen = {k for faces in previous["persons"].values() for k, _ in faces}
        seen |= {k for k, _ in previous["singletons"]}
        new = [i for k, i in kidx.items() if k not in seen]
        added, left = ids.fold_in(emb, persons, new, extend_threshold)
        for n, faces in added.items():
            persons[n] += faces
        pool = [kidx[k] for k, _ in previous["singletons"] if k in kidx] + left
        labels = cluster_embeddings(emb[pool], threshold) if pool else np.zeros(0, int)
        multi, single = _groups_from_labels(labels, pool)
        keys = cache.face_keys()
        named, nxt = ids.number_groups([[keys[i] for i in g] for g in multi], {}, "person", previous["next_number"])
        for n, g in named.items():
            persons[n] = [kidx[k] for k in g]
        persons = {n: g for n, g in persons.items() if g}
        return dict(sorted(persons.items())), single, nxt, "extend"
    labels = cluster_embeddings(emb, threshold, progress=progress) if len(emb) else np.zeros(0, int)
    multi, single = _groups_from_labels(labels, list(range(len(emb))))
    keys = cache.face_keys()
    prev_groups = {n: [k for k, _ in f] for n, f in previous["persons"].items()} if previous else {}
    named, nxt = ids.number_groups([[keys[i] for i in g] for g in multi], prev_groups, "person",
                                   previous["next_number"] if previous else 1)
    return {n: [kidx[k] for k in g] for n, g in named.items()}, single, nxt, "recluster" if previous else "fresh"


def run(cache_path: str | Path, out_dir: str | Path, threshold: float, extend_threshold: float,
        link_mode: str = "hardlink", progress: bool = False) -> dict:
    out_dir = Path(out_dir)
    cache = FaceCache.load(cache_path)
    previous = ids.read_ledger(out_dir, kind="raw")
    persons, singles, nxt, mode = cluster_cache(cache, threshold, extend_threshold, previous, progress)
    params = {"threshold": threshold, "extend_threshold": extend_threshold}
    manifest = ids.header("raw", str(cache_path), params)
    noface = [f'{e["source"]}/{e["path"]}' for e in cache.files if e["status"] == "noface"]
    manifest.update({
        "mode": mode,
        "next_number": nxt,
        "persons": {n: ids.face_entries(cache, g) for n, g in persons.items()},
        "singletons": ids.face_entries(cache, sorted(singles)),
        "noface": noface,
        "stats": {"faces": len(cache), "persons": len(persons), "faces_in_persons": sum(map(len, persons.values())),
                  "singletons": len(singles), "noface_images": len(noface),
                  "skipped_files": sum(e["status"] == "skipped" for e in cache.files)},
    })
    ids.materialize(out_dir, manifest["persons"], cache, link_mode,
                    extra={"_singletons": [p for _, p in manifest["singletons"]], "_noface": noface}, prefix="person")
    ids.write_manifest(out_dir, MANIFEST, manifest, previous)
    log.info("cluster (%s): %s", mode, manifest["stats"])
    return manifest
