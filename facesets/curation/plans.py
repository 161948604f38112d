"""The curation passes. Each writes a plan -- every proposed change with its reason and evidence --
computed from the export (never from the live corpus), the cache and the plans before it, so the same
inputs and thresholds always give the same plan. `corpus.apply` carries plans out.

Order: occlusion -> consolidate -> bytedup -> neardup -> multiface.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from facesets.core.digests import sha256_file
from facesets.curation.state import Desired, Inventory, desired
from facesets.embed.cache import FaceCache
from facesets.identities import shared as ids
from facesets.identities.clustering import cluster_embeddings
from facesets.identities.neighbors import collapse_near_duplicates

ORDER = ("occlusion", "consolidate", "bytedup", "neardup", "multiface")


def _plan(name: str, params: dict, changes: list[dict], **extra) -> dict:
    kinds: dict[str, int] = {}
    for c in changes:
        kinds[c["action"]] = kinds.get(c["action"], 0) + 1
    return {"pass": name, "params": params, "changes": changes, "stats": kinds, **extra}


def _live(inv: Inventory, prior: Desired) -> list[str]:
    """Facesets still in play after the earlier plans (not quarantined, not merged away)."""
    return [f for f in inv.facesets if prior.location[f] == ""]


# ---------------------------------------------------------------- 1. occlusion (CLIP zero-shot)
def occlusion_domains(scores: dict, domains: list[str], image_threshold: float) -> tuple[str | None, float]:
    """The crop's dominant occlusion domain, if its probability exceeds the threshold."""
    best = max(domains, key=lambda d: scores.get(d, 0.0))
    p = scores.get(best, 0.0)
    return (best, p) if p > image_threshold else (None, p)


def plan_occlusion(inv: Inventory, results: dict | None, params: dict, skipped: str | None = None) -> dict:
    p = {k: params[k] for k in ("model", "pretrained", "image_threshold", "faceset_fraction")}
    if results is None:
        return _plan("occlusion", p, [], skipped=skipped or "no CLIP scores")
    domains = [d for d in params["prompts"] if d != "neutral"]
    changes = []
    for f, crops in inv.facesets.items():
        flagged = []
        for c in crops:
            s = results.get(f"{f}/faces/{c.name}")
            if s is None:
                continue
            dom, prob = occlusion_domains(s, domains, params["image_threshold"])
            if dom:
                flagged.append((c, dom, prob, s))
        if not crops:
            continue
        share = {d: sum(1 for x in flagged if x[1] == d) / len(crops) for d in domains}
        top = max(share, key=share.get) if share else None
        if top and share[top] >= params["faceset_fraction"]:
            changes.append({"action": "quarantine", "faceset": f, "to": "_masked",
                            "reason": f"{share[top]:.0%} of crops show {top} (>= {params['faceset_fraction']:.0%})",
                            "evidence": {"domain": top, "share": round(share[top], 4),
                                         "flagged": [x[0].name for x in flagged if x[1] == top]}})
            continue
        for c, dom, prob, s in flagged:
            changes.append({"action": "drop", "faceset": f, "crop": c.name,
                            "reason": f"{dom} {prob:.2f} > {params['image_threshold']}",
                            "evidence": {k: round(float(v), 4) for k, v in s.items() if isinstance(v, (int, float))}})
    return _plan("occlusion", p, changes)


# ---------------------------------------------------------------- 2. consolidation
def plan_consolidate(inv: Inventory, prior: Desired, cache: FaceCache, params: dict,
                     family_regex: str = r"^(faceset_\d+)(?:_.+)?$") -> dict:
    """Merge duplicate identities: complete linkage on faceset centroids, so every pair in a merged
    group is within the threshold (single linkage chains unrelated people together). Era splits of a
    faceset are the same person on purpose: only family heads take part."""
    kidx = ids.key_index(cache)
    names, groups = [], []
    for f in _live(inv, prior):
        if family_of(f, family_regex) != f:
            continue
        idx = [kidx[c.key] for c in prior.active(inv, f) if c.key in kidx]
        if idx:
            names.append(f)
            groups.append(idx)
    changes = []
    if len(names) > 1:
        cents = ids.centroids(cache.embeddings, groups)
        labels = cluster_embeddings(cents, params["threshold"], linkage="complete", method="exact")
        for lab in sorted(set(labels.tolist())):
            members = [i for i, l_ in enumerate(labels) if l_ == lab]
            if len(members) < 2:
                continue
            survivor = min(members, key=lambda i: (-len(groups[i]), names[i]))
            sims = cents[members] @ cents[members].T
            for i in members:
                if i != survivor:
                    changes.append({"action": "merge", "faceset": names[i], "into": names[survivor],
                                    "reason": f"same identity as {names[survivor]}",
                                    "evidence": {"centroid_similarity": round(float(cents[i] @ cents[survivor]), 4),
                                                 "group": [names[j] for j in members],
                                                 "min_pair_similarity": round(float(sims.min()), 4)}})
    return _plan("consolidate", {"threshold": params["threshold"], "linkage": "complete"}, changes)


