#!/usr/bin/env python
"""Identity quality measured on what the user receives: the default target on a labeled photo set, then
every stage scored against the labels (coverage and BCubed P/R/F per stage: raw, refine, export, final =
the curated corpus's bundles), the loss table's summary (where the labeled faces that reach no final
faceset went), the bundle consistency check and the wall time.

    python benchmarks/bench_quality.py                      # ../shared/data/celebs16 (480 photos, 16 people)
    python benchmarks/bench_quality.py --data ../shared/data/faces
    python benchmarks/bench_quality.py --quick              # 8 photos per identity of celebs16
    python benchmarks/bench_quality.py --sweep refine.merge_threshold=0.4,0.5 --sweep export.min_face_short=90,100
        # then a sweep from the same cache, every combination scored on its final corpus (precision, coverage)

Targets (celebs16, shared pack, seed defaults except refine.min_faces): BCubed precision >= 0.995 over the
faces in final facesets; coverage >= 0.95 of the labeled faces that pass the seed's quality gates; splits
<= 1 across all identities; every lost labeled face accounted for (no "unaccounted" row).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FACESETS_SHARED") or REPO.parent / "shared")


def labeled_tree(data: Path, dst: Path, per_identity: int | None) -> Path:
    """A source tree of the labeled photos (copies, so the results folder can be anywhere) + its labels."""
    with open(data / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("identity")]
    taken: dict[str, int] = {}
    kept = []
    for r in sorted(rows, key=lambda r: r["path"]):
        if per_identity and taken.get(r["identity"], 0) >= per_identity:
            continue
        taken[r["identity"]] = taken.get(r["identity"], 0) + 1
        (dst / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(data / r["path"], dst / r["path"])
        kept.append(r)
    labels = dst.parent / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "identity"])
        w.writeheader()
        w.writerows({"path": r["path"], "identity": r["identity"]} for r in kept)
    return labels


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "data" / "celebs16"))
    ap.add_argument("--pack", default=str(SHARED / "models" / "facepack-sc128"))
    ap.add_argument("--min-faces", type=int, default=3, help="refine.min_faces (the seed's other defaults stay)")
    ap.add_argument("--quick", action="store_true", help="8 photos per identity")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--workdir", help="keep the run here (default: a temp folder, removed)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                    help="after the default target, sweep this setting (repeatable) and print each combination's "
                         "final-corpus precision and coverage")
    args = ap.parse_args()
    from facesets.identities.evaluate import evaluate_stage

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_quality_"))
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    labels = labeled_tree(Path(args.data), src, 8 if args.quick else None)
    cfg = {"results": str(work / "results"), "sources": [{"name": "photos", "path": str(src)}],
           "model": {"pack": args.pack}, "refine": {"min_faces": args.min_faces},
           "evaluate": {"labels": str(labels), "root": str(src)}}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    wall = _snakemake(work, args.cores)
    if wall is None:
        return 1
    fig = {"data": args.data, "photos": sum(1 for _ in src.rglob("*.jpg")), "wall_s": round(wall, 1), "stages": {}}
    print(f"default target on {fig['photos']} labeled photos ({args.data}): {wall:.0f} s wall\n")
    print(f"{'stage':<8} {'coverage':>9} {'cov_gated':>9} {'P':>7} {'R':>7} {'F':>7} {'splits':>6} {'merges':>6}")
    for stage in ("raw", "refine", "export", "final"):
        ev = evaluate_stage(work / "results", stage, labels, src)
        fig["stages"][stage] = {k: ev.get(k) for k in ("coverage", "coverage_of_gated", "bcubed_precision",
                                                       "bcubed_recall", "bcubed_f", "identities_split",
                                                       "clusters_merged", "n_faces", "labeled_faces")}
        print(f"{stage:<8} {ev['coverage']:9.3f} {ev['coverage_of_gated']:9.3f} {ev.get('bcubed_precision', 0):7.4f} "
              f"{ev.get('bcubed_recall', 0):7.4f} {ev.get('bcubed_f', 0):7.4f} {ev.get('identities_split', 0):6d} "
              f"{ev.get('clusters_merged', 0):6d}")
    final = json.loads((work / "results" / "evaluation.json").read_text())
    fig["loss_summary"] = final["loss_summary"]
    print(f"\nlost labeled faces by stage (final corpus; {len(final['loss'])} of {final['labeled_faces']}):")
    for stage, n in final["loss_summary"].items():
        print(f"  {stage:<24} {n}")
    verify = json.loads((work / "results" / "curation" / "verify.json").read_text())
    fig["verify_ok"] = verify["ok"]
    fig["verify_violations"] = len(verify["violations"])
    odd = verify.get("inconsistent", [])
    fig["verify_inconsistent"] = [f"{r['bundle']}: {r['member']} ({r['cosine']})" for r in odd]
    print(f"\nverify-fsz on the corpus: {'pass' if verify['ok'] else 'FAIL'} ({len(verify['violations'])} violations); "
          f"consistency check (floor {verify.get('consistency', {}).get('floor')}): {len(odd)} member(s) flagged")
    for r in odd:
        print(f"  {r['bundle']}: {r['member']} cosine {r['cosine']}")
    f = fig["stages"]["final"]
    checks = {"precision >= 0.995": f["bcubed_precision"] >= 0.995, "coverage of gated >= 0.95": f["coverage_of_gated"] >= 0.95,
              "splits <= 1": f["identities_split"] <= 1, "every loss accounted": "unaccounted" not in final["loss_summary"],
              "bundles verify": verify["ok"], "every bundle consistent": not odd}
    fig["targets"] = checks
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'NOT MET'}" for k, v in checks.items()))
    if args.sweep:
        fig["sweep"] = _sweep(work, cfg, args.sweep, args.cores)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _snakemake(work: Path, cores: str) -> float | None:
    """The default target's wall time (None and the tail of the output when it fails)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-d", str(work),
                          "--configfile", str(work / "config.yaml"), "--cores", cores],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stdout[-3000:], out.stderr[-3000:])
        return None
    return time.perf_counter() - t0


def _sweep(work: Path, cfg: dict, specs: list[str], cores: str) -> list[dict] | None:
    params = {}
    for spec in specs:
        key, _, values = spec.partition("=")
        params[key] = [float(v) for v in values.split(",")]
    (work / "config.yaml").write_text(yaml.safe_dump(dict(cfg, sweep={"params": params})))
    wall = _snakemake(work, cores)
    if wall is None:
        return None
    with open(work / "results" / "sweeps" / "summary.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    cols = ["bcubed_precision", "coverage", "coverage_of_gated", "identities_split", "final_pngs", "lost"]
    print(f"\nsweep of {', '.join(params)}: {len(rows)} combinations in {wall:.0f} s, each scored on its final corpus "
          f"(results/sweeps/summary.html, precision_coverage.png)")
    print(f"  {'combination':<64} " + " ".join(f"{c[:12]:>12}" for c in cols))
    for r in rows:
        print(f"  {r['combo']:<64} " + " ".join(f"{r.get(c, ''):>12}"[:12].rjust(12) for c in cols)
              + ("  <- best" if r["best"] == "True" else ""))
    return rows


if __name__ == "__main__":
    sys.exit(main())
