"""refine: initial clustering -> centroid merge -> quality gate -> outlier rejection -> size filter.

Every face the stages remove is accounted for in refine_manifest.json with the stage and the reason,
globally and per faceset. A re-run with unchanged thresholds folds new faces into the existing
facesets (numbers and memberships stay) and builds new facesets only from faces no faceset holds.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from facesets.embed.cache import FaceCache
from facesets.identities import shared as ids
from facesets.identities.clustering import cluster_embeddings
from facesets.review import membership

log = logging.getLogger(__name__)
MANIFEST = "refine_manifest.json"
PARAM_KEYS = ("initial_threshold", "merge_threshold", "min_short", "min_blur", "min_det_score",
              "outlier_threshold", "outlier_min_cluster", "min_faces")


def manifest_keys(manifest: dict) -> list[str]:
    """Every face key a refine manifest places or removes, once per mention (each face must appear once)."""
    keys = [k for fs in manifest["facesets"].values() for k, _ in fs["faces"]]
    keys += [k for stage in ("quality", "outlier", "decision") for k, _, _ in manifest["removed"].get(stage, [])]
    return keys + [k for g in manifest["removed"]["too_small"] for k, _ in g["faces"]]


def quality_reason(faces: dict, i: int, p: dict) -> str | None:
    if faces["face_short"][i] < p["min_short"]:
        return f"face_short {faces['face_short'][i]:.1f} < {p['min_short']}"
    if faces["blur"][i] < p["min_blur"]:
        return f"blur {faces['blur'][i]:.1f} < {p['min_blur']}"
    if faces["det_score"][i] < p["min_det_score"]:
        return f"det_score {faces['det_score'][i]:.3f} < {p['min_det_score']}"
    return None


def _merge_over_split(emb: np.ndarray, clusters: list[list[int]], threshold: float, apart=None) -> list[list[int]]:
    """Average-linkage clustering of cluster centroids: over-split pieces of one person re-join. `apart`
    (facesets.review.membership.apart) splits a merged group again where it joins two facesets the person
    called different."""
    if len(clusters) < 2 or threshold <= 0:
        return clusters
    labels = cluster_embeddings(ids.centroids(emb, clusters), threshold)
    merged: dict[int, list[list[int]]] = {}
    for lab, c in zip(labels.tolist(), clusters):
        merged.setdefault(lab, []).append(c)
    groups = [g for grp in merged.values() for g in (apart(emb, grp) if apart else [grp])]
    return [[i for c in grp for i in c] for grp in groups]


def _reject_outliers(emb: np.ndarray, members: list[int], p: dict) -> tuple[list[int], list[tuple[int, float]]]:
    if len(members) < p["outlier_min_cluster"]:
        return members, []
    c = ids.centroid(emb[members])
    dist = 1.0 - emb[members] @ c
    keep = [m for m, d in zip(members, dist) if d <= p["outlier_threshold"]]
    out = [(m, float(d)) for m, d in zip(members, dist) if d > p["outlier_threshold"]]
    return keep, out


def refine_pool(cache: FaceCache, pool: list[int], p: dict, progress: bool = False, apart=None) -> dict:
    """The refine stages on a pool of face indices. Returns clusters that pass and everything removed."""
    emb, faces = cache.embeddings, cache.faces
    stats = {"faces_in": len(pool)}
    if not pool:
        return {"kept": [], "quality": [], "outlier": [], "too_small": [], "stats": dict(stats, initial_clusters=0)}
    labels = cluster_embeddings(emb[pool], p["initial_threshold"], progress=progress)
    by: dict[int, list[int]] = {}
    for i, lab in zip(pool, labels.tolist()):
        by.setdefault(lab, []).append(i)
    clusters = list(by.values())
    stats["initial_clusters"] = len(clusters)
    clusters = _merge_over_split(emb, clusters, p["merge_threshold"], apart)
    stats["after_merge"] = len(clusters)
    quality, outliers, kept, too_small = [], [], [], []
    for members in clusters:
        good, gated = [], []
        for i in members:
            why = quality_reason(faces, i, p)
            (gated.append((i, why)) if why else good.append(i))
        quality += gated
        good, out = _reject_outliers(emb, good, p)
        outliers += out
        if not good:
            continue
        n_images = len({cache.face_path[i] for i in good})
        if n_images < p["min_faces"]:
            too_small.append(good)
        else:
            kept.append({"members": good, "quality": [i for i, _ in gated], "outlier": [i for i, _ in out]})
    stats.update(quality_removed=len(quality), outliers_removed=len(outliers),
                 too_small_clusters=len(too_small), too_small_faces=sum(map(len, too_small)))
    return {"kept": kept, "quality": quality, "outlier": outliers, "too_small": too_small, "stats": stats}


def run(cache_path: str | Path, out_dir: str | Path, params: dict, link_mode: str = "hardlink",
        progress: bool = False, decisions: dict | None = None, anchors: dict | None = None) -> dict:
    """`decisions`: the person's remove / assign / different (facesets.review.decisions.part "refine");
    `anchors`: face keys per faceset number, so that a fresh results folder numbers those facesets alike."""
    out_dir = Path(out_dir)
    p = {k: params[k] for k in PARAM_KEYS}
    cache = FaceCache.load(cache_path)
    keys = cache.face_keys()
    kidx = ids.key_index(cache)
    previous = ids.read_ledger(out_dir, kind="refine")
    emb = cache.embeddings
    decisions = decisions or {}
    known = membership.previous_groups(previous, anchors or {})
    apart = membership.apart({kidx[k]: n for n, ks in known.items() for k in ks if k in kidx},
                             decisions.get("different", []))

    facesets: dict[str, dict] = {}
    removed = {"quality": [], "outlier": [], "too_small": []}
    if previous is not None and previous["params"] == p:
        mode = "extend"
        nxt = previous["next_number"]
        facesets, removed, seen, too_small_before = _carry_over(previous, kidx)
        new = [kidx[k] for k in keys if k not in seen]
        if not new and len(manifest_keys(previous)) == len(keys) and previous["cache"] == str(cache_path):
            # nothing arrived and nothing left: the previous manifest is already this run's answer
            log.info("refine: no face arrived or left since the last run; manifest unchanged")
            return _publish(out_dir, previous, cache, link_mode, decisions)
        gated = []
        for i in new:
            why = quality_reason(cache.faces, i, p)
            (removed["quality"].append((i, why)) if why else gated.append(i))
        added, left = ids.fold_in(emb, {n: fs["members"] for n, fs in facesets.items()}, gated,
                                  params["extend_threshold"])
        for n, extra in added.items():
            facesets[n]["members"] += extra
            facesets[n]["added"] = len(extra)
        # faces no faceset holds (earlier too-small clusters + unplaced newcomers) may now form new facesets
        pool = too_small_before + left
        result = refine_pool(cache, pool, p, progress, apart)
        stats = dict(result["stats"], mode=mode, new_faces=len(new))
        prev_groups: dict[str, list[str]] = {}
    else:
        mode = "recluster" if previous else "fresh"
        nxt = max(previous["next_number"] if previous else 1, membership.next_number(known))
        result = refine_pool(cache, list(range(len(keys))), p, progress, apart)
        stats = dict(result["stats"], mode=mode)
        prev_groups = known  # the last run's facesets, or on a fresh folder the anchors
    removed["quality"] += [(i, why) for i, why in result["quality"]]
    removed["outlier"] += [(i, f"distance {d:.3f} > {p['outlier_threshold']}") for i, d in result["outlier"]]
    removed["too_small"] = result["too_small"]
    named, nxt = ids.number_groups([[keys[i] for i in c["members"]] for c in result["kept"]], prev_groups,
                                   "faceset", nxt)
    by_keys = {tuple(sorted(keys[i] for i in c["members"])): c for c in result["kept"]}
    for name, gkeys in named.items():
        c = by_keys[tuple(sorted(gkeys))]
        facesets[name] = {"members": c["members"], "added": 0,
                          "removed": {"quality_gate": len(c["quality"]), "outlier": len(c["outlier"])}}

    manifest = _manifest(cache, str(cache_path), p, nxt, facesets, removed, stats)
    log.info("refine (%s): %s", mode, stats)
    return _publish(out_dir, manifest, cache, link_mode, decisions)


def _publish(out_dir: Path, manifest: dict, cache: FaceCache, link_mode: str, decisions: dict) -> dict:
    """The manifest (and the faceset folders) with the person's decisions laid over the thresholds' facesets;
    the ledger keeps the thresholds' own, so a decision never steers the clustering it corrects."""
    final = membership.overlay(manifest, decisions)
    ids.materialize(out_dir, {n: fs["faces"] for n, fs in final["facesets"].items()}, cache, link_mode,
                    prefix="faceset")
    ids.write_manifest(out_dir, MANIFEST, final, ledger=manifest)
    return final


