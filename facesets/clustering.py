"""TEMPORARY exact-only stand-in (being replaced by the scalable implementation)."""
from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage as _linkage
from scipy.spatial.distance import pdist
from sklearn.metrics.cluster import contingency_matrix


def _first_occurrence(labels):
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inv]


def cluster_embeddings(emb, threshold, *, linkage="average", method="auto", progress=False, **kw):
    emb = np.asarray(emb, dtype=np.float64)
    n = len(emb)
    if n == 0:
        return np.zeros(0, int)
    if n == 1:
        return np.zeros(1, int)
    d = np.clip(pdist(emb, "cosine"), 0, 2)
    z = _linkage(d, method=linkage)
    return _first_occurrence(fcluster(z, t=threshold, criterion="distance"))


def bcubed(pred, true):
    c = contingency_matrix(true, pred).astype(np.float64)
    n = c.sum()
    p = (c ** 2 / c.sum(axis=0, keepdims=True).clip(1)).sum() / n
    r = (c ** 2 / c.sum(axis=1, keepdims=True).clip(1)).sum() / n
    return float(p), float(r), float(2 * p * r / (p + r) if p + r else 0.0)
