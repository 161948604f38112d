#!/usr/bin/env python
"""Where to put verify.consistency_floor: leave-one-out cosines of real bundle members against planted strangers.

Reads the `_all` bundles of a labeled run's final corpus (a results folder whose evaluation.json maps each
faceset to the labeled identity it holds, e.g. the one `bench_quality.py --workdir W` leaves in W), embeds
every member the way roop does (facesets.export.consistency.roop_embedding) and prints:

- the leave-one-out cosine of every real member against the rest of its own bundle;
- for every pair of bundles of two different identities, 4 members of the first plus each of up to 5 members
  of the second as a planted stranger (a 5-crop bundle): the stranger's cosine, and whether any of the 4
  true members falls under the floor with the stranger in the mean;
- per candidate floor, the share of strangers caught and of true members flagged.

    python benchmarks/bench_quality.py --workdir /tmp/bq     # a labeled run (celebs16)
    python benchmarks/bench_consistency.py --results /tmp/bq/results
"""
from __future__ import annotations

import argparse
import json
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from facesets.export.consistency import leave_one_out, roop_embedding  # noqa: E402

FLOORS = (0.25, 0.3, 0.35, 0.4, 0.45)


def bundle_embeddings(corpus: Path, engine) -> dict[str, np.ndarray]:
    out = {}
    for b in sorted(corpus.glob("*/*_all.fsz")):
        embs = []
        with zipfile.ZipFile(b) as zf:
            for name in zf.namelist():
                img = cv2.imdecode(np.frombuffer(zf.read(name), np.uint8), cv2.IMREAD_COLOR)
                e = roop_embedding(engine, img) if img is not None else None
                if e is not None:
                    embs.append(e)
        out[b.parent.name] = np.array(embs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", required=True, help="results folder of a labeled run (with evaluation.json)")
    ap.add_argument("--pack", default=str(HERE.parent.parent / "shared/models/facepack-sc128"))
    args = ap.parse_args(argv)
    from facesets.core.engine import FaceEngine

    results = Path(args.results)
    ev = json.loads((results / "evaluation.json").read_text())
    identity = {fs: who for who, v in ev["per_identity"].items() for fs in v["facesets"]}
    emb = bundle_embeddings(results / "facesets_swap_ready", FaceEngine(args.pack))
    real = np.array([c for e in emb.values() if len(e) >= 2 for c in leave_one_out(list(e))])
    print(f"{len(emb)} bundles, {len(real)} members; pack {Path(args.pack).name}")
    print(f"real members: min {real.min():.3f}  p1 {np.percentile(real, 1):.3f}  p5 {np.percentile(real, 5):.3f}  "
          f"median {np.median(real):.3f}")
    big = [f for f, e in emb.items() if len(e) >= 4 and f in identity]
    strangers, true_min = [], []
    for a in big:
        for b in big:
            if identity[a] == identity[b]:
                continue
            for s in emb[b][:5]:
                cos = leave_one_out(list(emb[a][:4]) + [s])
                strangers.append(cos[-1])
                true_min.append(min(cos[:4]))
    strangers, true_min = np.array(strangers), np.array(true_min)
    print(f"planted strangers ({len(strangers)} 5-crop bundles): max {strangers.max():.3f}  "
          f"p99 {np.percentile(strangers, 99):.3f}  median {np.median(strangers):.3f}")
    for floor in FLOORS:
        print(f"  floor {floor:.2f}: strangers caught {np.mean(strangers < floor):.3f}, bundles with a true member "
              f"flagged {np.mean(true_min < floor):.3f}, real members of the corpus flagged {np.mean(real < floor):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
