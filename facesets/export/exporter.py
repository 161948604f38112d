"""export-swap: per identity, the crops and `.fsz` bundles that roop-unleashed loads.

Two steps, so that changing `top_n` rewrites only bundles and manifests:
- crops (`export_crops`): tight outlier gate -> export size gate -> composite quality rank -> collapse
  of near-duplicate shots -> one roop-framed PNG per face, cut from the source and kept only if
  re-detection finds exactly that one face. Writes `crops.json`. A crop whose inputs did not change
  is not rendered again. A JPEG whose crop frames are all >= 2x out_size is decoded by libjpeg's DCT
  scaling (as small as keeps every frame >= out_size): the crops are still only ever shrunk, at a
  fraction of the decode time.
- bundles (`export_bundles`): `<faceset>_top<N>.fsz`, `<faceset>_all.fsz`, the per-faceset
  `manifest.json` and the canonical `manifest.json`. A bundle whose content did not change is not rewritten.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from contextlib import closing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesets import __version__
from facesets.core import atomic
from facesets.core.analysis import in_order
from facesets.embed.cache import FaceCache
from facesets.export import crop_checks, quality
from facesets.export.crops import dct_reduction
from facesets.export.decode import Source, decoded, read_source
from facesets.export.fsz import write_fsz
from facesets.export.partial import partial_reason
from facesets.identities import shared as ids
from facesets.identities.neighbors import collapse_near_duplicates

log = logging.getLogger(__name__)
CROPS_INDEX = "crops.json"
CROPS_LEDGER = ".crops_ledger.json"
BUNDLES_LEDGER = ".bundles_ledger.json"
MANIFEST = "manifest.json"
CROP_KEYS = ("outlier_threshold", "min_face_short", "min_visible_fraction", "burst_similarity", "pad_ratio",
             "out_size", "candidates", "candidate_match_threshold", "candidate_min_score", "weights")


def crop_name(key: str) -> str:
    sha, idx = key.split(":")
    return f"{sha[:16]}_{idx}.png"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load_pose(cache: FaceCache, enrich_path: str | Path | None) -> np.ndarray:
    from facesets.identities.pose import pose_from_kps

    pose = pose_from_kps(cache.faces["kps"]) if len(cache) else np.zeros((0, 3), np.float32)
    if enrich_path and Path(enrich_path).is_file():
        from facesets.identities.enrich import load

        side = load(enrich_path)
        where = {k: i for i, k in enumerate(side["key"].tolist())}
        for i, k in enumerate(cache.face_keys()):
            j = where.get(k)
            if j is not None and np.isfinite(side["pose"][j]).all():
                pose[i] = side["pose"][j]
    return pose


def select(cache: FaceCache, idx: list[int], comp: np.ndarray, p: dict, trusted: frozenset[int] = frozenset()
           ) -> tuple[list[int], list[dict]]:
    """Gates and near-duplicate collapse for one identity; returns (ranked survivors, exclusions). `trusted`
    faces (the person assigned them to this identity) skip the identity gate: their word outranks it."""
    emb = cache.embeddings
    keys = cache.face_keys()
    excluded = []
    if not idx:
        return [], excluded
    c = ids.centroid(emb[idx])
    dist = 1.0 - emb[idx] @ c
    kept = []
    sizes = cache.image_sizes
    for i, d in zip(idx, dist.tolist()):
        partial = partial_reason(cache.faces["bbox"][i], cache.faces["kps"][i], *sizes.get(cache.face_path[i], (0, 0)),
                                 p["min_visible_fraction"])
        if d > p["outlier_threshold"] and i not in trusted:
            excluded.append({"key": keys[i], "stage": "outlier", "reason": f"distance {d:.3f} > {p['outlier_threshold']}"})
        elif cache.faces["face_short"][i] < p["min_face_short"]:
            excluded.append({"key": keys[i], "stage": "size",
                             "reason": f"face_short {cache.faces['face_short'][i]:.1f} < {p['min_face_short']}"})
        elif partial:
            excluded.append({"key": keys[i], "stage": "partial", "reason": partial})
        else:
            kept.append(i)
    if len(kept) > 1:
        dups = collapse_near_duplicates(emb[kept], p["burst_similarity"], comp[kept])
        for d in dups:
            best, s = kept[d.kept], d.similarity
            excluded.append({"key": keys[kept[d.index]], "stage": "near_duplicate",
                             "reason": f"near-duplicate of {cache.face_path[best]} ({keys[best][:12]})" +
                                       (f" (similarity {s:.3f})" if s is not None else " (same group)")})
        drop = {d.index for d in dups}
        kept = [k for j, k in enumerate(kept) if j not in drop]
    kept.sort(key=lambda i: (-comp[i], keys[i]))
    return kept, excluded


def _sig(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def export_crops(cache_path: str | Path, identities: dict[str, list[str]], out_dir: str | Path, params: dict,
                 checks: list[list[float]], engine_factory, enrich_path=None, singletons: list[str] | None = None,
                 max_pixels: int = 250_000_000, threads: int = 3, progress: bool = False,
                 meta: dict[str, dict] | None = None, reduced_decode: bool = True, extra: dict | None = None,
                 worker=None, store=None, reuse: Path | None = None) -> dict:
    """`meta` per identity (optional): bundle_prefix (bundles named after a label instead of the
    faceset), markers ({file name: text} written beside the bundles), thin (writes THIN.txt), hidden (the
    person hid it: no bundles), assigned (face keys the person put there: past the identity gate).
    `extra` is added to crops.json (the decisions applied here).
    `reduced_decode=False` decodes every photo at full size (the reference the reduced decode is
    measured and tested against). `worker` (a facesets.core.worker_route.Route): the one-face checks run in
    the profile's worker interpreter (facesets.export.crop_checks), which fill `store` (the detection store).
    `threads` photos are decoded, cut and checked at once; the output does not depend on it. `reuse` (another
    export folder, e.g. the pipeline's for a sweep point): a crop it made with the same signature is hard-linked
    in with its verdict instead of being rendered again."""
    out_dir = Path(out_dir)
    atomic.sweep_temps(out_dir)  # a killed earlier run's half-written crops or bundles
    p = {k: params[k] for k in CROP_KEYS}
    cache = FaceCache.load(cache_path)
    f = cache.faces
    t = quality.terms(load_pose(cache, enrich_path), f["det_score"], f["kps"], f["face_short"], f["blur"])
    comp = quality.composite(t, p["weights"])
    plan = _plan(cache, identities, comp, p, meta)
    candidates = _candidates(cache, plan, singletons or [], comp, p) if p["candidates"] else {}

    ledger_path = out_dir / CROPS_LEDGER
    ledger = atomic.read_json(ledger_path) if ledger_path.is_file() else {}
    results, todo = _still_valid(cache, _crop_jobs(cache, plan, candidates, out_dir), ledger, out_dir, p, checks, reuse)
    checker = crop_checks.checker(worker, out_dir, engine_factory if todo else None, p, checks, store)
    renderer = _Renderer(cache, checker, p, checks, max_pixels, reduced_decode)
    bar = tqdm(total=sum(len(n) for _, n in todo), desc="export crops", unit="crop", disable=not progress)
    # each thread decodes one photo and cuts and checks its crops; results come back in photo order
    with closing(in_order(renderer.photo, todo, threads, 2 * max(1, threads))) as done:
        for made in done:
            for name, i, png, entry in made:
                results[(name, i)] = ledger[str(png.relative_to(out_dir))] = entry
            bar.update(len(made))
    bar.close()
    checker.finish()  # the worker's verdicts, where the checks ran there
    atomic.write_json(ledger_path, ledger)

    index = _crops_index(cache, cache_path, plan, candidates, results, t, comp, p, checks, meta)
    index.update(extra or {})
    atomic.write_json(out_dir / CROPS_INDEX, index)
    stats = {n: len(v["members"]) for n, v in index["facesets"].items()}
    log.info("export crops: %d facesets, %d crops, %d rendered now", len(stats), sum(stats.values()),
             sum(len(n) for _, n in todo))
    return index


def _plan(cache: FaceCache, identities: dict[str, list[str]], comp: np.ndarray, p: dict,
          meta: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per identity: its ranked survivors and what was excluded, and why."""
    kidx = ids.key_index(cache)
    plan: dict[str, dict] = {}
    for name, members in identities.items():
        idx = [kidx[k] for k in members if k in kidx]
        missing = [k for k in members if k not in kidx]
        trusted = frozenset(kidx[k] for k in (meta or {}).get(name, {}).get("assigned", []) if k in kidx)
        ranked, excluded = select(cache, idx, comp, p, trusted)
        excluded += [{"key": k, "stage": "missing", "reason": "face no longer in the cache"} for k in missing]
        plan[name] = {"ranked": ranked, "excluded": excluded}
    return plan


def _crop_jobs(cache: FaceCache, plan: dict, candidates: dict, out_dir: Path) -> dict[str, list[tuple[str, int, Path]]]:
    """Every crop to make, grouped by photo so each photo is decoded once."""
    keys = cache.face_keys()
    jobs: dict[str, list[tuple[str, int, Path]]] = {}
    for name, pl in plan.items():
        for i in pl["ranked"]:
            jobs.setdefault(str(cache.face_path[i]), []).append((name, i, out_dir / name / "faces" / crop_name(keys[i])))
    for name, cands in candidates.items():
        for i, _ in cands:
            jobs.setdefault(str(cache.face_path[i]), []).append(
                (f"_candidates/{name}", i, out_dir / "_candidates" / name / crop_name(keys[i])))
    return jobs


def _still_valid(cache: FaceCache, jobs: dict, ledger: dict, out_dir: Path, p: dict, checks,
                 reuse: Path | None = None) -> tuple[dict, list]:
    """The ledger's results for crops whose inputs did not change (or, from the `reuse` export, the same crop of
    the same face, hard-linked in), and per photo the crops to render."""
    keys, bbox = cache.face_keys(), cache.faces["bbox"]
    crop_params = {k: p[k] for k in ("pad_ratio", "out_size")}
    other = _reusable(reuse)
    results: dict[tuple[str, int], dict] = {}
    todo = []
    for path, items in jobs.items():
        need = []
        for name, i, png in items:
            sig = _sig([crop_params, checks, keys[i], bbox[i].tolist()])
            rel = str(png.relative_to(out_dir))
            old = ledger.get(rel)
            if old and old["sig"] == sig and (old["problem"] or png.is_file()):
                results[(name, i)] = old
            elif png.name in other and other[png.name][0]["sig"] == sig and _linked(*other[png.name], png):
                results[(name, i)] = ledger[rel] = dict(other[png.name][0])
            else:
                need.append((name, i, png, sig))
        if need:
            todo.append((path, need))
    return results, todo


def _reusable(export: Path | None) -> dict[str, tuple[dict, Path]]:
    """Another export's crops by file name (a crop is named by its face): (ledger entry, PNG)."""
    ledger_path = Path(export) / CROPS_LEDGER if export else None
    if ledger_path is None or not ledger_path.is_file():
        return {}
    return {Path(rel).name: (entry, Path(export) / rel) for rel, entry in atomic.read_json(ledger_path).items()}


def _linked(entry: dict, src: Path, png: Path) -> bool:
    """The other export's verdict holds here: a crop that failed its check needs no file; one that passed is
    hard-linked into place (False when it cannot be: it is rendered instead)."""
    if entry["problem"]:
        return True
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        tmp = png.with_name(f".{png.name}.link.tmp")  # swept by atomic.sweep_temps if a kill leaves it
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, png)
    except OSError:
        return False
    return True


