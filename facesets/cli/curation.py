"""Subcommands of the curation stage: export -> worker scores -> plans -> the curated corpus (and audit)."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from facesets.cli.common import check_model, command, engine_factory, model_flags, settings, settings_flags, threads_flag
from facesets.cli.embed import CACHE_FIX
from facesets.cli.review import decisions_flag, decisions_of
from facesets.core import inputs, messages
from facesets.core.errors import InputError

log = logging.getLogger("facesets")
PASSES = ("occlusion", "consolidate", "bytedup", "neardup", "multiface")
EXPORT_FIX = "run `facesets export-crops` first, or fix the path"


def cmd_stage_worker(args) -> int:
    from facesets.curation.workers import queue_settings, stage

    cfg = settings(args)
    inputs.existing(args.export, "export folder", EXPORT_FIX)
    path_map = cfg["workers"]["path_map"] if args.worker == "clip" else []  # the audit maps what it hands over
    n = stage(args.export, args.out, queue_settings(cfg, args.worker), path_map)
    log.info("staged %d crops for the %s worker in %s", n, args.worker, args.out)
    return 0


def cmd_run_worker(args) -> int:
    from facesets.curation.workers import run

    cfg = settings(args)
    inputs.existing(args.queue, "worker queue", "run `facesets stage-worker` first, or fix the path")
    if args.worker == "multiface":
        _multiface(args, cfg)
    else:
        run(args.worker, args.queue, args.results, cfg["workers"]["python"], cfg["workers"]["path_map"])
    return 0


def _multiface(args, cfg: dict) -> None:
    """The audit reads the detection store (--detections; without it, a store for this run only)."""
    import tempfile

    from facesets.curation.multiface import audit
    from facesets.export.verdicts import open_store

    check_model(cfg)
    with tempfile.TemporaryDirectory(prefix="facesets-detections-") as tmp:
        store = open_store(args.detections or Path(tmp) / "detections.sqlite", cfg["model"]["pack"],
                           cfg["model"]["root"])
        try:
            audit(args.queue, args.results, cfg, store, engine_factory(cfg, 1), args.threads)
        finally:
            store.close()


def cmd_plan(args) -> int:
    from facesets.core import atomic
    from facesets.curation import plans as P
    from facesets.curation.planfiles import read_plans
    from facesets.curation.state import inventory
    from facesets.curation.workers import read_results
    from facesets.embed.cache import FaceCache
    from facesets.review.steer import steer

    cur = settings(args)["curation"]
    inputs.existing(args.export, "export folder", EXPORT_FIX)
    name = args.pass_name
    if name in ("consolidate", "neardup"):
        inputs.needed(args.cache, f"plan {name}", "--cache CACHE", "the face cache the export was made from")
        inputs.existing(args.cache, "face cache", CACHE_FIX)
    inv = inventory(args.export)
    prior = P.prior_state(inv, read_plans(args.prior))
    skipped = _occlusion_skip(args, cur["occlusion"]["enabled"]) if name == "occlusion" else None
    cache = FaceCache.load(args.cache) if name in ("consolidate", "neardup") else None
    plan = P.make(name, inv, prior, args.export, cache, cur, read_results(args.results), skipped)
    plan = steer(plan, inv, prior, decisions_of(args))  # the person's keep / same / different
    atomic.write_json(args.out, plan)
    log.info("plan %s: %s", plan["pass"], plan["stats"] or "no changes")
    return 0


def _occlusion_skip(args, enabled: str) -> str | None:
    """Why there are no CLIP scores: switched off by the person, or unable to run (said loudly: a log
    warning here, the plan's reason, and a banner in the report)."""
    from facesets.curation.workers import skipped_reason

    if args.results:
        why = skipped_reason(args.results)  # the worker ran in another interpreter and said why it could not
    elif enabled == "off":
        return messages.OCCLUSION_OFF
    else:  # auto, and this interpreter has no open_clip (the rule gave no worker results)
        why = messages.OCCLUSION_CANNOT_RUN.format(python=sys.executable)
    if why:
        log.warning("occlusion filter: %s", why)
    return why


def cmd_apply(args) -> int:
    from facesets.curation import corpus
    from facesets.curation.planfiles import dry_run_lines, read_plans

    cfg = settings(args)
    inputs.existing(args.export, "export folder", "run `facesets export-bundles` first, or fix the path")
    plans = read_plans(args.plans)
    if args.dry_run:
        print("\n".join(dry_run_lines(args.export, plans, cfg["curation"]["thin_below"])))
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


def _audit_paths(args) -> None:
    """A results folder stands for every path of its layout; a flag still overrides one of them."""
    from facesets.core.layout import Layout

    lay = Layout(args.results)
    if not lay.results.is_dir():
        raise InputError(messages.INPUT_MISSING.format(what="results folder", path=lay.results,
                                                       fix="pass the folder the pipeline wrote (config results)"))
    for attr, path in (("cache", lay.cache), ("refine", lay.refine_manifest), ("raw", lay.raw_manifest),
                       ("export", lay.export), ("corpus", lay.corpus)):
        if getattr(args, attr) is None and path.exists():
            setattr(args, attr, str(path))


def cmd_audit(args) -> int:
    """With a results folder, the bundles' re-detection reads and fills its detection store: verdicts the
    pipeline made are not made again."""
    from facesets.core.layout import Layout
    from facesets.curation.audit import audit
    from facesets.export.verdicts import StoredEngine, open_store

    cfg = settings(args)
    if args.results:
        _audit_paths(args)
    engine = None
    if args.corpus and not args.no_verify:
        check_model(cfg)
        factory = engine_factory(cfg, 1)
        if args.results and Layout(args.results).detections.is_file():
            store = open_store(Layout(args.results).detections, cfg["model"]["pack"], cfg["model"]["root"])
            engine = StoredEngine(factory, store)  # the model loads only for a crop the store does not know
        else:
            engine = factory()
    try:
        problems = audit(args.cache, args.refine, args.raw, args.export, args.corpus, engine, cfg["verify"]["checks"],
                         cfg["export"]["out_size"], args.threads)
    finally:
        if isinstance(engine, StoredEngine):
            engine.store.close()
    for p in problems:
        print(p)
    if isinstance(engine, StoredEngine):
        print(f"audit: bundle re-detection {engine.store.stats()}")
    print(f"audit: {len(problems)} problem(s)")
    return 1 if problems else 0


def register(sub) -> None:
    p = command(sub, "stage-worker", cmd_stage_worker,
                "write a worker queue.json of every exported crop (paths mapped)")
    p.add_argument("worker", choices=["multiface", "clip"], help="which worker the queue is for")
    p.add_argument("--export", required=True, metavar="DIR", help="export folder")
    p.add_argument("--out", required=True, metavar="JSON", help="the queue file to write")
    model_flags(p)

    p = command(sub, "run-worker", cmd_run_worker,
                "score a worker queue: clip runs scripts/clip_worker.py with the configured interpreter; multiface "
                "reads the detection store and detects only the crops it does not hold")
    p.add_argument("worker", choices=["multiface", "clip"], help="which worker to run")
    p.add_argument("queue", metavar="QUEUE", help="the queue written by `facesets stage-worker`")
    p.add_argument("results", metavar="RESULTS", help="the results JSON the worker writes")
    p.add_argument("--detections", metavar="SQLITE", help="(multiface) the detection store shared with the crop "
                   "checks and verifies (the pipeline's results/cache/detections.sqlite)")
    threads_flag(p)
    model_flags(p)

    p = command(sub, "plan", cmd_plan, "write one curation pass's plan (reviewable JSON; nothing is moved)")
    p.add_argument("pass_name", metavar="PASS", choices=PASSES, help="the pass: " + ", ".join(PASSES))
    p.add_argument("--export", required=True, metavar="DIR", help="export folder")
    p.add_argument("--cache", metavar="CACHE", help="face cache (needed by consolidate and neardup)")
    p.add_argument("--results", metavar="JSON", help="worker results.json (occlusion, multiface)")
    p.add_argument("--prior", nargs="*", default=[], metavar="JSON", help="plans of the earlier passes")
    p.add_argument("--out", required=True, metavar="JSON", help="the plan file to write")
    decisions_flag(p)
    settings_flags(p)

    p = command(sub, "apply", cmd_apply, "bring the curated corpus to what the plans describe (journaled)")
    p.add_argument("plans", nargs="*", metavar="PLAN", help="plan files (any order; applied in pass order)")
    p.add_argument("--export", required=True, metavar="DIR", help="export folder")
    p.add_argument("--corpus", required=True, metavar="DIR", help="the curated corpus folder")
    p.add_argument("--out", metavar="JSON", help="write the apply summary here")
    p.add_argument("--dry-run", action="store_true", help="print every planned change and the resulting counts")
    settings_flags(p)

    p = command(sub, "undo", cmd_undo, "restore the corpus to its state before any applied plan")
    p.add_argument("corpus", metavar="CORPUS", help="the curated corpus folder")

    p = command(sub, "audit", cmd_audit, "check that nothing was lost: faces, crops, bundles, journal")
    p.add_argument("results", nargs="?", metavar="RESULTS",
                   help="a results folder: audit every part of it (the flags override one)")
    p.add_argument("--cache", metavar="CACHE", help="face cache")
    p.add_argument("--refine", metavar="JSON", help="refine_manifest.json")
    p.add_argument("--raw", metavar="JSON", help="raw cluster manifest.json")
    p.add_argument("--export", metavar="DIR", help="export folder (default: beside the corpus)")
    p.add_argument("--corpus", metavar="DIR", help="curated corpus (facesets_swap_ready)")
    p.add_argument("--no-verify", action="store_true", help="skip re-detecting every bundle's crops")
    threads_flag(p)
    model_flags(p)
