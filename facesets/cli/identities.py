"""Subcommands of the identities stage: face cache -> people (cluster, refine, folders, eras, ...)."""
from __future__ import annotations

import json
from pathlib import Path

from facesets.cli.common import (check_model, command, engine_factory, model_flags, section_flags, settings,
                                 settings_flags, threads_flag)
from facesets.cli.embed import CACHE_FIX
from facesets.cli.review import anchors_of, decisions_flag, decisions_of
from facesets.core import config as fsconfig
from facesets.core import inputs, messages
from facesets.core.errors import InputError


def _cache(p) -> None:
    p.add_argument("cache", metavar="CACHE", help="face cache (faces.npz or a cache folder)")


def _link_mode(p) -> None:
    p.add_argument("--link-mode", dest="identities__link_mode", choices=["hardlink", "symlink", "copy"],
                   default=None, help="how photos are placed in the identity folders "
                   f"(default {fsconfig.defaults()['identities']['link_mode']})")


def cmd_cluster(args) -> int:
    from facesets.identities import cluster_stage

    cfg = settings(args)
    c = cfg["cluster"]
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    cluster_stage.run(args.cache, args.out, c["threshold"], c["extend_threshold"], cfg["identities"]["link_mode"],
                      progress=True)
    return 0


def cmd_refine(args) -> int:
    from facesets.identities import refine

    cfg = settings(args)
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    refine.run(args.cache, args.out, cfg["refine"], cfg["identities"]["link_mode"], progress=True,
               decisions=decisions_of(args), anchors=anchors_of(args))
    return 0


def _ledger(folder: str, stage: str) -> dict:
    from facesets.identities import shared as identities

    ledger = identities.read_ledger(Path(folder))
    if ledger is None:
        raise InputError(messages.INPUT_MISSING.format(what=f"earlier {stage} output", path=folder,
                                                       fix=f"run `facesets {stage}` first"))
    return ledger


def cmd_extend(args) -> int:
    """Fold new faces into existing outputs with the parameters those outputs were made with."""
    from facesets.identities import cluster_stage, refine

    link_mode = settings(args)["identities"]["link_mode"]
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    raw = _ledger(args.raw_out, "cluster")
    prev = _ledger(args.refine_out, "refine") if args.refine_out else None
    cluster_stage.run(args.cache, args.raw_out, raw["params"]["threshold"], raw["params"]["extend_threshold"],
                      link_mode)
    if prev is not None:
        refine.run(args.cache, args.refine_out, dict(fsconfig.defaults()["refine"], **prev["params"]), link_mode,
                   decisions=decisions_of(args), anchors=anchors_of(args))
    return 0


def cmd_dedup(args) -> int:
    from facesets.identities import dedup

    similarity = settings(args)["dedup"]["near_duplicate_similarity"]
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    rep = dedup.run(args.cache, similarity, args.out)
    print(json.dumps(rep["stats"]))
    return 0


def cmd_enrich(args) -> int:
    from facesets.core.engine import BASE_MODULES, LANDMARK_MODULES
    from facesets.identities import enrich

    cfg = settings(args)
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    factory = worker = None
    out = args.out or str(Path(args.cache).with_name("enrich.npz"))
    if not args.kps_only:
        from facesets.core.worker_route import route

        check_model(cfg)
        factory = engine_factory(cfg, modules=BASE_MODULES + LANDMARK_MODULES)
        worker = route(cfg, "enrich", Path(out).parent)
        worker = enrich.WorkerLandmarks(worker, cfg) if worker else None
    print(json.dumps(enrich.run(args.cache, out, factory, cfg["embed"]["max_image_pixels"], progress=True,
                                worker=worker)))
    return 0


def cmd_evaluate(args) -> int:
    from facesets.identities.evaluate import evaluate, evaluate_stage

    inputs.existing(args.manifest, "manifest or results folder", "run the pipeline (or `facesets refine`) first, "
                    "or fix the path")
    inputs.existing(args.labels, "labels CSV", "fix the path (config evaluate.labels)")
    if Path(args.manifest).is_dir():
        result = evaluate_stage(args.manifest, args.stage, args.labels, args.root, args.cache)
    else:
        result = evaluate(args.manifest, args.labels, args.root, args.cache)
    if args.out:
        from facesets.core import atomic

        atomic.write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


def cmd_folders(args) -> int:
    from facesets.identities import folders

    cfg = settings(args)
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    folders.run(args.cache, args.out, cfg["folders"], args.refine_manifest)
    return 0


def cmd_eras(args) -> int:
    from facesets.identities import eras

    e = settings(args)["eras"]
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    for m in args.manifest:
        inputs.existing(m, "identities manifest", "run `facesets refine` (or folders) first, or fix the path")
    year_cache = args.year_cache or str(Path(args.cache).with_name("exif_years.json"))
    eras.run(args.cache, args.out, args.manifest, args.identity or e["identities"], e, e["probe_thresholds"],
             year_cache)
    return 0


def cmd_sweep_point(args) -> int:
    """The combination's run shares the pipeline's detection store (--detections; without it, one of its own)."""
    from facesets.export.verdicts import open_store
    from facesets.identities.sweep import point

    cfg = settings(args)
    inputs.existing(args.cache, "face cache", CACHE_FIX)
    check_model(cfg)
    store = open_store(args.detections or Path(args.out) / "detections.sqlite", cfg["model"]["pack"],
                       cfg["model"]["root"])
    try:
        metrics = point(args.cache, args.out, args.combo, cfg, store, engine_factory(cfg, 1), enrich=args.enrich,
                        raw_manifest=args.raw_manifest, clip_results=args.clip_results, threads=args.threads,
                        reuse_export=args.reuse_export)
    finally:
        store.close()
    print(json.dumps(metrics))
    return 0