class _Renderer:
    """Decodes photos and cuts, checks and writes their crops (in worker threads, a photo each)."""

    def __init__(self, cache: FaceCache, checker, p: dict, checks, max_pixels: int, reduced_decode: bool):
        self.cache, self.checker, self.p, self.checks = cache, checker, p, checks
        self.max_pixels, self.reduced_decode = max_pixels, reduced_decode
        f = cache.faces
        self.by_sha: dict[str, list[int]] = {}
        for i, s in enumerate(f["sha256"].tolist()):
            self.by_sha.setdefault(s, []).append(i)
        self.alias_map = cache.aliases_of()  # once: it walks every file entry

    def decode(self, job) -> list[tuple[list, Source | None, str | None]]:
        """Each crop gets the reduction its own frame allows, never one that depends on which other crops
        of the photo happen to be re-rendered: an incremental export renders the same bytes as a fresh one.
        The photo is read once and decoded once per distinct reduction (nearly always one)."""
        path, need = job
        f, p = self.cache.faces, self.p
        groups: dict[int, list] = {}
        for item in need:
            reduce = dct_reduction([f["bbox"][item[1]]], p["pad_ratio"], p["out_size"]) if self.reduced_decode else 1
            groups.setdefault(reduce, []).append(item)
        data, why = read_source(self.cache, path, f["sha256"][need[0][1]], self.alias_map.get(path, []))
        return [(items, *decoded(data, why, self.max_pixels, reduce)) for reduce, items in sorted(groups.items())]

    def photo(self, job) -> list[tuple[str, int, Path, dict]]:
        """Every crop to make from one photo: (faceset, face, png, ledger entry)."""
        return [(name, i, png, self.crop(i, png, sig, src, why))
                for need, src, why in self.decode(job) for name, i, png, sig in need]

    def crop(self, i: int, png: Path, sig: str, src: Source | None, why: str | None) -> dict:
        """Face i's crop from the decoded photo, written to `png` if it passes the one-face check."""
        f = self.cache.faces
        entry = {"sig": sig, "problem": None, "masked": False}
        if src is None:
            entry["problem"] = why
            return entry
        others = [src.to_image(f["bbox"][j]) for j in self.by_sha[f["sha256"][i]] if j != i]
        self.checker.submit(entry, png, src.bgr, src.to_image(f["bbox"][i]), others)  # fills problem / masked
        return entry


