"""Subcommands of the export stage: identities -> ranked crops -> .fsz bundles for roop-unleashed."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from facesets.cli.common import (check_model, command, engine_factory, model_flags, section_flags, settings,
                                 settings_flags, threads_flag)
from facesets.cli.embed import CACHE_FIX
from facesets.cli.review import decisions_flag, decisions_of
from facesets.core import inputs
from facesets.core.worker_route import route

log = logging.getLogger(__name__)


def _crops(args, cfg: dict) -> None:
    from facesets.export.exporter import export_crops
    from facesets.export.identities_in import identities_of, singletons_of
    from facesets.review.steer import hide

    inputs.existing(args.cache, "face cache", CACHE_FIX)
    idents, meta = identities_of(args.manifest)
    hidden = hide(meta, idents, decisions_of(args)["hide"])  # the person's: no bundles, _hidden/ in the corpus
    check_model(cfg)
    worker = route(cfg, "crops", args.out)
    store = _store(args, cfg)
    # one onnxruntime thread per session: the parallelism is `threads` crops checked at once, so the verdicts
    # are the same whatever --threads is
    factory = engine_factory(cfg, 1)
    if store is not None:  # every crop is looked up by its pixels; the detector runs only on a miss
        from facesets.export.verdicts import StoredEngine

        factory = functools.partial(StoredEngine, factory, store)
    try:
        export_crops(args.cache, idents, args.out, cfg["export"], cfg["verify"]["checks"], factory,
                     args.enrich, singletons_of(args.raw_manifest), cfg["embed"]["max_image_pixels"],
                     args.threads, progress=not args.quiet, meta=meta, extra=hidden, worker=worker, store=store)
    finally:
        if store is not None:
            log.info("crop checks: %s", store.stats())
            store.close()


def _store(args, cfg: dict):
    """The results folder's detection store (--detections), shared by the crop checks and both verifies."""
    if not getattr(args, "detections", None):
        return None
    from facesets.export.verdicts import open_store

    return open_store(args.detections, cfg["model"]["pack"], cfg["model"]["root"])


def _bundles(out: str, cfg: dict, names: dict[str, str]) -> None:
    from facesets.export.exporter import CROPS_INDEX, export_bundles

    inputs.existing(f"{out}/{CROPS_INDEX}", "crop index", "run `facesets export-crops` first, or fix the path")
    export_bundles(out, cfg["export"]["top_n"], names=names)


def _verify(paths: list[str], cfg: dict, json_out: str | None, quiet: bool, allow_empty: bool, store=None,
            threads: int = 1) -> int:
    """Exit status 1 on a contract violation, and on an inconsistent member when verify.consistency is fail.
    Without --detections the run keeps its detections in a store of its own (each crop detected once per
    setting, the consistency check's included)."""
    import tempfile

    from facesets.core import atomic
    from facesets.export.verdicts import StoredEngine, open_store
    from facesets.export.verify import table, verify

    for p in paths:
        inputs.existing(p, "bundle or folder", "fix the path (a .fsz file or a folder of them)")
    check_model(cfg)
    v = cfg["verify"]
    floor = None if v["consistency"] == "off" else v["consistency_floor"]
    # the worker's work folder beside what this run writes (the pipeline's results tree, mapped for the worker)
    worker = route(cfg, "verify", Path(json_out).parent if json_out else _folder_of(paths[0]))
    with tempfile.TemporaryDirectory(prefix="facesets-verify-") as tmp:
        own = store is None
        store = open_store(Path(tmp) / "detections.sqlite", cfg["model"]["pack"], cfg["model"]["root"]) if own else store
        try:
            engine = None if worker else StoredEngine(engine_factory(cfg, 1), store)
            rows = verify(paths, engine, v["checks"], cfg["export"]["out_size"], v["max_member_bytes"],
                          progress=not quiet, allow_empty=allow_empty, worker=worker, store=store, threads=threads,
                          floor=floor)
        finally:
            if own:
                store.close()
    print(table(rows))
    broken = [r for r in rows if r["kind"] == "contract"]
    inconsistent = [r for r in rows if r["kind"] == "consistency"]
    failed = bool(broken) or (bool(inconsistent) and v["consistency"] == "fail")
    if json_out:
        stats = {"detections": store.stats()} if not own else {}
        atomic.write_json(json_out, {"ok": not failed, "violations": broken, "inconsistent": inconsistent,
                                     "consistency": {"mode": v["consistency"], "floor": v["consistency_floor"]},
                                     **stats})
    return 1 if failed else 0


