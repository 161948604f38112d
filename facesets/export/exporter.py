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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facesets import __version__
from facesets.core import atomic, imageio
from facesets.embed.cache import FaceCache
from facesets.export import quality
from facesets.export.crops import dct_reduction, make_crop
from facesets.export.fsz import write_fsz
from facesets.identities import shared as ids
from facesets.identities.neighbors import components, similar_pairs

log = logging.getLogger(__name__)
CROPS_INDEX = "crops.json"
CROPS_LEDGER = ".crops_ledger.json"
BUNDLES_LEDGER = ".bundles_ledger.json"
MANIFEST = "manifest.json"
CROP_KEYS = ("outlier_threshold", "min_face_short", "dup_similarity", "pad_ratio", "out_size",
             "candidates", "candidate_match_threshold", "candidate_min_score", "weights")


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


def select(cache: FaceCache, idx: list[int], comp: np.ndarray, p: dict) -> tuple[list[int], list[dict]]:
    """Gates and near-duplicate collapse for one identity; returns (ranked survivors, exclusions)."""
    emb = cache.embeddings
    keys = cache.face_keys()
    excluded = []
    if not idx:
        return [], excluded
    c = ids.centroid(emb[idx])
    dist = 1.0 - emb[idx] @ c
    kept = []
    for i, d in zip(idx, dist.tolist()):
        if d > p["outlier_threshold"]:
            excluded.append({"key": keys[i], "stage": "outlier", "reason": f"distance {d:.3f} > {p['outlier_threshold']}"})
        elif cache.faces["face_short"][i] < p["min_face_short"]:
            excluded.append({"key": keys[i], "stage": "size",
                             "reason": f"face_short {cache.faces['face_short'][i]:.1f} < {p['min_face_short']}"})
        else:
            kept.append(i)
    if len(kept) > 1:
        sub = emb[kept]
        rows, cols, sims = similar_pairs(sub, p["dup_similarity"])
        sim_of = {(r, c_): s for r, c_, s in zip(rows.tolist(), cols.tolist(), sims.tolist())}
        drop = set()
        for group in components(len(kept), rows, cols):
            best = max(group, key=lambda g: (comp[kept[g]], -g))
            for g in group:
                if g != best:
                    s = sim_of.get((min(g, best), max(g, best)))
                    drop.add(g)
                    excluded.append({"key": keys[kept[g]], "stage": "near_duplicate",
                                     "reason": f"near-duplicate of {cache.face_path[kept[best]]} ({keys[kept[best]][:12]})" +
                                               (f" (similarity {s:.3f})" if s is not None else " (same group)")})
        kept = [k for j, k in enumerate(kept) if j not in drop]
    kept.sort(key=lambda i: (-comp[i], keys[i]))
    return kept, excluded


@dataclass
class Source:
    """A photo decoded for cropping, upright, at 1/scale of its full size. Boxes are in full-size
    upright pixels; `offset` is the margin, in those pixels, that libjpeg's partial last block puts
    on the left / top once the reduced image is turned upright."""
    bgr: np.ndarray
    scale: int = 1
    offset: tuple[float, float] = (0.0, 0.0)

    def to_image(self, box: np.ndarray) -> np.ndarray:
        if self.scale == 1 and self.offset == (0.0, 0.0):
            return box  # as it is: a full-size decode renders exactly what it always rendered
        ox, oy = self.offset
        return (np.asarray(box[:4], np.float64) + (ox, oy, ox, oy)) / self.scale


def _upright_offset(orient: int, pad: tuple[int, int]) -> tuple[float, float]:
    """The reduced image covers the stored one padded by `pad` (x, y) source pixels on the right and
    bottom; after the EXIF turn that padding may sit on the left or top and shift every coordinate.
    Found by turning a marked corner with the very operation imageio applies, so the two cannot drift."""
    if orient not in imageio.UPRIGHT:
        return 0.0, 0.0
    corner = np.zeros((2, 2), np.uint8)
    corner[0, 0] = 1  # the stored image's top-left: the corner without padding
    row, col = np.argwhere(imageio.UPRIGHT[orient](corner))[0]
    px, py = (pad[1], pad[0]) if orient in (5, 6, 7, 8) else pad  # these turns swap the axes
    return float(px if col else 0), float(py if row else 0)