def _carry_over(previous: dict, kidx: dict[str, int]) -> tuple[dict, dict, set, list[int]]:
    """From the previous manifest (same params): its facesets and removals still in the cache, every key it
    mentions, and the faces of its too-small clusters (to pool again)."""
    facesets: dict[str, dict] = {}
    removed: dict[str, list] = {"quality": [], "outlier": [], "too_small": []}
    seen = set()
    for name, fs in previous["facesets"].items():
        members = [kidx[k] for k, _ in fs["faces"] if k in kidx]
        seen |= {k for k, _ in fs["faces"]}
        facesets[name] = {"members": members, "removed": dict(fs.get("removed", {})), "added": 0}
    for stage in ("quality", "outlier"):
        for k, _, why in previous["removed"][stage]:
            seen.add(k)
            if k in kidx:
                removed[stage].append((kidx[k], why))
    # earlier too-small clusters are re-pooled, so they are not new: counting them twice made
    # every re-run append them again
    too_small_before = [kidx[k] for grp in previous["removed"]["too_small"] for k, _ in grp["faces"] if k in kidx]
    seen |= {k for grp in previous["removed"]["too_small"] for k, _ in grp["faces"]}
    return facesets, removed, seen, too_small_before


def _manifest(cache: FaceCache, cache_path: str, p: dict, nxt: int, facesets: dict, removed: dict,
              stats: dict) -> dict:
    """refine_manifest.json: every faceset, every removed face with its stage and reason; `stats` is
    completed with the totals and whether every face is accounted for."""
    keys = cache.face_keys()
    manifest = ids.header("refine", cache_path, p)
    manifest["next_number"] = nxt
    manifest["facesets"] = {}
    for name in sorted(facesets):
        fs = facesets[name]
        entries = ids.face_entries(cache, fs["members"])
        manifest["facesets"][name] = {"faces": entries, "n_faces": len(entries),
                                      "n_images": len({p_ for _, p_ in entries}), "removed": fs["removed"]}
    manifest["removed"] = {
        "quality": [[keys[i], str(cache.face_path[i]), why] for i, why in removed["quality"]],
        "outlier": [[keys[i], str(cache.face_path[i]), why] for i, why in removed["outlier"]],
        "too_small": [{"faces": ids.face_entries(cache, g), "n_images": len({cache.face_path[i] for i in g})}
                      for g in removed["too_small"]],
    }
    placed = sum(fs["n_faces"] for fs in manifest["facesets"].values())
    stats.update(faces=len(keys), facesets=len(manifest["facesets"]), faces_in_facesets=placed,
                 quality_removed_total=len(removed["quality"]), outliers_removed_total=len(removed["outlier"]),
                 too_small_faces_total=sum(map(len, removed["too_small"])))
    stats["accounted"] = placed + stats["quality_removed_total"] + stats["outliers_removed_total"] + \
        stats["too_small_faces_total"] == len(keys)
    manifest["stats"] = stats
    return manifest
