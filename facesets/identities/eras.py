"""eras: probe whether an identity sorts by age, split it into era facesets, extend the eras.

split (seed: age_split_001): seed centroid from the curated faceset -> wide recovery of faces within
`recover_threshold` across the cache -> quality gate -> one re-centroid and tighten at
`tighten_threshold` -> sub-clusters at `subcluster_threshold` (average linkage) -> sub-clusters of
>= `anchor_min` faces are anchors; a smaller fragment attaches to its single nearest anchor only if the
centroid distance <= `attach_threshold` AND its dominant EXIF year is within `attach_years` (no
transitive merging); unattached fragments stay standalone. Eras under `thin_below` faces are THIN.
extend: with unchanged parameters, new faces are slotted into existing eras by the same rule; anchors
are not re-centred.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from facesets.core import atomic
from facesets.embed.cache import FaceCache
from facesets.embed.exif_years import YearCache
from facesets.identities import shared as ids
from facesets.identities.clustering import cluster_embeddings

log = logging.getLogger(__name__)
MANIFEST = "eras_manifest.json"
PARAM_KEYS = ("recover_threshold", "tighten_threshold", "subcluster_threshold", "anchor_min", "attach_threshold",
              "attach_years", "thin_below", "min_short", "min_blur", "min_det_score")


def dominant_year(years: list[int | None]) -> int | None:
    known = [y for y in years if y is not None]
    return Counter(known).most_common(1)[0][0] if known else None


def era_label(years: list[int | None]) -> str:
    known = sorted(y for y in years if y is not None)
    if not known:
        return "nodate"
    a, b = known[0], known[-1]
    return str(a) if a == b else f"{a}-{b % 100:02d}" if a // 100 == b // 100 else f"{a}-{b}"


def _groups(labels: np.ndarray, idx: list[int]) -> list[list[int]]:
    by: dict[int, list[int]] = {}
    for i, lab in zip(idx, labels.tolist()):
        by.setdefault(lab, []).append(i)
    return sorted(by.values(), key=lambda g: (-len(g), g[0]))


def attach(fragments, anchors, emb, year_of, p) -> tuple[dict[int, list[int]], list[list[int]]]:
    """Each fragment joins its single nearest anchor when close enough in identity AND in time."""
    joined: dict[int, list[int]] = {a: [] for a in range(len(anchors))}
    alone = []
    if not anchors:
        return joined, list(fragments)
    cents = ids.centroids(emb, anchors)
    a_years = [dominant_year([year_of[i] for i in a]) for a in anchors]
    for frag in fragments:
        d = 1.0 - cents @ ids.centroid(emb[frag])
        best = int(d.argmin())
        fy = dominant_year([year_of[i] for i in frag])
        ok_time = fy is not None and a_years[best] is not None and abs(fy - a_years[best]) <= p["attach_years"]
        if d[best] <= p["attach_threshold"] and ok_time:
            joined[best] += frag
        else:
            alone.append(frag)
    return joined, alone


def probe(cache: FaceCache, members: list[int], year_of: dict[int, int | None], p: dict, thresholds: list[float]) -> dict:
    emb = cache.embeddings[members]
    d = 1.0 - emb @ emb.T
    iu = np.triu_indices(len(members), 1)
    hist, edges = np.histogram(d[iu], bins=np.linspace(0, 1.2, 25))
    sizes = {}
    for t in thresholds:
        labels = cluster_embeddings(emb, t, method="exact") if len(members) > 1 else np.zeros(len(members), int)
        sizes[f"{t:.2f}"] = [len(g) for g in _groups(labels, list(range(len(members))))]
    labels = cluster_embeddings(emb, p["subcluster_threshold"], method="exact") if len(members) > 1 else np.zeros(len(members), int)
    subs = []
    for g in _groups(labels, members):
        ys = [year_of[i] for i in g]
        subs.append({"size": len(g), "years": dict(sorted(Counter(str(y) if y else "no date" for y in ys).items())),
                     "dominant_year": dominant_year(ys)})
    anchors = [s for s in subs if s["size"] >= p["anchor_min"] and s["dominant_year"]]
    spread = (max(a["dominant_year"] for a in anchors) - min(a["dominant_year"] for a in anchors)) if len(anchors) > 1 else 0
    dated = sum(1 for i in members if year_of[i]) / max(len(members), 1)
    sortable = len(anchors) >= 2 and spread >= 3 and dated >= 0.5
    why = (f"{len(anchors)} anchors of >= {p['anchor_min']} faces at {p['subcluster_threshold']}, dominant years "
           f"{sorted(a['dominant_year'] for a in anchors)}, {dated:.0%} of faces dated")
    return {"faces": len(members), "distance_histogram": {"edges": [round(e, 3) for e in edges.tolist()],
                                                          "counts": hist.tolist()},
            "subcluster_sizes": sizes, "subclusters": subs, "dated_share": round(dated, 3),
            "age_sortable": sortable, "verdict": ("age-sortable: " if sortable else "not age-sortable: ") + why}


def split(cache: FaceCache, seed: list[int], year_of: dict[int, int | None], p: dict) -> dict:
    emb, f = cache.embeddings, cache.faces
    c0 = ids.centroid(emb[seed])
    d0 = 1.0 - emb @ c0
    wide = np.nonzero(d0 <= p["recover_threshold"])[0].tolist()
    gated = [i for i in wide if f["face_short"][i] >= p["min_short"] and f["blur"][i] >= p["min_blur"]
             and f["det_score"][i] >= p["min_det_score"]]
    c1 = ids.centroid(emb[gated]) if gated else c0
    tight = [i for i in gated if 1.0 - emb[i] @ c1 <= p["tighten_threshold"]]
    labels = cluster_embeddings(emb[tight], p["subcluster_threshold"], method="exact") if len(tight) > 1 \
        else np.zeros(len(tight), int)
    groups = _groups(labels, tight)
    anchors = [g for g in groups if len(g) >= p["anchor_min"]]
    fragments = [g for g in groups if len(g) < p["anchor_min"]]
    joined, alone = attach(fragments, anchors, emb, year_of, p)
    eras = [a + joined[k] for k, a in enumerate(anchors)] + alone
    return {"eras": eras, "stats": {"recovered": len(wide), "after_quality": len(gated), "after_tighten": len(tight),
                                    "subclusters": len(groups), "anchors": len(anchors),
                                    "attached_fragments": sum(1 for v in joined.values() for _ in [v] if v),
                                    "standalone_fragments": len(alone)}}


def run(cache_path: str | Path, out_dir: str | Path, parent_manifests: list[str | Path], identities: list[str],
        params: dict, probe_thresholds: list[float], year_cache: str | Path) -> dict:
    out_dir = Path(out_dir)
    p = {k: params[k] for k in PARAM_KEYS}
    cache = FaceCache.load(cache_path)
    kidx = ids.key_index(cache)
    parents = {}
    for m in parent_manifests:
        if Path(m).is_file():
            for name, fs in atomic.read_json(m).get("facesets", {}).items():
                parents[name] = [k for k, _ in fs["faces"]]
    yc = YearCache(year_cache)
    year_of: dict[int, int | None] = {}
    for i, path in enumerate(cache.face_path.tolist()):
        year_of[i] = yc.year(cache.abs_path(path))
    yc.save()
    previous = ids.read_ledger(out_dir)
    extend = previous is not None and previous.get("params") == p
    manifest = ids.header("eras", str(cache_path), p)
    manifest.update(facesets={}, thin_eras={}, probe={}, stats={})
    for ident in identities:
        if ident not in parents:
            manifest["stats"][ident] = {"error": "no such faceset in the identity manifests"}
            continue
        seed = [kidx[k] for k in parents[ident] if k in kidx]
        manifest["probe"][ident] = probe(cache, seed, year_of, p, probe_thresholds)
        if extend and any(v.get("parent") == ident for v in {**previous["facesets"], **previous["thin_eras"]}.values()):
            eras, stats = _extend(cache, kidx, previous, ident, year_of, p)
        else:
            res = split(cache, seed, year_of, p)
            eras, stats = {}, res["stats"]
            for g in res["eras"]:
                base = f"{ident}_{era_label([year_of[i] for i in g])}"
                name, n = base, 2
                while name in eras:
                    name, n = f"{base}_{n}", n + 1
                eras[name] = g
        manifest["stats"][ident] = dict(stats, eras=len(eras))
        for name, g in eras.items():
            ys = [year_of[i] for i in g]
            entry = {"parent": ident, "faces": ids.face_entries(cache, g), "n_faces": len(g),
                     "dominant_year": dominant_year(ys), "label": name[len(ident) + 1:],
                     "thin": len(g) < p["thin_below"]}
            manifest["thin_eras" if entry["thin"] else "facesets"][name] = entry
    manifest["exif_reads"] = yc.reads
    out_dir.mkdir(parents=True, exist_ok=True)
    ids.write_manifest(out_dir, MANIFEST, manifest)
    log.info("eras: %s (EXIF files read: %d)", manifest["stats"], yc.reads)
    return manifest


def _extend(cache, kidx, previous, ident, year_of, p):
    """New faces join existing eras by the anchor rule; era centroids are the existing members'."""
    emb = cache.embeddings
    old = {n: [kidx[k] for k, _ in e["faces"] if k in kidx]
           for n, e in {**previous["facesets"], **previous["thin_eras"]}.items() if e["parent"] == ident}
    seen = {k for e in {**previous["facesets"], **previous["thin_eras"]}.values() for k, _ in e["faces"]}
    parent_c = ids.centroid(emb[[i for g in old.values() for i in g]])
    new = [kidx[k] for k in cache.face_keys() if k not in seen and 1.0 - emb[kidx[k]] @ parent_c <= p["tighten_threshold"]]
    f = cache.faces
    new = [i for i in new if f["face_short"][i] >= p["min_short"] and f["blur"][i] >= p["min_blur"]
           and f["det_score"][i] >= p["min_det_score"]]
    names = [n for n, g in old.items() if g]
    cents = ids.centroids(emb, [old[n] for n in names])
    years = [dominant_year([year_of[i] for i in old[n]]) for n in names]
    added = 0
    for i in new:
        d = 1.0 - cents @ emb[i]
        b = int(d.argmin())
        y = year_of[i]
        if d[b] <= p["attach_threshold"] and y is not None and years[b] is not None and abs(y - years[b]) <= p["attach_years"]:
            old[names[b]].append(i)
            added += 1
    return old, {"mode": "extend", "new_faces": len(new), "slotted": added}