def _decode_reduced(data: bytes, max_pixels: int, reduce: int) -> Source | None:
    """libjpeg's DCT-scaled decode at 1/reduce (the orientation and colour handling of imageio.decode);
    None where the photo is not a single-scan JPEG big enough for it."""
    img = imageio.open_image(data, max_pixels)
    w, h = img.size
    if img.format != "JPEG" or min(w, h) < reduce:
        return None
    drafted = img.draft("RGB", (w // reduce, h // reduce))
    if not drafted:
        return None
    scale = round(w / drafted[1][2])
    if not 2 <= scale <= reduce:  # more than asked for would make some crop an upscale
        return None
    orient = imageio.orientation(img)
    img.load()
    bgr = cv2.cvtColor(imageio.to_rgb8(img), cv2.COLOR_RGB2BGR)
    if orient in imageio.UPRIGHT:
        bgr = imageio.UPRIGHT[orient](bgr)
    pad = (scale * img.size[0] - w, scale * img.size[1] - h)
    return Source(bgr, scale, _upright_offset(orient, pad))


def decode_for_crops(data: bytes, max_pixels: int, reduce: int = 1) -> Source:
    """The photo upright, reduced by `reduce` where a JPEG allows it, else full size. Any trouble with
    the reduced decode goes the full-size way, so unreadable files give imageio's skip reasons."""
    if reduce > 1:
        try:
            src = _decode_reduced(data, max_pixels, reduce)
        except Exception:  # noqa: BLE001 -- the full decode below reports what is wrong
            src = None
        if src is not None:
            return src
    return Source(imageio.decode(data, max_pixels=max_pixels, long_side=0).bgr)


def _read_source(cache: FaceCache, path: str, sha: str, aliases: list[str]) -> tuple[bytes | None, str | None]:
    """The photo's bytes, from its canonical path or any alias that still has them (every location
    holding these bytes decodes alike, so one read serves every reduction)."""
    last = "source missing"
    for loc in [path, *aliases]:
        try:
            data = cache.abs_path(loc).read_bytes()
        except OSError as exc:
            last = f"source unreadable: {exc.strerror or exc}"
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            last = "source changed since embed"
            continue
        return data, None
    return None, last


def _decoded(data: bytes | None, why: str | None, max_pixels: int, reduce: int) -> tuple[Source | None, str | None]:
    if data is None:
        return None, why
    try:
        return decode_for_crops(data, max_pixels, reduce), None
    except imageio.ImageSkip as exc:
        return None, exc.reason


def _sig(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def export_crops(cache_path: str | Path, identities: dict[str, list[str]], out_dir: str | Path, params: dict,
                 checks: list[list[float]], engine_factory, enrich_path=None, singletons: list[str] | None = None,
                 max_pixels: int = 250_000_000, io_threads: int = 3, progress: bool = False,
                 meta: dict[str, dict] | None = None, reduced_decode: bool = True) -> dict:
    """`meta` per identity (optional): bundle_prefix (bundles named after a label instead of the
    faceset), markers ({file name: text} written beside the bundles), thin (writes THIN.txt).
    `reduced_decode=False` decodes every photo at full size (the reference the reduced decode is
    measured and tested against)."""
    out_dir = Path(out_dir)
    atomic.sweep_temps(out_dir)  # a killed earlier run's half-written crops or bundles
    p = {k: params[k] for k in CROP_KEYS}
    cache = FaceCache.load(cache_path)
    keys = cache.face_keys()
    kidx = ids.key_index(cache)
    pose = load_pose(cache, enrich_path)
    f = cache.faces
    t = quality.terms(pose, f["det_score"], f["kps"], f["face_short"], f["blur"])
    comp = quality.composite(t, p["weights"])

    plan: dict[str, dict] = {}
    for name, members in identities.items():
        idx = [kidx[k] for k in members if k in kidx]
        missing = [k for k in members if k not in kidx]
        ranked, excluded = select(cache, idx, comp, p)
        excluded += [{"key": k, "stage": "missing", "reason": "face no longer in the cache"} for k in missing]
        plan[name] = {"ranked": ranked, "excluded": excluded}
    candidates = _candidates(cache, plan, singletons or [], comp, p) if p["candidates"] else {}

    # every crop to make, grouped by photo so each photo is decoded once
    jobs: dict[str, list[tuple[str, int, Path]]] = {}
    for name, pl in plan.items():
        for i in pl["ranked"]:
            jobs.setdefault(str(cache.face_path[i]), []).append((name, i, out_dir / name / "faces" / crop_name(keys[i])))
    for name, cands in candidates.items():
        for i, _ in cands:
            jobs.setdefault(str(cache.face_path[i]), []).append(
                (f"_candidates/{name}", i, out_dir / "_candidates" / name / crop_name(keys[i])))

    ledger_path = out_dir / CROPS_LEDGER
    ledger = atomic.read_json(ledger_path) if ledger_path.is_file() else {}
    crop_params = {k: p[k] for k in ("pad_ratio", "out_size")}
    results: dict[tuple[str, int], dict] = {}
    todo = []
    for path, items in jobs.items():
        need = []
        for name, i, png in items:
            sig = _sig([crop_params, checks, keys[i], f["bbox"][i].tolist()])
            rel = str(png.relative_to(out_dir))
            old = ledger.get(rel)
            if old and old["sig"] == sig and (old["problem"] or png.is_file()):
                results[(name, i)] = old
            else:
                need.append((name, i, png, sig))
        if need:
            todo.append((path, need))

    engine = engine_factory() if todo else None
    by_sha: dict[str, list[int]] = {}
    for i, s in enumerate(f["sha256"].tolist()):
        by_sha.setdefault(s, []).append(i)

    alias_map = cache.aliases_of()  # once: it walks every file entry

    def work(job):
        """Each crop gets the reduction its own frame allows, never one that depends on which other crops
        of the photo happen to be re-rendered: an incremental export renders the same bytes as a fresh one.
        The photo is read once and decoded once per distinct reduction (nearly always one)."""
        path, need = job
        groups: dict[int, list] = {}
        for item in need:
            reduce = dct_reduction([f["bbox"][item[1]]], p["pad_ratio"], p["out_size"]) if reduced_decode else 1
            groups.setdefault(reduce, []).append(item)
        data, why = _read_source(cache, path, f["sha256"][need[0][1]], alias_map.get(path, []))
        return [(items, *_decoded(data, why, max_pixels, reduce)) for reduce, items in sorted(groups.items())]

    bar = tqdm(total=sum(len(n) for _, n in todo), desc="export crops", unit="crop", disable=not progress)
    with ThreadPoolExecutor(max_workers=io_threads) as pool:
        for need, src, why in (g for groups in pool.map(work, todo) for g in groups):
            for name, i, png, sig in need:
                rel = str(png.relative_to(out_dir))
                entry = {"sig": sig, "problem": None, "masked": False}
                if src is None:
                    entry["problem"] = why
                else:
                    others = [src.to_image(f["bbox"][j]) for j in by_sha[f["sha256"][i]] if j != i]
                    crop, problem, masked = make_crop(engine, src.bgr, src.to_image(f["bbox"][i]), others,
                                                      p["pad_ratio"], p["out_size"], checks)
                    if crop is None:
                        entry["problem"] = f"one-face check: {problem}"
                    else:
                        ok, buf = cv2.imencode(".png", crop)
                        atomic.write_bytes(png, buf.tobytes())
                        entry["masked"] = masked
                results[(name, i)] = entry
                ledger[rel] = entry
                bar.update(1)
    bar.close()
    atomic.write_json(ledger_path, ledger)

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
    atomic.write_json(out_dir / CROPS_INDEX, index)
    stats = {n: len(v["members"]) for n, v in index["facesets"].items()}
    log.info("export crops: %d facesets, %d crops, %d rendered now", len(stats), sum(stats.values()),
             sum(len(n) for _, n in todo))
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


def export_bundles(out_dir: str | Path, top_n: int, extra: dict | None = None) -> dict:
    """Bundles and manifests from crops.json; unchanged bundles are left as they are."""
    out_dir = Path(out_dir)
    atomic.sweep_temps(out_dir)
    index = atomic.read_json(out_dir / CROPS_INDEX)
    ledger_path = out_dir / BUNDLES_LEDGER
    ledger = atomic.read_json(ledger_path) if ledger_path.is_file() else {}
    written = 0
    summary = []
    for name, fs in index["facesets"].items():
        members = fs["members"]
        fmeta = fs.get("meta", {})
        prefix = fmeta.get("bundle_prefix") or name
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
        bundles = {}
        for label, chosen in ((f"top{top_n}", top), ("all", members)):
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
        for stale in (out_dir / name).glob(f"{prefix}_top*.fsz"):
            if stale.name != bundles.get(f"top{top_n}"):
                stale.unlink()  # a regenerable output of an earlier top_n, not user data
                ledger.pop(str(stale.relative_to(out_dir)), None)
        per = {"faceset": name, "top_n": top_n, "bundles": bundles, "members": members,
               "in_top": [m["key"] for m in top], "excluded": fs["excluded"]}
        atomic.write_json(out_dir / name / MANIFEST, per)
        summary.append({"name": name, "n_members": len(members), "n_top": len(top), "bundles": bundles,
                        "excluded": _count(fs["excluded"]), **({"meta": fmeta} if fmeta else {})})
    atomic.write_json(ledger_path, ledger)
    manifest = {"kind": "swap_ready", "version": 1, "tool": f"facesets {__version__}", "created": _now(),
                "params": dict(index["params"], top_n=top_n), "checks": index["checks"], "facesets": summary,
                "candidates": {n: [m["crop"] for m in rows] for n, rows in index["candidates"].items()},
                "stats": {"facesets": len(summary), "pngs": sum(s["n_members"] for s in summary),
                          "bundles_written": written}}
    manifest.update(extra or {})
    atomic.write_json(out_dir / MANIFEST, manifest)
    log.info("export bundles: %s", manifest["stats"])
    return manifest


def ledger_sig(out_dir: Path, png: Path) -> str:
    st = png.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _count(excluded: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in excluded:
        out[e["stage"]] = out.get(e["stage"], 0) + 1
    return out
