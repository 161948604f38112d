"""Subcommands of the embed stage: photos -> face cache."""
from __future__ import annotations

import json
import logging

from facesets.cli.common import check_model, command, engine_factory, model_flags, settings
from facesets.core import inputs
from facesets.core.worker_route import route

log = logging.getLogger("facesets")
CACHE_FIX = "run `facesets embed` (or the pipeline's merge_cache step) first, or fix the path"


def _model_route(cfg: dict, store: str):
    """The route to the profile's worker interpreter, or None (after checking the pack here: the model loads in
    this process). The worker checks the pack as it loads it (a failure is its one line), so with a worker this
    process never parses the model files: an embed job then costs one interpreter start more, not two model
    inspections."""
    worker = route(cfg, "embed", store)
    if worker is None:
        check_model(cfg)
    else:
        worker.pack_folder()  # the folder must exist (one line if not); its models are the worker's to load
    return worker


def cmd_embed(args) -> int:
    from facesets.embed.embedder import embed_source

    cfg = settings(args)
    root = inputs.source_root(args.src)
    worker = _model_route(cfg, args.cache)
    name = args.source_name or root.resolve().name or "source"
    stats = embed_source(root, args.cache, name, cfg, engine_factory(cfg, cfg["embed"]["ort_threads"]),
                         progress=not args.quiet, worker=worker)
    print(json.dumps(stats))
    return 0


def cmd_embed_shard(args) -> int:
    from facesets.core import atomic
    from facesets.embed.embedder import embed_source

    cfg = settings(args)
    root = inputs.source_root(args.root)
    worker = _model_route(cfg, args.store)
    stats = embed_source(root, args.store, args.source, cfg, engine_factory(cfg, cfg["embed"]["ort_threads"]),
                         shard=(args.shard, args.shards), progress=not args.quiet, worker=worker)
    atomic.write_json(args.summary, dict(stats, source=args.source, shard=args.shard, shards=args.shards))
    return 0


def cmd_merge_cache(args) -> int:
    from facesets.embed.cache import FaceCache

    sources = dict(s.split("=", 1) for s in args.source)
    for store in args.stores:
        inputs.existing(store, "shard store", "run the pipeline's embed_shard step for it first")
    cache = FaceCache.from_store_dirs(sources, args.stores)
    cache.save(args.out)
    log.info("cache %s: %d faces, %d files", args.out, len(cache), len(cache.files))
    return 0


def cmd_inspect(args) -> int:
    from facesets.embed.inspect_cache import write_csv

    inputs.existing(args.cache, "face cache", CACHE_FIX)
    n = write_csv(args.cache, args.csv)
    log.info("wrote %d rows to %s", n, args.csv)
    return 0


def cmd_worker_check(args) -> int:
    """One photo through the face worker with the configured interpreter, providers and path map."""
    import sys

    from facesets.core import workflow
    from facesets.core.worker_route import Route

    cfg = settings(args)
    workflow.merge_workers_file(cfg)  # a profile's workers.yaml named by workers_file, as the pipeline does
    if args.python:
        cfg["workers"]["python"] = args.python
    cfg["workers"]["python"] = cfg["workers"]["python"] or sys.executable
    inputs.existing(args.photo, "photo", "name a photo file")
    check_model(cfg)
    Route(cfg, "embed", cfg["results"]).check(args.photo)
    return 0


def register(sub) -> None:
    p = command(sub, "embed", cmd_embed, "detect + embed every face of SRC into the resumable cache folder CACHE")
    p.add_argument("src", metavar="SRC", help="photo folder (read only; scanned recursively)")
    p.add_argument("cache", metavar="CACHE", help="face cache folder (created; a re-run adds only what changed)")
    p.add_argument("--source-name", metavar="NAME", help="name recorded for this source (default: SRC's folder name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    model_flags(p)

    p = command(sub, "embed-shard", cmd_embed_shard, "(pipeline) embed one shard of one source into its store")
    p.add_argument("--source", required=True, metavar="NAME", help="the source's name")
    p.add_argument("--root", required=True, metavar="DIR", help="the source's photo folder")
    p.add_argument("--shard", type=int, required=True, metavar="I", help="this shard's number, 0 .. SHARDS-1")
    p.add_argument("--shards", type=int, required=True, metavar="SHARDS", help="shards per source")
    p.add_argument("--store", required=True, metavar="DIR", help="this shard's store folder")
    p.add_argument("--summary", required=True, metavar="JSON", help="write the shard's statistics here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    model_flags(p)

    p = command(sub, "worker-check", cmd_worker_check,
                "run one photo through the face worker (workers.python, its providers and path map); print the "
                "interpreter and the execution provider it got")
    p.add_argument("photo", metavar="PHOTO", help="a photo (its path as this machine sees it; mapped for the worker)")
    p.add_argument("--python", metavar="EXE", help="the worker interpreter (default: workers.python, else this one)")
    model_flags(p)

    p = command(sub, "merge-cache", cmd_merge_cache, "(pipeline) merge shard stores into one cache snapshot")
    p.add_argument("--source", nargs="+", default=[], metavar="NAME=ROOT", help="every source, in config order")
    p.add_argument("--stores", nargs="+", required=True, metavar="DIR", help="the shard stores")
    p.add_argument("--out", required=True, metavar="NPZ", help="the cache snapshot to write (faces.npz)")

    p = command(sub, "inspect", cmd_inspect, "write one CSV row per face / no-face image / alias / skipped file")
    p.add_argument("cache", metavar="CACHE", help="face cache (folder or faces.npz)")
    p.add_argument("--csv", required=True, metavar="CSV", help="the CSV file to write")