def cmd_sweep_summary(args) -> int:
    from facesets.identities.sweep import summarize

    cfg = settings(args)
    print(json.dumps(summarize(args.metrics, args.out, cfg["sweep"]["metric"])))
    return 0


def register(sub) -> None:
    p = command(sub, "cluster", cmd_cluster, "raw clusters: person_NNN/ _singletons/ _noface/ + manifest.json")
    _cache(p)
    p.add_argument("out", metavar="OUT", help="output folder")
    section_flags(p, "cluster")
    _link_mode(p)
    settings_flags(p)

    p = command(sub, "refine", cmd_refine, "refined facesets: faceset_NNN/ + refine_manifest.json")
    _cache(p)
    p.add_argument("out", metavar="OUT", help="output folder")
    section_flags(p, "refine")
    _link_mode(p)
    decisions_flag(p, anchors=True)
    settings_flags(p)

    p = command(sub, "extend", cmd_extend, "fold new faces into existing raw (and refine) output without renumbering")
    _cache(p)
    p.add_argument("raw_out", metavar="RAW_OUT", help="the earlier `facesets cluster` output folder")
    p.add_argument("--refine-out", metavar="DIR", help="the earlier `facesets refine` output folder, extended too")
    _link_mode(p)
    decisions_flag(p, anchors=True)
    settings_flags(p)

    p = command(sub, "dedup", cmd_dedup, "byte-identical and visual near-duplicate groups -> <cache>.duplicates.json")
    _cache(p)
    p.add_argument("--out", metavar="JSON", help="report path (default: <cache>.duplicates.json)")
    section_flags(p, "dedup")
    settings_flags(p)

    p = command(sub, "enrich", cmd_enrich, "landmarks + pose per face (from the 5 keypoints without landmark models)")
    _cache(p)
    p.add_argument("--out", metavar="NPZ", help="sidecar path (default: enrich.npz beside the cache)")
    p.add_argument("--kps-only", action="store_true", help="skip the landmark models even if the pack has them")
    model_flags(p)

    p = command(sub, "evaluate", cmd_evaluate, "score any stage against a labels CSV (P/R/F, NMI, coverage, "
                "and where every lost face went)")
    p.add_argument("manifest", metavar="MANIFEST|RESULTS", help="a raw, refine, export or corpus manifest.json, or "
                   "a results folder (then --stage picks the stage; default: final, the bundles in the corpus)")
    p.add_argument("--stage", choices=["raw", "refine", "export", "final"], default="final",
                   help="with a results folder: which stage to score (default final)")
    p.add_argument("--labels", required=True, metavar="CSV", help="labels CSV (path, identity)")
    p.add_argument("--root", required=True, metavar="DIR", help="folder the labels' paths are relative to")
    p.add_argument("--cache", metavar="CACHE", help="cache the manifest was made from (default: recorded in it)")
    p.add_argument("--out", metavar="JSON", help="also write the JSON here (atomically)")

    p = command(sub, "folders", cmd_folders, "identities from hand-sorted folders (config folders.trusted / .mixed)")
    _cache(p)
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--refine-manifest", metavar="JSON", help="new folder identities are numbered after its facesets")
    settings_flags(p)

    p = command(sub, "eras", cmd_eras, "probe + split identities into era facesets by EXIF year (or extend them)")
    _cache(p)
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--manifest", nargs="+", required=True, metavar="JSON",
                   help="manifests holding the identities (refine, folders)")
    p.add_argument("--identity", action="append", metavar="NAME", help="faceset to split (default: eras.identities)")
    p.add_argument("--year-cache", metavar="JSON", help="EXIF year cache (default: exif_years.json beside the cache)")
    settings_flags(p)

    _register_sweep_point(sub)

    p = command(sub, "sweep-summary", cmd_sweep_summary, "(pipeline) summary.csv, plots and summary.html of a sweep")
    p.add_argument("out", metavar="OUT", help="the sweep folder")
    p.add_argument("--metrics", nargs="+", required=True, metavar="JSON", help="every combination's metrics.json")
    settings_flags(p)


def _register_sweep_point(sub) -> None:
    p = command(sub, "sweep-point", cmd_sweep_point, "(pipeline) one threshold combination: cluster/refine, export, "
                "curation plans and apply in OUT, and the final corpus's metrics.json")
    _cache(p)
    p.add_argument("out", metavar="OUT", help="this combination's output folder (laid out like a results folder)")
    p.add_argument("--combo", required=True, metavar="COMBO", help="the combination's name (sweep wildcards)")
    p.add_argument("--enrich", metavar="NPZ", help="enrich.npz with pose (default: estimate pose from keypoints)")
    p.add_argument("--raw-manifest", metavar="JSON", help="raw cluster manifest (its singletons feed --candidates)")
    p.add_argument("--clip-results", metavar="JSON", help="the pipeline's clip_results.json (CLIP scores reused by "
                   "crop name)")
    p.add_argument("--detections", metavar="SQLITE", help="the pipeline's detection store (results/cache/"
                   "detections.sqlite)")
    p.add_argument("--reuse-export", metavar="DIR", help="the pipeline's export folder: its crops of the same faces "
                   "are hard-linked in instead of cut again")
    threads_flag(p)
    model_flags(p)