def _crops_index(cache: FaceCache, cache_path, plan: dict, candidates: dict, results: dict, t: dict,
                 comp: np.ndarray, p: dict, checks, meta: dict[str, dict] | None) -> dict:
    """crops.json: per faceset its members (crops made) and exclusions, and the candidates."""
    keys, kidx = cache.face_keys(), ids.key_index(cache)
    index = {"kind": "crops", "tool": f"facesets {__version__}", "created": _now(), "cache": str(cache_path),
             "params": p, "checks": checks, "facesets": {}, "candidates": {}}
    for name, pl in plan.items():
        members, excluded = [], list(pl["excluded"])
        for i in pl["ranked"]:
            r = results[(name, i)]
            if r["problem"]:
                excluded.append({"key": keys[i], "stage": "crop", "reason": r["problem"]})
                continue
            members.append(_member(cache, i, keys[i], t, comp, f"{name}/faces/{crop_name(keys[i])}", r))
        for e in excluded:
            e["path"] = str(cache.face_path[kidx[e["key"]]]) if e["key"] in kidx else None
        index["facesets"][name] = {"members": members, "excluded": excluded, "meta": (meta or {}).get(name, {})}
    for name, cands in candidates.items():
        rows = []
        for i, d in cands:
            r = results[(f"_candidates/{name}", i)]
            if not r["problem"]:
                rows.append(dict(_member(cache, i, keys[i], t, comp, f"_candidates/{name}/{crop_name(keys[i])}", r),
                                 distance=round(d, 4)))
        index["candidates"][name] = rows
    return index


