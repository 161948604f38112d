"""What the user receives, and where every face that did not make it went.

`membership(layout, stage)` gives each stage's identities as face keys: raw clusters, refined facesets,
the export's crops, and the final corpus — the members of each active faceset's `_all` bundle (absorbed
facesets included), i.e. exactly what roop-unleashed loads. `loss(layout, keys)` names, for each face
that is in no final faceset, the first stage that let it go and why: embed (no face / unreadable),
refine (quality gate and which term, outlier, too few photos), export (outlier, size gate, near-duplicate
of which face, crop check), curation (the pass and its reason, or its faceset quarantined).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from facesets.core import atomic
from facesets.core.layout import Layout

STAGES = ("raw", "refine", "export", "final")


def _read(path: Path) -> dict:
    return atomic.read_json(path) if path.is_file() else {}


def _export_members(layout: Layout) -> dict[str, list[dict]]:
    out = {}
    for f in _read(layout.export_manifest).get("facesets", []):
        out[f["name"]] = _read(layout.export / f["name"] / "manifest.json").get("members", [])
    return out


def _final(layout: Layout) -> dict[str, list[str]]:
    """Active facesets of the corpus -> the face keys of their `_all` bundle's members."""
    by_crop = {Path(m["crop"]).name: m["key"] for ms in _export_members(layout).values() for m in ms}
    out = {}
    for f in _read(layout.corpus_manifest).get("facesets", []):
        bundle = next((b for b in f.get("bundles", []) if b.endswith("_all.fsz")), None)
        path = layout.corpus / f["name"] / bundle if bundle else None
        if path is None or not path.is_file():
            out[f["name"]] = []
            continue
        with zipfile.ZipFile(path) as z:  # names only: nothing is inflated
            names = [n.split("_", 1)[1] for n in z.namelist() if "_" in n]
        out[f["name"]] = [by_crop[n] for n in names if n in by_crop]
    return out


def membership(layout: Layout, stage: str) -> dict[str, list[str]]:
    """Identity name -> face keys for one stage (raw singletons are identities of their own)."""
    if stage == "raw":
        m = _read(layout.raw_manifest)
        out = {n: [k for k, _ in faces] for n, faces in m.get("persons", {}).items()}
        out.update({f"_singleton_{j}": [k] for j, (k, _) in enumerate(m.get("singletons", []))})
        return out
    if stage == "refine":
        return {n: [k for k, _ in fs["faces"]] for n, fs in _read(layout.refine_manifest).get("facesets", {}).items()}
    if stage == "export":
        return {n: [m["key"] for m in ms] for n, ms in _export_members(layout).items()}
    if stage == "final":
        return _final(layout)
    raise ValueError(f"unknown stage {stage!r}: one of {', '.join(STAGES)}")


def _refine_losses(layout: Layout) -> dict[str, tuple[str, str]]:
    refine = _read(layout.refine_manifest)
    out = {}
    for stage in ("quality", "outlier", "decision"):  # decision: the person removed it (facesets.review)
        for k, _, why in refine.get("removed", {}).get(stage, []):
            out[k] = (f"refine {stage}", why)
    min_faces = refine.get("params", {}).get("min_faces")
    for g in refine.get("removed", {}).get("too_small", []):
        for k, _ in g["faces"]:
            out[k] = ("refine too_small", f"its group spans {g['n_images']} photo(s) < min_faces {min_faces}")
    return out


def _export_losses(layout: Layout) -> dict[str, tuple[str, str]]:
    out = {}
    for f in _read(layout.export_manifest).get("facesets", []):
        for e in _read(layout.export / f["name"] / "manifest.json").get("excluded", []):
            out.setdefault(e["key"], (f"export {e['stage']}", f"{f['name']}: {e['reason']}"))
    return out


def _curation_losses(layout: Layout) -> dict[str, tuple[str, str]]:
    """Crop drops and whole-faceset quarantines of the applied plans, by face key."""
    key_of = {(f, Path(m["crop"]).name): m["key"] for f, ms in _export_members(layout).items() for m in ms}
    corpus = _read(layout.corpus_manifest)
    if not corpus:
        return {}
    out = {}
    keys_of: dict[str, list[str]] = {}
    for (fs, _), k in key_of.items():
        keys_of.setdefault(fs, []).append(k)
    for q in ("masked", "thin", "hidden"):
        for f in corpus.get(q, []):
            for k in keys_of.get(f["name"], []):
                out.setdefault(k, (f"curation {q}", f"{f['name']} quarantined: {f.get('reason', '')}"))
    for plan_file in sorted(layout.plans.glob("*.json")):
        plan = _read(plan_file)
        for ch in plan.get("changes", []):
            if ch.get("action") == "drop" and (ch["faceset"], ch.get("crop")) in key_of:
                out.setdefault(key_of[(ch["faceset"], ch["crop"])], (f"curation {plan['pass']}", ch["reason"]))
    return out


def _embed_losses(cache, keys_wanted: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Labeled photos with no face in the cache: the cache's own record of why."""
    by_path = {f"{e['source']}/{e['path']}": e for e in cache.files}
    out = {}
    for k, path in keys_wanted.items():
        e = by_path.get(path)
        if e is None:
            out[k] = ("embed", "not in the cache (outside every source, or not an embedded extension)")
        elif e["status"] == "noface":
            out[k] = ("embed", "no face detected")
        elif e["status"] == "skipped":
            out[k] = ("embed", f"skipped: {e.get('reason', '')}")
    return out


def loss(layout: Layout, faces: dict[str, str], cache=None) -> list[dict]:
    """For each face key (-> its photo path) in no final faceset: the stage that let it go and why.

    `faces` may name photos with no cached face (key `path:<photo>`); those are explained from the cache.
    """
    final = {k for ks in membership(layout, "final").values() for k in ks}
    ledgers = [_refine_losses(layout), _export_losses(layout), _curation_losses(layout)]
    if cache is not None:
        ledgers.insert(0, _embed_losses(cache, {k: p for k, p in faces.items() if k.startswith("path:")}))
    out = []
    for k, path in sorted(faces.items(), key=lambda kv: kv[1]):
        if k in final:
            continue
        stage, why = next((led[k] for led in ledgers if k in led), ("unaccounted", "in no final faceset and no "
                                                                     "stage recorded why: please report this"))
        out.append({"key": k, "path": path, "stage": stage, "reason": why})
    return out