# ---------------------------------------------------------------- 3. byte dedup across families
def family_of(name: str, regex: str) -> str:
    m = re.match(regex, name)
    return m.group(1) if m else name


def sha256_files(paths: list[Path], threads: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(sha256_file, paths))


def plan_bytedup(inv: Inventory, prior: Desired, export_dir: Path, params: dict) -> dict:
    """Byte-identical PNGs in different identity families: keep the copy in the higher tier -- first a
    copy the export itself made for that identity (its face is a member there), then the family with
    more active crops, then the lower name. Copies within a family (a parent and its era splits) are
    intentional and kept."""
    entries = []  # (faceset that owns the bundle, faceset folder, crop)
    for f in _live(inv, prior):
        for c in prior.members(inv, f):
            entries.append((f, c))
    hashes = sha256_files([export_dir / c.faceset / "faces" / c.name for _, c in entries], params["io_threads"])
    fam_size: dict[str, int] = {}
    for f, _ in entries:
        fam = family_of(f, params["family_regex"])
        fam_size[fam] = fam_size.get(fam, 0) + 1
    by_hash: dict[str, list[int]] = {}
    for i, h in enumerate(hashes):
        by_hash.setdefault(h, []).append(i)
    changes = []
    for h, idx in sorted(by_hash.items()):
        fams = {family_of(entries[i][0], params["family_regex"]) for i in idx}
        if len(fams) < 2:
            continue
        keep = min(idx, key=lambda i: (entries[i][1].key is None, -fam_size[family_of(entries[i][0], params["family_regex"])],
                                       family_of(entries[i][0], params["family_regex"]), entries[i][1].faceset))
        best = family_of(entries[keep][0], params["family_regex"])
        for i in idx:
            fam = family_of(entries[i][0], params["family_regex"])
            if fam != best:
                _, c = entries[i]
                changes.append({"action": "drop", "faceset": c.faceset, "crop": c.name,
                                "reason": f"byte-identical to {entries[keep][1].faceset}/{entries[keep][1].name}",
                                "evidence": {"sha256": h, "kept_family": best, "family": fam}})
    return _plan("bytedup", {"family_regex": params["family_regex"]}, changes)


# ---------------------------------------------------------------- 4. near-duplicates within a faceset
def plan_neardup(inv: Inventory, prior: Desired, cache: FaceCache, params: dict) -> dict:
    kidx = ids.key_index(cache)
    changes = []
    for f in _live(inv, prior):
        crops = [c for c in prior.members(inv, f) if c.key in kidx]
        if len(crops) < 2:
            continue
        emb = cache.embeddings[[kidx[c.key] for c in crops]]
        for d in collapse_near_duplicates(emb, params["similarity"], [c.composite for c in crops]):
            c, best = crops[d.index], crops[d.kept]
            changes.append({"action": "drop", "faceset": c.faceset, "crop": c.name,
                            "reason": f"near-duplicate of {best.faceset}/{best.name}",
                            "evidence": {"similarity": round(d.similarity, 4) if d.similarity is not None else None,
                                         "kept": best.name, "group_size": d.group_size,
                                         "composite": c.composite, "kept_composite": best.composite}})
    return _plan("neardup", {"similarity": params["similarity"]}, changes)


# ---------------------------------------------------------------- 5. multi-face audit
def plan_multiface(inv: Inventory, prior: Desired, results: dict, params: dict) -> dict:
    """Re-detection counts per crop (faces with det_score >= min_det_score and short side >= min_face_short);
    anything but exactly one face is dropped: roop would average a bystander in, or find nothing."""
    changes = []
    for f in _live(inv, prior):
        for c in prior.members(inv, f):
            r = results.get(f"{c.faceset}/faces/{c.name}")
            if r is None:
                continue
            faces = [x for x in r.get("faces", []) if x["det_score"] >= params["min_det_score"]
                     and x["short"] >= params["min_face_short"]]
            if len(faces) != 1:
                changes.append({"action": "drop", "faceset": c.faceset, "crop": c.name,
                                "reason": f"{len(faces)} faces re-detected",
                                "evidence": {"face_count": len(faces), "faces": faces}})
    return _plan("multiface", {k: params[k] for k in ("min_det_score", "min_face_short")}, changes)


def make(name: str, inv: Inventory, prior: Desired, export_dir: str | Path, cache: FaceCache | None, cur: dict,
         results: dict | None = None, skipped: str | None = None) -> dict:
    """One pass's plan (the `curation` config section `cur`; `results`: the worker's scores for occlusion and
    multiface; `skipped`: why occlusion has none)."""
    if name == "occlusion":
        return plan_occlusion(inv, results, cur["occlusion"], skipped=skipped)
    if name == "consolidate":
        return plan_consolidate(inv, prior, cache, cur["consolidate"], cur["bytedup"]["family_regex"])
    if name == "bytedup":
        return plan_bytedup(inv, prior, Path(export_dir), cur["bytedup"])
    if name == "neardup":
        return plan_neardup(inv, prior, cache, cur["neardup"])
    return plan_multiface(inv, prior, results or {}, cur["multiface"])


def prior_state(inv: Inventory, plans: list[dict]) -> Desired:
    return desired(inv, plans)
