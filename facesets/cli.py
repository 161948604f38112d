"""The `facesets` command line: one subcommand per pipeline step (the Snakemake rules call these)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from . import __version__, logs
from . import config as fsconfig

log = logging.getLogger("facesets")


def _settings(args) -> dict:
    """Config for a direct CLI call: defaults, then --config YAML files, then --settings JSON, then flags."""
    cfg = fsconfig.defaults()
    for p in getattr(args, "config", None) or []:
        cfg = fsconfig.deep_merge(cfg, fsconfig.load(p))
    for overlay in (getattr(args, "settings", None), getattr(args, "runtime", None)):
        if overlay:
            cfg = fsconfig.deep_merge(cfg, json.loads(overlay))
    m = cfg["model"]
    for flag, key in (("model_pack", "pack"), ("det_size", "det_size"), ("det_thresh", "det_thresh")):
        if getattr(args, flag, None) is not None:
            m[key] = getattr(args, flag)
    if getattr(args, "providers", None):
        m["providers"] = args.providers.split(",")
    return fsconfig.validate(cfg)


def _engine_factory(cfg: dict):
    def make():
        from .engine import FaceEngine

        return FaceEngine.from_config(cfg)

    return make


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-pack", help="insightface pack name (buffalo_l) or pack folder path")
    p.add_argument("--providers", help="comma-separated onnxruntime providers, e.g. CUDAExecutionProvider")
    p.add_argument("--det-size", type=int)
    p.add_argument("--det-thresh", type=float)
    p.add_argument("--config", action="append", help="config YAML overlay (repeatable)")
    p.add_argument("--settings", help=argparse.SUPPRESS)  # JSON from Snakemake params (tracked)
    p.add_argument("--runtime", help=argparse.SUPPRESS)  # JSON of speed-only knobs (not tracked)


def cmd_embed(args) -> int:
    from .embed import embed_source

    cfg = _settings(args)
    name = args.source_name or Path(args.src).resolve().name or "source"
    stats = embed_source(args.src, args.cache, name, cfg, _engine_factory(cfg), progress=not args.quiet)
    print(json.dumps(stats))
    return 0


def cmd_embed_shard(args) -> int:
    from . import atomic
    from .embed import embed_source

    cfg = _settings(args)
    stats = embed_source(args.root, args.store, args.source, cfg, _engine_factory(cfg),
                         shard=(args.shard, args.shards), progress=not args.quiet)
    atomic.write_json(args.summary, dict(stats, source=args.source, shard=args.shard, shards=args.shards))
    return 0


def cmd_merge_cache(args) -> int:
    from .cache import FaceCache

    sources = dict(s.split("=", 1) for s in args.source)
    cache = FaceCache.from_store_dirs(sources, args.stores)
    cache.save(args.out)
    log.info("cache %s: %d faces, %d files", args.out, len(cache), len(cache.files))
    return 0


def cmd_inspect(args) -> int:
    from .inspect_cache import write_csv

    n = write_csv(args.cache, args.csv)
    log.info("wrote %d rows to %s", n, args.csv)
    return 0


def cmd_demo_setup(args) -> int:
    from .demo import setup_demo

    cfg_path = setup_demo(Path(args.folder), pack=args.model_pack)
    print(cfg_path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facesets", description=__doc__)
    ap.add_argument("--version", action="version", version=f"facesets {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log", help="also write the log to this file")
    common.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, parents=[common], **k)  # every subcommand takes --log/-v

    p = sub.add_parser("embed", help="detect + embed every face of SRC into the resumable cache folder CACHE")
    p.add_argument("src")
    p.add_argument("cache")
    p.add_argument("--source-name", help="name recorded for this source (default: SRC's folder name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _model_flags(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("embed-shard", help="(pipeline) embed one shard of one source into its store")
    p.add_argument("--source", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--shards", type=int, required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--quiet", action="store_true")
    _model_flags(p)
    p.set_defaults(func=cmd_embed_shard)

    p = sub.add_parser("merge-cache", help="(pipeline) merge shard stores into one cache snapshot")
    p.add_argument("--source", nargs="+", default=[], help="NAME=ROOT ... in config order")
    p.add_argument("--stores", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_merge_cache)

    p = sub.add_parser("inspect", help="write one CSV row per face / no-face image / alias / skipped file")
    p.add_argument("cache")
    p.add_argument("--csv", required=True)
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("demo-setup", help="prepare the offline demo photos and config overlay in FOLDER")
    p.add_argument("folder")
    p.add_argument("--model-pack", help="pack folder (default: $FACESETS_PACK, else buffalo_l)")
    p.set_defaults(func=cmd_demo_setup)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log, args.verbose)
    try:
        return int(args.func(args) or 0)
    except (fsconfig.ConfigError, FileNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    except Exception as exc:  # a clear one-line error for users, full trace in the log
        from .store import StoreLocked

        if isinstance(exc, StoreLocked):
            log.error("%s", exc)
            return 3
        log.exception("%s failed", args.cmd)
        return 1


if __name__ == "__main__":
    sys.exit(main())
