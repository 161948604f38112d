"""Threshold sweeps: every combination of swept values is its own target, named by its values
(`refine.initial_threshold~0.5__refine.merge_threshold~0.4`), so adding a value runs only the new
combinations and every combination reuses the one embed cache.
"""
from __future__ import annotations

import csv
import itertools
import logging
from pathlib import Path

import numpy as np

from facesets.core import atomic
from facesets.identities import cluster_stage, refine

log = logging.getLogger(__name__)
SEP, EQ = "__", "~"


def combos(params: dict[str, list[float]]) -> list[str]:
    if not params:
        return []
    keys = sorted(params)
    return [SEP.join(f"{k}{EQ}{v:g}" for k, v in zip(keys, vals)) for vals in itertools.product(*(params[k] for k in keys))]


def parse(combo: str) -> dict[str, float]:
    out = {}
    for part in combo.split(SEP):
        k, _, v = part.partition(EQ)
        out[k] = float(v)
    return out


def point(cache_path: str | Path, out_dir: str | Path, combo: str, cfg: dict, labels: str | None,
          root: str | None) -> dict:
    """Refine (and cluster, when a cluster key is swept) with the combination's values; metrics.json."""
    from facesets.identities.evaluate import evaluate

    out_dir = Path(out_dir)
    values = parse(combo)
    sections = {"refine": dict(cfg["refine"]), "cluster": dict(cfg["cluster"])}
    for k, v in values.items():
        sec, key = k.split(".", 1)
        sections[sec][key] = int(v) if isinstance(sections[sec].get(key), int) else v
    metrics: dict = {"combo": combo, **values}
    man = refine.run(cache_path, out_dir / "facesets", sections["refine"], "symlink")
    sizes = [fs["n_faces"] for fs in man["facesets"].values()]
    st = man["stats"]
    metrics.update(facesets=len(sizes), faces_in_facesets=st["faces_in_facesets"],
                   size_min=min(sizes, default=0), size_median=float(np.median(sizes)) if sizes else 0,
                   size_max=max(sizes, default=0), quality_removed=st["quality_removed_total"],
                   outliers_removed=st["outliers_removed_total"], too_small_faces=st["too_small_faces_total"])
    if any(k.startswith("cluster.") for k in values):
        raw = cluster_stage.run(cache_path, out_dir / "raw", sections["cluster"]["threshold"],
                                sections["cluster"]["extend_threshold"], "symlink")
        metrics.update(raw_persons=raw["stats"]["persons"], raw_singletons=raw["stats"]["singletons"])
    if labels:
        ev = evaluate(out_dir / "facesets" / refine.MANIFEST, labels, root)
        metrics.update({k: ev[k] for k in ("pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_precision",
                                           "bcubed_recall", "bcubed_f", "nmi", "identities_split", "clusters_merged",
                                           "coverage") if k in ev})
    atomic.write_json(out_dir / "metrics.json", metrics)
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
    cols = ["combo", *swept, *[k for k in rows[0] if k not in swept and k != "combo"]] if rows else ["combo"]
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
    from facesets.report.templating import render  # the report's autoescaped templates

    table = [{"best": r is best, "cells": [round(r.get(c), 4) if isinstance(r.get(c), float) else r.get(c, "")
                                           for c in cols]} for r in rows]
    page = render("sweep.html", metric=metric, best=best["combo"] if best else None, cols=cols, rows=table,
                  plots=plots)
    atomic.write_text(out_dir / "summary.html", page)
    return {"rows": len(rows), "best": best["combo"] if best else None, "metric": metric, "plots": plots}
