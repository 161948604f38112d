"""The `facesets` command line: one subcommand per pipeline step (the Snakemake rules call these)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from facesets import __version__
from facesets.core import config as fsconfig
from facesets.core import logs

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


def _engine_factory(cfg: dict, threads: int = 0):
    def make():
        from facesets.core.engine import FaceEngine

        return FaceEngine.from_config(cfg, threads=threads)

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
    from facesets.embed.embedder import embed_source

    cfg = _settings(args)
    name = args.source_name or Path(args.src).resolve().name or "source"
    stats = embed_source(args.src, args.cache, name, cfg, _engine_factory(cfg, cfg["embed"]["ort_threads"]),
                         progress=not args.quiet)
    print(json.dumps(stats))
    return 0


def cmd_embed_shard(args) -> int:
    from facesets.core import atomic
    from facesets.embed.embedder import embed_source

    cfg = _settings(args)
    stats = embed_source(args.root, args.store, args.source, cfg, _engine_factory(cfg, cfg["embed"]["ort_threads"]),
                         shard=(args.shard, args.shards), progress=not args.quiet)
    atomic.write_json(args.summary, dict(stats, source=args.source, shard=args.shard, shards=args.shards))
    return 0


def cmd_merge_cache(args) -> int:
    from facesets.embed.cache import FaceCache

    sources = dict(s.split("=", 1) for s in args.source)
    cache = FaceCache.from_store_dirs(sources, args.stores)
    cache.save(args.out)
    log.info("cache %s: %d faces, %d files", args.out, len(cache), len(cache.files))
    return 0


def cmd_inspect(args) -> int:
    from facesets.embed.inspect_cache import write_csv

    n = write_csv(args.cache, args.csv)
    log.info("wrote %d rows to %s", n, args.csv)
    return 0


def cmd_demo_setup(args) -> int:
    from facesets.cli.demo import setup_demo

    cfg_path = setup_demo(Path(args.folder), pack=args.model_pack)
    print(cfg_path)
    return 0


def _section_flags(p: argparse.ArgumentParser, section: str) -> None:
    """One --flag per config key of `section`, typed and defaulted from the schema (CLI == pipeline)."""
    props = fsconfig.schema()["properties"][section]["properties"]
    types = {"number": float, "integer": int, "string": str}
    for key, spec in props.items():
        t = spec.get("type")
        if t not in types:
            continue
        p.add_argument("--" + key.replace("_", "-"), dest=f"{section}__{key}", type=types[t],
                       default=spec.get("default"), help=f"{spec.get('description', '')} (default {spec.get('default')})")


def _section(args, section: str) -> dict:
    pre = f"{section}__"
    cfg = fsconfig.defaults()
    cfg[section].update({k[len(pre):]: v for k, v in vars(args).items() if k.startswith(pre)})
    return fsconfig.validate(cfg)[section]


def _link_mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--link-mode", choices=["hardlink", "symlink", "copy"],
                   default=fsconfig.defaults()["identities"]["link_mode"])


def cmd_cluster(args) -> int:
    from facesets.identities import cluster_stage

    c = _section(args, "cluster")
    cluster_stage.run(args.cache, args.out, c["threshold"], c["extend_threshold"], args.link_mode, progress=True)
    return 0


def cmd_refine(args) -> int:
    from facesets.identities import refine

    refine.run(args.cache, args.out, _section(args, "refine"), args.link_mode, progress=True)
    return 0


def cmd_extend(args) -> int:
    """Fold new faces into existing outputs with the parameters those outputs were made with."""
    from facesets.identities import cluster_stage, refine
    from facesets.identities import shared as identities

    raw = identities.read_ledger(Path(args.raw_out))
    if raw is None:
        raise FileNotFoundError(f"no earlier cluster output in {args.raw_out}: run `facesets cluster` first")
    cluster_stage.run(args.cache, args.raw_out, raw["params"]["threshold"], raw["params"]["extend_threshold"],
                      args.link_mode)
    if args.refine_out:
        prev = identities.read_ledger(Path(args.refine_out))
        if prev is None:
            raise FileNotFoundError(f"no earlier refine output in {args.refine_out}: run `facesets refine` first")
        params = dict(fsconfig.defaults()["refine"], **prev["params"])
        refine.run(args.cache, args.refine_out, params, args.link_mode)
    return 0


def cmd_dedup(args) -> int:
    from facesets.identities import dedup

    rep = dedup.run(args.cache, _section(args, "dedup")["similarity"], args.out)
    print(json.dumps(rep["stats"]))
    return 0


def cmd_enrich(args) -> int:
    from facesets.core.engine import BASE_MODULES, LANDMARK_MODULES, FaceEngine
    from facesets.identities import enrich

    cfg = _settings(args)

    def factory():
        return FaceEngine.from_config(cfg, modules=BASE_MODULES + LANDMARK_MODULES)

    out = args.out or str(Path(args.cache).with_name("enrich.npz"))
    stats = enrich.run(args.cache, out, factory if not args.kps_only else None,
                       cfg["embed"]["max_image_pixels"], progress=True)
    print(json.dumps(stats))
    return 0


def cmd_evaluate(args) -> int:
    from facesets.identities.evaluate import evaluate

    result = evaluate(args.manifest, args.labels, args.root, args.cache)
    if args.out:
        from facesets.core import atomic

        atomic.write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


def _export_params(args) -> dict:
    cfg = _settings(args)
    ex = cfg["export"]
    for key in ("top_n", "outlier_threshold", "min_face_short", "pad_ratio", "out_size"):
        if getattr(args, key, None) is not None:
            ex[key] = getattr(args, key)
    if getattr(args, "candidates", False):
        ex["candidates"] = True
    return fsconfig.validate(cfg)


def _export_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-n", type=int)
    p.add_argument("--outlier-threshold", type=float)
    p.add_argument("--min-face-short", type=float)
    p.add_argument("--pad-ratio", type=float)
    p.add_argument("--out-size", type=int)
    p.add_argument("--candidates", action="store_true", help="rescue matching singletons into _candidates/")
    p.add_argument("--raw-manifest", help="raw cluster manifest (its singletons feed --candidates)")
    p.add_argument("--enrich", help="enrich.npz with pose (default: estimate pose from keypoints)")
    p.add_argument("--quiet", action="store_true")
    _model_flags(p)


def _identities_of(manifest_paths: list[str]) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Identities to export from refine, folders and eras manifests (and their bundle names/markers)."""
    from facesets.core import atomic

    idents, meta = {}, {}
    for path in manifest_paths:
        m = atomic.read_json(path)
        groups = dict(m.get("facesets", m.get("persons", {})))
        groups.update(m.get("thin_eras", {}))
        for n, g in groups.items():
            idents[n] = [k for k, _ in (g["faces"] if isinstance(g, dict) else g)]
            if m.get("kind") == "folders":
                meta[n] = {"bundle_prefix": g["label"], "markers": {f"{g['label']}.txt": f"{g['label']}: {g['folder']}\n"}}
            elif m.get("kind") == "eras":
                meta[n] = {"markers": {f"{g['label']}.txt": f"{n}: era of {g['parent']}, dominant year "
                                                             f"{g['dominant_year']}, {g['n_faces']} faces\n"},
                           "thin": g["thin"]}
    return idents, meta


