"""Threshold sweeps: every combination of swept values is its own target, named by its values
(`refine.initial_threshold~0.5__curation.neardup.similarity~0.9`), so adding a value runs only the new
combinations and every combination reuses the one embed cache.

A point runs what the pipeline runs after embed -- cluster (when a cluster key is swept), refine, export,
the curation plans and apply (facesets.curation.downstream) -- in its own folder laid out like a results
folder, and scores the final corpus (the bundles a person would load) like the pipeline's evaluation.
Any numeric key of `cluster`, `refine`, `export` and `curation` can be swept.
"""
from __future__ import annotations

import copy
import csv
import itertools
import logging
from pathlib import Path

import numpy as np

from facesets.core import atomic, messages
from facesets.core.errors import ConfigError
from facesets.identities import cluster_stage, refine

log = logging.getLogger(__name__)
SEP, EQ = "__", "~"
SECTIONS = ("cluster", "refine", "export", "curation")
SCORES = ("bcubed_precision", "bcubed_recall", "bcubed_f", "pairwise_precision", "pairwise_recall", "pairwise_f",
          "nmi", "identities_split", "clusters_merged", "coverage", "coverage_of_gated")


def combos(params: dict[str, list[float]], config: dict | None = None) -> list[str]:
    """The combinations' names; with `config`, every swept key is checked to be a numeric setting first."""
    if not params:
        return []
    keys = sorted(params)
    if config is not None:
        for k in keys:
            if isinstance(_default(config, k), int) and any(float(v) != int(v) for v in params[k]):
                raise ConfigError(messages.SWEEP_WHOLE.format(key=k, values=params[k]))
    return [SEP.join(f"{k}{EQ}{v:g}" for k, v in zip(keys, vals)) for vals in itertools.product(*(params[k] for k in keys))]


def parse(combo: str) -> dict[str, float]:
    out = {}
    for part in combo.split(SEP):
        k, _, v = part.partition(EQ)
        out[k] = float(v)
    return out


def _default(config: dict, key: str):
    """The configured value of a swept key (a number in one of SECTIONS), or one line saying why it can't be swept."""
    node = config
    parts = key.split(".")
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    if parts[0] not in SECTIONS or isinstance(node, bool) or not isinstance(node, (int, float)):
        raise ConfigError(messages.SWEEP_KEY.format(key=key, sections=", ".join(SECTIONS)))
    return node


def with_values(config: dict, values: dict[str, float]) -> dict:
    """A copy of the config with the combination's values (a whole-number setting stays whole)."""
    cfg = copy.deepcopy(config)
    for k, v in values.items():
        *path, last = k.split(".")
        node = cfg
        for part in path:
            node = node[part]
        node[last] = int(v) if isinstance(_default(config, k), int) else v
    return cfg


def point(cache_path: str | Path, out_dir: str | Path, combo: str, cfg: dict, store, engine_factory, *,
          enrich: str | Path | None = None, raw_manifest: str | Path | None = None,
          clip_results: str | Path | None = None, threads: int = 1, reuse_export: str | Path | None = None) -> dict:
    """The combination's whole post-embed run in out_dir (a results-folder layout) and its metrics.json: the
    final corpus's scores against `evaluate.labels` (precision, coverage, splits, merges, losses by stage)
    and the refine stage's coverage beside them."""
    from facesets.core.layout import Layout
    from facesets.curation import downstream

    lay = Layout(out_dir)
    values = parse(combo)
    run_cfg = with_values(cfg, values)
    metrics: dict = {"combo": combo, **values}
    if any(k.startswith("cluster.") for k in values):
        raw = cluster_stage.run(cache_path, lay.raw, run_cfg["cluster"]["threshold"],
                                run_cfg["cluster"]["extend_threshold"], "symlink")
        metrics.update(raw_persons=raw["stats"]["persons"], raw_singletons=raw["stats"]["singletons"])
        raw_manifest = lay.raw_manifest
    man = refine.run(cache_path, lay.refined, run_cfg["refine"], "symlink")
    sizes = [fs["n_faces"] for fs in man["facesets"].values()]
    st = man["stats"]
    metrics.update(facesets=len(sizes), faces_in_facesets=st["faces_in_facesets"],
                   size_median=float(np.median(sizes)) if sizes else 0, quality_removed=st["quality_removed_total"],
                   outliers_removed=st["outliers_removed_total"], too_small_faces=st["too_small_faces_total"])
    applied = downstream.run(lay, cache_path, run_cfg, store, engine_factory, enrich=enrich, raw_manifest=raw_manifest,
                             clip=(clip_results, cfg["export"]), threads=threads, reuse=reuse_export)
    metrics.update(final_facesets=applied["counts"]["active_facesets"], final_pngs=applied["counts"]["active_pngs"])
    labels = cfg["evaluate"]["labels"]
    if labels:
        from facesets.identities.evaluate import evaluate_stage

        final = evaluate_stage(lay.results, "final", labels, cfg["evaluate"]["root"], cache_path)
        metrics.update({k: final[k] for k in SCORES if k in final})
        metrics["lost"] = len(final["loss"])
        metrics["refine_coverage"] = evaluate_stage(lay.results, "refine", labels, cfg["evaluate"]["root"],
                                                    cache_path)["coverage"]
    atomic.write_json(lay.results / "metrics.json", metrics)
    return metrics