def _member(cache: FaceCache, i: int, key: str, t: dict, comp: np.ndarray, crop: str, r: dict) -> dict:
    return {"key": key, "path": str(cache.face_path[i]), "crop": crop,
            "quality": {k: round(float(t[k][i]), 4) for k in quality.TERMS},
            "composite": round(float(comp[i]), 4), "masked_bystanders": r.get("masked", False)}


def _candidates(cache: FaceCache, plan: dict, singletons: list[str], comp: np.ndarray, p: dict) -> dict:
    """Singleton faces that match an exported identity well enough to be worth a look."""
    kidx = ids.key_index(cache)
    names = [n for n, pl in plan.items() if pl["ranked"]]
    if not names or not singletons:
        return {}
    emb = cache.embeddings
    cents = ids.centroids(emb, [plan[n]["ranked"] for n in names])
    idx = [kidx[k] for k in singletons if k in kidx]
    out: dict[str, list] = {}
    if not idx:
        return out
    dist = 1.0 - emb[idx] @ cents.T
    for i, row in zip(idx, dist):
        b = int(row.argmin())
        if row[b] <= p["candidate_match_threshold"] and comp[i] >= p["candidate_min_score"] \
                and cache.faces["face_short"][i] >= p["min_face_short"]:
            out.setdefault(names[b], []).append((i, float(row[b])))
    return out


