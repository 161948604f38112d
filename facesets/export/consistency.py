"""Bundle consistency: is every member of a bundle the same person as the rest, the way roop will see it?

roop-unleashed re-detects each PNG at det_size 640, threshold 0.5, embeds every face with insightface's own
alignment and averages the raw embeddings into the identity (docs: roop-fsz-contract). A stranger, or a half
face whose embedding drifted, that slipped past every earlier gate pulls that average away. So each member's
roop-style embedding is compared with the mean of the other members' (leave one out); a cosine under
`verify.consistency_floor` flags it. Measured on the bundles of the shared photos with facepack-sc128: no
member below 0.446, and 99.4 % of strangers planted into 5-crop bundles below the default 0.35.
"""
from __future__ import annotations

import numpy as np

from facesets.core.recorded import pixels_digest

ROOP_SETTING = (640, 0.5)  # what roop detects with when it loads a faceset


def roop_embedding(engine, img: np.ndarray, store=None) -> np.ndarray | None:
    """The crop's one face as roop embeds it (None unless exactly one face is found at roop's setting); read from
    `store` (the detection store's embeddings) when it has it, else computed and kept there."""
    digest = pixels_digest(img)
    if store is not None and store.recognizer:
        emb = store.get_embedding(digest)
        if emb is not None:
            return emb
    det = engine.detect(img, det_size=ROOP_SETTING[0], det_thresh=ROOP_SETTING[1])
    if len(det) != 1:
        return None
    emb = engine.roop_embedding(img, det.kps[0])
    if store is not None and store.recognizer:
        store.put_embedding(digest, emb)
    return emb


def leave_one_out(embeddings: list[np.ndarray]) -> list[float]:
    """Each embedding's cosine to the mean of the others (roop's raw mean; a bundle of one has nothing to say)."""
    if len(embeddings) < 2:
        return [1.0] * len(embeddings)
    e = np.asarray(embeddings, np.float64)
    total = e.sum(axis=0)
    out = []
    for i in range(len(e)):
        rest = (total - e[i]) / (len(e) - 1)
        denom = np.linalg.norm(e[i]) * np.linalg.norm(rest)
        out.append(float(e[i] @ rest / denom) if denom > 0 else 0.0)
    return out


def flagged(names: list[str], embeddings: list[np.ndarray], floor: float) -> list[tuple[str, float]]:
    """(member, cosine) of every member under the floor."""
    return [(n, c) for n, c in zip(names, leave_one_out(embeddings)) if c < floor]


def problem(cosine: float, others: int, floor: float) -> str:
    return (f"inconsistent: cosine {cosine:.3f} to the mean of the other {others} member(s) (floor {floor:g}); "
            "a stranger or a half face roop would average into the identity")