def _singletons_of(raw_manifest: str | None) -> list[str]:
    from facesets.core import atomic

    return [k for k, _ in atomic.read_json(raw_manifest)["singletons"]] if raw_manifest else []


def cmd_export_crops(args) -> int:
    from facesets.export.exporter import export_crops

    cfg = _export_params(args)
    idents, meta = _identities_of(args.manifest)
    export_crops(args.cache, idents, args.out, cfg["export"], cfg["verify"]["checks"],
                 _engine_factory(cfg), args.enrich, _singletons_of(args.raw_manifest),
                 cfg["embed"]["max_image_pixels"], cfg["embed"]["io_threads"], progress=not args.quiet, meta=meta)
    return 0


def cmd_export_bundles(args) -> int:
    from facesets.export.exporter import export_bundles

    cfg = _export_params(args)
    export_bundles(args.out, cfg["export"]["top_n"])
    return 0


def cmd_export_swap(args) -> int:
    """The seed's one-step form: crops, then bundles, then the contract check."""
    cmd_export_crops(args)
    cmd_export_bundles(args)
    return cmd_verify(argparse.Namespace(**{**vars(args), "paths": [args.out], "json": None, "allow_empty": True}))


def cmd_verify(args) -> int:
    from facesets.core import atomic
    from facesets.core.engine import FaceEngine
    from facesets.export.verify import table, verify

    cfg = _settings(args)
    rows = verify(args.paths, FaceEngine.from_config(cfg), cfg["verify"]["checks"], cfg["export"]["out_size"],
                  cfg["verify"]["max_member_bytes"], progress=not getattr(args, "quiet", False),
                  allow_empty=getattr(args, "allow_empty", False))
    print(table(rows))
    if args.json:
        atomic.write_json(args.json, {"ok": not rows, "violations": rows})
    return 1 if rows else 0