def summarize(metric_files: list[str | Path], out_dir: str | Path, best_metric: str) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    rows = [atomic.read_json(p) for p in metric_files]
    swept = sorted({k for r in rows for k in r if "." in k})
    metric = best_metric if rows and best_metric in rows[0] else "faces_in_facesets"
    best = max(rows, key=lambda r: (r.get(metric, 0), r["combo"])) if rows else None
    first = [k for k in ("bcubed_precision", "coverage", "coverage_of_gated", "identities_split", "final_pngs")
             if rows and k in rows[0]]  # precision and coverage side by side
    rest = [k for k in rows[0] if k not in swept and k not in first and k != "combo"] if rows else []
    cols = ["combo", *swept, *first, *rest]
    with atomic.atomic_open(out_dir / "summary.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols + ["best"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "best": r is best})
    plots = []
    metrics = [k for k in cols if k not in swept and k != "combo"]
    for x in swept:
        fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3), squeeze=False)
        others = [k for k in swept if k != x]
        for ax, m in zip(axes[0], metrics):
            groups: dict[tuple, list] = {}
            for r in rows:
                groups.setdefault(tuple(r[o] for o in others), []).append(r)
            for g, rs in sorted(groups.items()):
                rs = sorted(rs, key=lambda r: r[x])
                ax.plot([r[x] for r in rs], [r.get(m, np.nan) for r in rs], marker="o",
                        label=", ".join(f"{o}={v:g}" for o, v in zip(others, g)) or None)
            if best is not None:
                ax.plot([best[x]], [best.get(m, np.nan)], marker="*", markersize=14, color="red")
            ax.set_xlabel(x, fontsize=7)
            ax.set_title(m, fontsize=8)
            ax.tick_params(labelsize=7)
        if others and len(groups) <= 8:
            axes[0][0].legend(fontsize=6)
        fig.tight_layout()
        name = f"plot_{x.replace('.', '_')}.png"
        fig.savefig(out_dir / name, dpi=80)
        plt.close(fig)
        plots.append(name)
    if rows and "bcubed_precision" in rows[0] and "coverage" in rows[0]:
        plots.insert(0, _precision_coverage(rows, best, out_dir, plt))
    from facesets.report.templating import render  # the report's autoescaped templates

    table = [{"best": r is best, "cells": [round(r.get(c), 4) if isinstance(r.get(c), float) else r.get(c, "")
                                           for c in cols]} for r in rows]
    page = render("sweep.html", metric=metric, best=best["combo"] if best else None, cols=cols, rows=table,
                  plots=plots)
    atomic.write_text(out_dir / "summary.html", page)
    return {"rows": len(rows), "best": best["combo"] if best else None, "metric": metric, "plots": plots}


def _precision_coverage(rows: list[dict], best: dict | None, out_dir: Path, plt) -> str:
    """Each combination as a point: coverage of the labeled faces (x) against BCubed precision (y) of the final
    corpus, so the trade-off between losing faces and letting strangers in reads off one picture."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([r["coverage"] for r in rows], [r["bcubed_precision"] for r in rows], s=18)
    for r in rows:
        ax.annotate(r["combo"].replace(SEP, "\n"), (r["coverage"], r["bcubed_precision"]), fontsize=5,
                    xytext=(3, 3), textcoords="offset points")
    if best is not None:
        ax.plot([best["coverage"]], [best["bcubed_precision"]], marker="*", markersize=14, color="red")
    ax.set_xlabel("coverage (labeled faces in a final bundle)", fontsize=8)
    ax.set_ylabel("BCubed precision (final corpus)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    name = "precision_coverage.png"
    fig.savefig(out_dir / name, dpi=90)
    plt.close(fig)
    return name
