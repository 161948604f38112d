"""inspect: one CSV row per face record, no-face image, alias and skipped file of a cache."""
from __future__ import annotations

import csv
from pathlib import Path

from facesets.core import atomic
from facesets.embed.cache import FaceCache

COLUMNS = ["source", "path", "status", "reason", "sha256", "face_index", "det_score", "bbox", "face_short",
           "blur", "width", "height", "exif_datetime", "alias_of", "n_faces"]


def rows(cache: FaceCache):
    by_sha: dict[str, list[int]] = {}
    for i, s in enumerate(cache.faces["sha256"].tolist()):
        by_sha.setdefault(s, []).append(i)
    f = cache.faces
    for e in cache.files:
        common = {"source": e["source"], "path": e["path"], "status": e["status"], "reason": e.get("reason", ""),
                  "sha256": e.get("sha256") or "", "width": e.get("width", ""), "height": e.get("height", ""),
                  "exif_datetime": e.get("exif_datetime") or "", "alias_of": e.get("alias_of", ""),
                  "n_faces": e.get("n_faces", "")}
        if e["status"] == "face":
            for i in by_sha.get(e["sha256"], []):
                yield dict(common, face_index=int(f["face_index"][i]), det_score=round(float(f["det_score"][i]), 4),
                           bbox=" ".join(f"{v:.1f}" for v in f["bbox"][i]),
                           face_short=round(float(f["face_short"][i]), 1), blur=round(float(f["blur"][i]), 2))
        else:
            yield dict(common, face_index="", det_score="", bbox="", face_short="", blur="")


def write_csv(cache_path: str | Path, out: str | Path) -> int:
    cache = FaceCache.load(cache_path)
    n = 0
    # a name that is not UTF-8 is written as its bytes on disk, so the CSV names the very file (read it back
    # with errors="surrogateescape")
    with atomic.atomic_open(out, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows(cache):
            w.writerow(r)
            n += 1
    return n