def _read_plans(paths: list[str]) -> list[dict]:
    from facesets.core import atomic

    plans = [atomic.read_json(p) for p in paths or []]
    from facesets.curation.plans import ORDER

    return sorted(plans, key=lambda p: ORDER.index(p["pass"]) if p["pass"] in ORDER else len(ORDER))


def cmd_stage_worker(args) -> int:
    from facesets.curation.workers import queue_settings, stage

    cfg = _settings(args)
    n = stage(args.export, args.out, queue_settings(cfg, args.worker), cfg["workers"]["path_map"])
    log.info("staged %d crops for the %s worker in %s", n, args.worker, args.out)
    return 0


def cmd_run_worker(args) -> int:
    from facesets.curation.workers import run

    cfg = _settings(args)
    run(args.worker, args.queue, args.results, cfg["workers"]["python"])
    return 0


def cmd_plan(args) -> int:
    from facesets.core import atomic
    from facesets.curation import plans as P
    from facesets.curation.corpus import inventory
    from facesets.curation.workers import read_results
    from facesets.embed.cache import FaceCache

    cfg = _settings(args)
    cur = cfg["curation"]
    inv = inventory(args.export)
    prior = P.prior_state(inv, _read_plans(args.prior))
    if args.pass_name == "occlusion":
        plan = P.plan_occlusion(inv, read_results(args.results), cur["occlusion"],
                                skipped=None if args.results else "occlusion filter off (curation.occlusion.enabled)")
    elif args.pass_name == "consolidate":
        plan = P.plan_consolidate(inv, prior, FaceCache.load(args.cache), cur["consolidate"],
                                  cur["bytedup"]["family_regex"])
    elif args.pass_name == "bytedup":
        plan = P.plan_bytedup(inv, prior, Path(args.export), cur["bytedup"])
    elif args.pass_name == "neardup":
        plan = P.plan_neardup(inv, prior, FaceCache.load(args.cache), cur["neardup"])
    else:
        plan = P.plan_multiface(inv, prior, read_results(args.results) or {}, cur["multiface"])
    atomic.write_json(args.out, plan)
    log.info("plan %s: %s", plan["pass"], plan["stats"] or "no changes")
    return 0


def cmd_apply(args) -> int:
    from facesets.curation import corpus

    cfg = _settings(args)
    plans = _read_plans(args.plans)
    if args.dry_run:
        from facesets.curation.corpus import counts, desired, inventory

        inv = inventory(args.export)
        want = desired(inv, plans, cfg["curation"]["thin_below"])
        for p in plans:
            for ch in p["changes"]:
                print(f'{p["pass"]:<12} {ch["action"]:<10} {ch["faceset"]:<16} {ch.get("crop", ch.get("into", ch.get("to", ""))):<40} {ch["reason"]}')
        print(json.dumps(counts(inv, want)))
        return 0
    used = {"curation": cfg["curation"], "export": {"top_n": cfg["export"]["top_n"]}}
    stats = corpus.apply(args.export, args.corpus, plans, used, cfg["curation"]["thin_below"])
    if args.out:
        from facesets.core import atomic

        atomic.write_json(args.out, stats)
    print(json.dumps(stats))
    return 0


def cmd_undo(args) -> int:
    from facesets.core.layout import Layout
    from facesets.curation import corpus
    from facesets.report import render as report

    layout = Layout.of_corpus(args.corpus)
    print(json.dumps(corpus.undo(args.corpus, layout.applied if layout else None)))
    if layout and (layout.report_dir / "index.html").is_file():
        report.build(layout.results, layout.report_dir)  # so the report says "not applied" right away
    return 0


def cmd_folders(args) -> int:
    from facesets.identities import folders

    cfg = _settings(args)
    folders.run(args.cache, args.out, cfg["folders"], args.refine_manifest)
    return 0


def cmd_eras(args) -> int:
    from facesets.identities import eras

    cfg = _settings(args)
    e = cfg["eras"]
    identities = args.identity or e["identities"]
    year_cache = args.year_cache or str(Path(args.cache).with_name("exif_years.json"))
    eras.run(args.cache, args.out, args.manifest, identities, e, e["probe_thresholds"], year_cache)
    return 0


