"""Staging work for the curation's model passes and running the stand-alone CLIP worker (scripts/clip_worker.py).

A queue holds every exported crop with its path as the worker's interpreter sees it (config
workers.path_map, e.g. `/mnt/e/` -> `E:\\` for a Windows venv driven from WSL), plus the settings the
worker needs. Results come back keyed by the crop's id (`<faceset>/faces/<file>`), so no reverse
mapping is needed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from facesets.core import atomic
from facesets.core.worker_route import map_path
from facesets.curation.state import inventory

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def stage(export_dir: str | Path, out: str | Path, settings: dict, path_map: list[list[str]]) -> int:
    """The queue of every exported crop; `export` is the export folder as this side sees it (the multi-face
    audit reads the crops there and maps only what it hands the face worker: pass path_map=[] for it)."""
    export_dir = Path(export_dir)
    inv = inventory(export_dir)
    items = [{"id": f"{f}/faces/{c.name}", "path": map_path(export_dir / f / "faces" / c.name, path_map)}
             for f, crops in inv.facesets.items() for c in crops]
    if "pack" in settings and os.path.isdir(os.path.expanduser(settings["pack"])):
        settings = dict(settings, pack=map_path(os.path.expanduser(settings["pack"]), path_map))
    atomic.write_json(out, {"settings": settings, "export": os.path.abspath(export_dir), "items": items})
    return len(items)


def run(worker: str, queue: str | Path, results: str | Path, python: str | None = None,
        path_map: list[list[str]] = ()) -> None:
    """A stand-alone worker script; another interpreter gets the script, queue and results paths mapped too (a
    Windows python.exe cannot open a WSL path). The multi-face audit is not run here: it reads the detection
    store (facesets.curation.multiface)."""
    script = SCRIPTS / f"{worker}_worker.py"
    paths = [map_path(x, path_map) if python else str(x) for x in (script, queue, results)]
    subprocess.run([python or sys.executable, *paths], check=True)


def read_results(path: str | Path | None) -> dict | None:
    """A worker's scores by crop id; None when there are none (no results file, or the worker skipped)."""
    if not path or not Path(path).is_file():
        return None
    return atomic.read_json(path)["results"]


def skipped_reason(path: str | Path | None) -> str | None:
    """Why a worker produced no scores (e.g. open_clip not importable by its interpreter), if it said so."""
    if not path or not Path(path).is_file():
        return None
    return atomic.read_json(path).get("skipped")


# The multi-face audit detects down to this score (or the configured one, if lower) so that the plan can
# apply any `curation.multiface.min_det_score` at or above it to the stored scores without re-running it; at
# model.det_size it is one of the default verify.checks, so the detection store already holds it.
MULTIFACE_DET_FLOOR = 0.3


def score_settings(cfg: dict, worker: str) -> dict:
    """Only what changes a worker's scores (a rule's params): thresholds applied to the scores live in the
    plan rules, and how the worker runs (interpreter, providers, path map) is no part of it."""
    if worker == "multiface":
        floor = min(MULTIFACE_DET_FLOOR, cfg["curation"]["multiface"]["min_det_score"])
        return {"model": {k: cfg["model"][k] for k in ("pack", "det_size", "det_thresh")},
                "curation": {"multiface": {"min_det_score": floor}}}
    occ = cfg["curation"]["occlusion"]
    return {"curation": {"occlusion": {k: occ[k] for k in ("model", "pretrained", "prompts", "batch_size")}}}


def queue_settings(cfg: dict, worker: str) -> dict:
    """The settings a worker's queue carries: its score settings, plus where its model is and how to run it."""
    if worker == "multiface":
        s = score_settings(cfg, worker)
        return {"det_size": cfg["model"]["det_size"], "det_thresh": s["curation"]["multiface"]["min_det_score"]}
    return score_settings(cfg, worker)["curation"]["occlusion"]
