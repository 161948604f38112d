"""Similar-face pairs, their connected components (near-duplicate groups), and the collapse of each group
to its best member (export's burst collapse and curation's near-duplicate pass)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def similar_pairs(emb: np.ndarray, min_sim: float, block: int = 2048) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with cosine similarity >= min_sim (rows are L2-normalised), exact, in blocks
    so memory stays O(block * n)."""
    n = len(emb)
    rows, cols, sims = [], [], []
    for start in range(0, n, block):
        s = emb[start:start + block] @ emb[start:].T
        i, j = np.nonzero(s >= min_sim)
        keep = j > i  # strictly above the diagonal of the full matrix
        i, j = i[keep], j[keep]
        rows.append(i + start)
        cols.append(j + start)
        sims.append(s[i, j])
    if not rows:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims).astype(np.float32)


def components(n: int, rows: np.ndarray, cols: np.ndarray) -> list[list[int]]:
    """Connected components with more than one member, each sorted, largest first."""
    if n == 0 or len(rows) == 0:
        return []
    g = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(g, directed=False)
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    multi = [g for g in groups.values() if len(g) > 1]
    return sorted(multi, key=lambda g: (-len(g), g[0]))


@dataclass(frozen=True)
class NearDuplicate:
    """Row `index` is a near-duplicate of row `kept`, which stays in its place."""
    index: int
    kept: int
    similarity: float | None  # cosine similarity of the two; None when only linked through others of the group
    group_size: int


def collapse_near_duplicates(emb: np.ndarray, min_sim: float, score: Sequence[float]) -> list[NearDuplicate]:
    """Near-duplicate groups of L2-normalised rows (connected components of cosine similarity >= min_sim)
    and, in each, the row with the highest `score` stays (ties: the lower index). Returns every other row
    of every group, group by group (largest first), in row order within a group."""
    rows, cols, sims = similar_pairs(emb, min_sim)
    sim_of = {(r, c): s for r, c, s in zip(rows.tolist(), cols.tolist(), sims.tolist())}
    out = []
    for group in components(len(emb), rows, cols):
        best = max(group, key=lambda g: (score[g], -g))
        out += [NearDuplicate(g, best, sim_of.get((min(g, best), max(g, best))), len(group))
                for g in group if g != best]
    return out