def export_bundles(out_dir: str | Path, top_n: int, extra: dict | None = None,
                   names: dict[str, str] | None = None) -> dict:
    """Bundles and manifests from crops.json; unchanged bundles are left as they are. `names` (the person's
    decisions) name a faceset's bundles and show in its manifests; a hidden faceset gets no bundle."""
    out_dir = Path(out_dir)
    atomic.sweep_temps(out_dir)
    index = atomic.read_json(out_dir / CROPS_INDEX)
    ledger_path = out_dir / BUNDLES_LEDGER
    ledger = atomic.read_json(ledger_path) if ledger_path.is_file() else {}
    names = names or {}
    written = 0
    summary = []
    for name, fs in index["facesets"].items():
        members = fs["members"]
        fmeta = fs.get("meta", {})
        label = names.get(name) or fmeta.get("bundle_prefix")
        markers = dict(fmeta.get("markers", {}))
        if fmeta.get("thin"):
            markers["THIN.txt"] = f"{name}: fewer faces than an era needs; apply moves it to _thin/\n"
        for fname, text in markers.items():
            marker = out_dir / name / fname
            if not marker.is_file() or marker.read_text(encoding="utf-8") != text:
                atomic.write_text(marker, text)
        for rank, m in enumerate(members, 1):
            m["rank"] = rank
        top = members[:top_n]
        bundles, n = ({}, 0) if fmeta.get("hidden") else _bundles(out_dir, name, label or name, top_n, members, ledger)
        written += n
        for stale in (out_dir / name).glob("*.fsz"):
            if stale.name not in bundles.values():
                stale.unlink()  # a regenerable output of an earlier top_n or name, not user data
                ledger.pop(str(stale.relative_to(out_dir)), None)
        crops = {Path(m["crop"]).name for m in members}
        for stale in (out_dir / name / "faces").glob("*.png"):
            if stale.name not in crops:
                stale.unlink()  # the crop of a face that left the identity (a decision, a threshold): regenerable
        shown = {"label": label} if label else {}
        per = {"faceset": name, **shown, "top_n": top_n, "bundles": bundles, "members": members,
               "in_top": [m["key"] for m in top], "excluded": fs["excluded"]}
        atomic.write_json(out_dir / name / MANIFEST, per)
        summary.append({"name": name, **shown, "n_members": len(members), "n_top": len(top), "bundles": bundles,
                        "best": members[0]["crop"] if members else None,
                        "excluded": _count(fs["excluded"]), **({"meta": fmeta} if fmeta else {})})
    atomic.write_json(ledger_path, ledger)
    manifest = {"kind": "swap_ready", "version": 1, "tool": f"facesets {__version__}", "created": _now(),
                "params": dict(index["params"], top_n=top_n), "checks": index["checks"], "facesets": summary,
                "candidates": {n: [m["crop"] for m in rows] for n, rows in index["candidates"].items()},
                "stats": {"facesets": len(summary), "pngs": sum(s["n_members"] for s in summary),
                          "bundles_written": written}}
    hid = index.get("decisions") or {}  # export_crops applied `hide`
    if names or hid:
        gone = [{"decision": f"name {n} {names[n]!r}", "reason": f"{n} does not exist (any more)"}
                for n in sorted(set(names) - set(index["facesets"]))]
        manifest["decisions"] = {"names": dict(sorted(names.items())), "hide": hid.get("hide", []),
                                 "unapplied": gone + hid.get("unapplied", [])}
        for u in gone:
            log.warning("decision not applied: %s: %s", u["decision"], u["reason"])
    manifest.update(extra or {})
    atomic.write_json(out_dir / MANIFEST, manifest)
    log.info("export bundles: %s", manifest["stats"])
    return manifest


def _bundles(out_dir: Path, name: str, prefix: str, top_n: int, members: list[dict], ledger: dict
             ) -> tuple[dict[str, str], int]:
    """The faceset's `<prefix>_top<N>.fsz` and `<prefix>_all.fsz`, each rewritten only if its content changed."""
    bundles, written = {}, 0
    for label, chosen in ((f"top{top_n}", members[:top_n]), ("all", members)):
        if not chosen:
            continue
        bundle = out_dir / name / f"{prefix}_{label}.fsz"
        files = [(f"{m['rank']:04d}_{Path(m['crop']).name}", out_dir / m["crop"]) for m in chosen]
        digest = _sig([(n, ledger_sig(out_dir, src)) for n, src in files])
        rel = str(bundle.relative_to(out_dir))
        if ledger.get(rel) != digest or not bundle.is_file():
            write_fsz(bundle, files)
            ledger[rel] = digest
            written += 1
        bundles[label] = bundle.name
    return bundles, written


def ledger_sig(out_dir: Path, png: Path) -> str:
    st = png.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _count(excluded: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in excluded:
        out[e["stage"]] = out.get(e["stage"], 0) + 1
    return out