def _folder_of(path: str) -> Path:
    return Path(path) if Path(path).is_dir() else Path(path).parent


def cmd_export_crops(args) -> int:
    _crops(args, settings(args))
    return 0


def cmd_export_bundles(args) -> int:
    _bundles(args.out, settings(args), decisions_of(args)["names"])
    return 0


def cmd_export_swap(args) -> int:
    """The seed's one-step form: crops, then bundles, then the contract check."""
    cfg = settings(args)
    _crops(args, cfg)
    _bundles(args.out, cfg, decisions_of(args)["names"])
    return _closing(_store(args, cfg), lambda store: _verify([args.out], cfg, None, args.quiet, allow_empty=True,
                                                               store=store, threads=args.threads))


def cmd_verify(args) -> int:
    cfg = settings(args)
    return _closing(_store(args, cfg), lambda store: _verify(args.paths, cfg, args.json, args.quiet, args.allow_empty,
                                                               store=store, threads=args.threads))


def _closing(store, run):
    """run(store), then the store's connections closed (every thread's)."""
    try:
        return run(store)
    finally:
        if store is not None:
            store.close()


def _crop_flags(p) -> None:
    p.add_argument("--raw-manifest", metavar="JSON", help="raw cluster manifest (its singletons feed --candidates)")
    p.add_argument("--enrich", metavar="NPZ", help="enrich.npz with pose (default: estimate pose from keypoints)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    section_flags(p, "export")
    decisions_flag(p)
    _detections_flag(p)
    threads_flag(p)
    model_flags(p)


def _detections_flag(p) -> None:
    p.add_argument("--detections", metavar="SQLITE", help="detection store shared by the crop checks and verifies "
                   "(the pipeline's results/cache/detections.sqlite): a crop is detected once per setting, ever")


def register(sub) -> None:
    p = command(sub, "export-swap", cmd_export_swap, "crops + .fsz bundles + manifests for roop-unleashed, then verify")
    p.add_argument("cache", metavar="CACHE", help="face cache (faces.npz or a cache folder)")
    p.add_argument("manifest", nargs="+", metavar="MANIFEST",
                   help="refine_manifest.json (and folders / eras manifests)")
    p.add_argument("out", metavar="OUT", help="export folder")
    _crop_flags(p)

    p = command(sub, "export-crops", cmd_export_crops, "(pipeline) ranked single-face crops -> OUT/crops.json")
    p.add_argument("cache", metavar="CACHE", help="face cache (faces.npz or a cache folder)")
    p.add_argument("out", metavar="OUT", help="export folder")
    p.add_argument("--manifest", nargs="+", required=True, metavar="JSON", help="refine / folders / eras manifests")
    _crop_flags(p)

    p = command(sub, "export-bundles", cmd_export_bundles, "(pipeline) .fsz bundles and manifests from OUT/crops.json")
    p.add_argument("out", metavar="OUT", help="export folder holding crops.json")
    section_flags(p, "export", only=("top_n",))
    decisions_flag(p)
    settings_flags(p)

    p = command(sub, "verify-fsz", cmd_verify, "check .fsz bundles against roop's contract; exit 1 on any violation")
    p.add_argument("paths", nargs="+", metavar="PATH", help=".fsz files or folders")
    p.add_argument("--json", metavar="JSON", help="also write the result as JSON")
    p.add_argument("--allow-empty", action="store_true", help="no bundle at all is not an error (empty export)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _detections_flag(p)
    threads_flag(p)
    model_flags(p)
