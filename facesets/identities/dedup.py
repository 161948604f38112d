"""dedup: byte-identical groups (sha256 aliases) and visual near-duplicate groups -> <cache>.duplicates.json."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from facesets.core import atomic
from facesets.embed.cache import FaceCache
from facesets.identities.neighbors import components, similar_pairs

log = logging.getLogger(__name__)


def default_out(cache_path: str | Path) -> Path:
    p = Path(cache_path)
    return p.with_name(p.stem + ".duplicates.json") if p.suffix else p / "duplicates.json"


def report(cache: FaceCache, similarity: float) -> dict:
    sha_of = {f'{e["source"]}/{e["path"]}': e.get("sha256") for e in cache.files}
    byte_groups = [{"sha256": sha_of[canon], "paths": [canon, *aliases]}
                   for canon, aliases in sorted(cache.aliases_of().items())]
    keys = cache.face_keys()
    rows, cols, sims = similar_pairs(cache.embeddings, similarity)
    # two faces of one photo are two people, not a duplicate
    other_image = cache.faces["sha256"][rows] != cache.faces["sha256"][cols]
    rows, cols, sims = rows[other_image], cols[other_image], sims[other_image]
    groups = components(len(keys), rows, cols)
    label = np.full(len(keys), -1)
    for gi, g in enumerate(groups):
        label[g] = gi
    min_sim = np.full(len(groups), np.inf)
    np.minimum.at(min_sim, label[rows], sims)
    visual = [{"faces": [[keys[i], str(cache.face_path[i])] for i in g],
               "n_images": len({cache.face_path[i] for i in g}),
               "min_linked_similarity": round(float(min_sim[gi]), 4)}
              for gi, g in enumerate(groups)]
    return {"similarity": similarity, "byte_identical": byte_groups, "visual": visual,
            "stats": {"byte_groups": len(byte_groups),
                      "byte_duplicate_files": sum(len(g["paths"]) - 1 for g in byte_groups),
                      "visual_groups": len(visual), "visual_faces": sum(len(g["faces"]) for g in visual)}}


def run(cache_path: str | Path, similarity: float, out: str | Path | None = None) -> dict:
    cache = FaceCache.load(cache_path)
    rep = report(cache, similarity)
    out = Path(out) if out else default_out(cache_path)
    atomic.write_json(out, rep)
    log.info("dedup: %s -> %s", rep["stats"], out)
    return rep
