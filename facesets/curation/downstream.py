"""Everything after refine, in one process: export crops and bundles, every curation plan, apply.

A sweep point (facesets.identities.sweep) runs it in its own folder laid out like a results folder
(facesets.core.layout), so the evaluation that scores the pipeline's final corpus scores the point's too.
It shares the pipeline's detection store, so a crop whose pixels any run checked is not detected again (a
point that changes no crop setting detects nothing), hard-links the pipeline's crops of the same faces rather
than cutting them again, and it reuses the pipeline's CLIP scores by crop file
name (a crop's name is its face's key; the scores hold while the crop framing is the pipeline's). The
person's decisions are not applied here: a sweep measures thresholds.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from facesets.core import atomic, messages
from facesets.core.layout import Layout
from facesets.core.worker_route import route
from facesets.curation import corpus
from facesets.curation import plans as P
from facesets.curation.multiface import audit
from facesets.curation.state import inventory
from facesets.curation.workers import queue_settings, read_results, skipped_reason, stage
from facesets.embed.cache import FaceCache
from facesets.export.exporter import export_bundles, export_crops
from facesets.export.identities_in import identities_of, singletons_of
from facesets.export.verdicts import StoredEngine

log = logging.getLogger(__name__)
FRAMING = ("pad_ratio", "out_size")  # export keys that change a crop's pixels for the same face


def run(lay: Layout, cache_path: str | Path, cfg: dict, store, engine_factory, *, enrich: str | Path | None,
        raw_manifest: str | Path | None, clip: tuple[str | Path | None, dict] = (None, {}), threads: int = 1,
        reuse: str | Path | None = None) -> dict:
    """Export, plan and apply from `lay`'s refine manifest; returns apply's stats. `clip`: the pipeline's
    clip_results.json and the export settings its crops were made with; `reuse`: the pipeline's export folder,
    whose crops of the same faces with the same signature are hard-linked in instead of rendered again."""
    idents, meta = identities_of([str(lay.refine_manifest)])
    export_crops(cache_path, idents, lay.export, cfg["export"], cfg["verify"]["checks"],
                 functools.partial(StoredEngine, engine_factory, store), enrich, singletons_of(raw_manifest),
                 cfg["embed"]["max_image_pixels"], threads, meta=meta, store=store, reuse=Path(reuse) if reuse else None,
                 worker=route(cfg, "crops", lay.export))
    export_bundles(lay.export, cfg["export"]["top_n"])
    plans = _plans(lay, FaceCache.load(cache_path), cfg, store, engine_factory, clip, threads)
    used = {"curation": cfg["curation"], "export": {"top_n": cfg["export"]["top_n"]}}
    stats = corpus.apply(lay.export, lay.corpus, plans, used, cfg["curation"]["thin_below"])
    atomic.write_json(lay.applied, stats)
    return stats


def _plans(lay: Layout, cache: FaceCache, cfg: dict, store, engine_factory, clip, threads: int) -> list[dict]:
    cur = cfg["curation"]
    inv = inventory(lay.export)
    queue, results = lay.curation / "multiface_queue.json", lay.curation / "multiface_results.json"
    stage(lay.export, queue, queue_settings(cfg, "multiface"), [])
    scores = {"multiface": audit(queue, results, cfg, store, engine_factory, threads)["results"]}
    scores["occlusion"], skipped = _clip_scores(inv, cfg, *clip)
    out: list[dict] = []
    for name in P.ORDER:
        plan = P.make(name, inv, P.prior_state(inv, out), lay.export, cache, cur, scores.get(name), skipped)
        atomic.write_json(lay.plans / f"{name}.json", plan)
        out.append(plan)
    return out


def _clip_scores(inv, cfg: dict, path: str | Path | None, base_export: dict) -> tuple[dict | None, str | None]:
    """The pipeline's CLIP scores re-keyed to this export's crops, or why there are none."""
    if cfg["curation"]["occlusion"]["enabled"] == "off":
        return None, messages.OCCLUSION_OFF
    why = skipped_reason(path)
    base = read_results(path)
    if why or base is None:
        return None, why or "the pipeline has no CLIP scores"
    changed = [k for k in FRAMING if base_export.get(k) != cfg["export"][k]]
    if changed:
        return None, f"the pipeline's CLIP scores are of crops framed otherwise ({', '.join(changed)} differs)"
    by_name = {Path(crop_id).name: s for crop_id, s in base.items()}
    return {f"{f}/faces/{c.name}": by_name[c.name] for f, crops in inv.facesets.items() for c in crops
            if c.name in by_name}, None