def cmd_report(args) -> int:
    from facesets.report.render import build

    print(build(args.results, args.out or str(Path(args.results) / "report")))
    return 0


def cmd_sweep_point(args) -> int:
    from facesets.identities.sweep import point

    cfg = _settings(args)
    print(json.dumps(point(args.cache, args.out, args.combo, cfg, cfg["evaluate"]["labels"], cfg["evaluate"]["root"])))
    return 0


def cmd_sweep_summary(args) -> int:
    from facesets.identities.sweep import summarize

    cfg = _settings(args)
    print(json.dumps(summarize(args.metrics, args.out, cfg["sweep"]["metric"])))
    return 0


def cmd_audit(args) -> int:
    from facesets.core.engine import FaceEngine
    from facesets.curation.audit import audit

    cfg = _settings(args)
    if args.results:
        # a results folder stands for every path of its layout; a flag still overrides one of them
        from facesets.core.layout import Layout

        lay = Layout(args.results)
        if not lay.results.is_dir():
            raise FileNotFoundError(f"results folder {lay.results} not found: pass the folder the pipeline wrote")
        for attr, path in (("cache", lay.cache), ("refine", lay.refine_manifest), ("raw", lay.raw_manifest),
                           ("export", lay.export), ("corpus", lay.corpus)):
            if getattr(args, attr) is None and path.exists():
                setattr(args, attr, str(path))
    engine = FaceEngine.from_config(cfg) if args.corpus and not args.no_verify else None
    problems = audit(args.cache, args.refine, args.raw, args.export, args.corpus, engine, cfg["verify"]["checks"],
                     cfg["export"]["out_size"])
    for p in problems:
        print(p)
    print(f"audit: {len(problems)} problem(s)")
    return 1 if problems else 0


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

    p = sub.add_parser("cluster", help="raw clusters: person_NNN/ _singletons/ _noface/ + manifest.json")
    p.add_argument("cache")
    p.add_argument("out")
    _section_flags(p, "cluster")
    _link_mode(p)
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("refine", help="refined facesets: faceset_NNN/ + refine_manifest.json")
    p.add_argument("cache")
    p.add_argument("out")
    _section_flags(p, "refine")
    _link_mode(p)
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("extend", help="fold new faces into existing raw (and refine) output without renumbering")
    p.add_argument("cache")
    p.add_argument("raw_out")
    p.add_argument("--refine-out")
    _link_mode(p)
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("dedup", help="byte-identical and visual near-duplicate groups -> <cache>.duplicates.json")
    p.add_argument("cache")
    p.add_argument("--out")
    _section_flags(p, "dedup")
    p.set_defaults(func=cmd_dedup)

    p = sub.add_parser("enrich", help="landmarks + pose per face (estimated from 5 keypoints without landmark models)")
    p.add_argument("cache")
    p.add_argument("--out", help="sidecar path (default: enrich.npz beside the cache)")
    p.add_argument("--kps-only", action="store_true", help="skip the landmark models even if the pack has them")
    _model_flags(p)
    p.set_defaults(func=cmd_enrich)

    p = sub.add_parser("evaluate", help="score a manifest against a labels CSV (pairwise/BCubed P/R/F, NMI)")
    p.add_argument("manifest")
    p.add_argument("--labels", required=True)
    p.add_argument("--root", required=True, help="folder the labels' paths are relative to")
    p.add_argument("--cache", help="cache the manifest was made from (default: recorded in the manifest)")
    p.add_argument("--out", help="also write the JSON here (atomically)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export-swap", help="crops + .fsz bundles + manifests for roop-unleashed, then verify")
    p.add_argument("cache")
    p.add_argument("manifest", nargs="+", help="refine_manifest.json (and folders / eras manifests)")
    p.add_argument("out")
    _export_flags(p)
    p.set_defaults(func=cmd_export_swap)

    p = sub.add_parser("export-crops", help="(pipeline) ranked single-face crops -> OUT/crops.json")
    p.add_argument("cache")
    p.add_argument("out")
    p.add_argument("--manifest", nargs="+", required=True, help="refine / folders / eras manifests")
    _export_flags(p)
    p.set_defaults(func=cmd_export_crops)

    p = sub.add_parser("export-bundles", help="(pipeline) .fsz bundles and manifests from OUT/crops.json")
    p.add_argument("out")
    _export_flags(p)
    p.set_defaults(func=cmd_export_bundles)

    p = sub.add_parser("verify-fsz", help="check .fsz bundles against roop's contract; exit 1 on any violation")
    p.add_argument("paths", nargs="+", help=".fsz files or folders")
    p.add_argument("--json", help="also write the result as JSON")
    p.add_argument("--allow-empty", action="store_true", help="no bundle at all is not an error (empty export)")
    p.add_argument("--quiet", action="store_true")
    _model_flags(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("stage-worker", help="write a worker queue.json of every exported crop (paths mapped)")
    p.add_argument("worker", choices=["multiface", "clip"])
    p.add_argument("--export", required=True)
    p.add_argument("--out", required=True)
    _model_flags(p)
    p.set_defaults(func=cmd_stage_worker)

    p = sub.add_parser("run-worker", help="run scripts/<worker>_worker.py with the configured interpreter")
    p.add_argument("worker", choices=["multiface", "clip"])
    p.add_argument("queue")
    p.add_argument("results")
    _model_flags(p)
    p.set_defaults(func=cmd_run_worker)

    p = sub.add_parser("plan", help="write one curation pass's plan (reviewable JSON; nothing is moved)")
    p.add_argument("pass_name", choices=["occlusion", "consolidate", "bytedup", "neardup", "multiface"])
    p.add_argument("--export", required=True)
    p.add_argument("--cache")
    p.add_argument("--results", help="worker results.json (occlusion, multiface)")
    p.add_argument("--prior", nargs="*", default=[], help="plans of the earlier passes")
    p.add_argument("--out", required=True)
    _model_flags(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("apply", help="bring the curated corpus to what the plans describe (journaled)")
    p.add_argument("plans", nargs="*")
    p.add_argument("--export", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", help="write the apply summary here")
    p.add_argument("--dry-run", action="store_true", help="print every planned change and the resulting counts")
    _model_flags(p)
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("undo", help="restore the corpus to its state before any applied plan")
    p.add_argument("corpus")
    p.set_defaults(func=cmd_undo)

    p = sub.add_parser("folders", help="identities from hand-sorted folders (config folders.trusted / .mixed)")
    p.add_argument("cache")
    p.add_argument("out")
    p.add_argument("--refine-manifest", help="new folder identities are numbered after its facesets")
    _model_flags(p)
    p.set_defaults(func=cmd_folders)

    p = sub.add_parser("eras", help="probe + split identities into era facesets by EXIF year (or extend them)")
    p.add_argument("cache")
    p.add_argument("out")
    p.add_argument("--manifest", nargs="+", required=True, help="manifests holding the identities (refine, folders)")
    p.add_argument("--identity", action="append", help="faceset to split (default: config eras.identities)")
    p.add_argument("--year-cache", help="EXIF year cache (default: exif_years.json beside the cache)")
    _model_flags(p)
    p.set_defaults(func=cmd_eras)

    p = sub.add_parser("report", help="self-contained HTML report of a results folder")
    p.add_argument("results", help="the pipeline's results folder")
    p.add_argument("--out", help="report folder (default: RESULTS/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sweep-point", help="(pipeline) one threshold combination: refine + metrics.json")
    p.add_argument("cache")
    p.add_argument("out")
    p.add_argument("--combo", required=True)
    _model_flags(p)
    p.set_defaults(func=cmd_sweep_point)

    p = sub.add_parser("sweep-summary", help="(pipeline) summary.csv, plots and summary.html of a sweep")
    p.add_argument("out")
    p.add_argument("--metrics", nargs="+", required=True)
    _model_flags(p)
    p.set_defaults(func=cmd_sweep_summary)

    p = sub.add_parser("audit", help="check that nothing was lost: faces, crops, bundles, journal")
    p.add_argument("results", nargs="?", help="a results folder: audit every part of it (the flags override one)")
    p.add_argument("--cache")
    p.add_argument("--refine", help="refine_manifest.json")
    p.add_argument("--raw", help="raw cluster manifest.json")
    p.add_argument("--export", help="export folder (default: beside the corpus)")
    p.add_argument("--corpus", help="curated corpus (facesets_swap_ready)")
    p.add_argument("--no-verify", action="store_true", help="skip re-detecting every bundle's crops")
    _model_flags(p)
    p.set_defaults(func=cmd_audit)

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
        from facesets.curation.corpus import CorpusLocked
        from facesets.embed.store import StoreLocked

        if isinstance(exc, (StoreLocked, CorpusLocked)):
            log.error("%s", exc)
            return 3
        log.exception("%s failed", args.cmd)
        return 1


if __name__ == "__main__":
    sys.exit(main())
