"""Agglomerative clustering of face embeddings with cosine distance: the entry point
(`cluster_embeddings`), its input checks, and `bcubed`.

The reference result is ``sklearn.cluster.AgglomerativeClustering(n_clusters=None,
metric="cosine", linkage=..., distance_threshold=t)``: two clusters are merged
while their linkage distance is *strictly* below ``t`` (scipy's ``fcluster`` with
``criterion="distance"`` differs only for distances exactly equal to ``t``).

Two ways to get it:

``exact`` (clustering_exact.py)
    Dense condensed distance matrix + ``scipy.cluster.hierarchy.linkage``.
    O(n^2) memory, so only for up to ``exact_max_n`` points.

``knn`` (clustering_knn.py; large components in graph_linkage.py)
    1. A k-nearest-neighbour graph from faiss (exact BLAS search for small n,
       an IVF partition searched list-by-list with BLAS for large n).
    2. Only edges closer than the threshold are kept; the connected components
       of that graph are independent sub-problems (see "Why components are
       safe" in clustering_knn.py).
    3. Each component with at most ``exact_max_n`` points is clustered by the
       exact dense method; it is then exact for that component.
    4. Larger components (average linkage only) are agglomerated on the sparse
       graph with *exact* average distances (see ``GraphAverageLinkage``); the
       merge order is exact except for "bulk" rounds far below the threshold.
    5. Average linkage: clusters that are still closer than the threshold on
       average -- pieces of one person that the kNN search never linked --
       are found by a kNN search over cluster means and merged
       (``_rejoin_clusters``). On a complete graph this finds nothing.
"""

from __future__ import annotations

import numpy as np

from facesets.identities.clustering_exact import exact_labels
from facesets.identities.clustering_knn import knn_labels

__all__ = ["LINKAGES", "METHODS", "bcubed", "cluster_embeddings"]

LINKAGES = ("average", "complete")
METHODS = ("auto", "exact", "knn")

# Rows normalised per chunk so validation never allocates a second n x dim array.
_ROW_CHUNK = 65_536


def cluster_embeddings(
    emb,
    threshold: float,
    *,
    linkage: str = "average",
    method: str = "auto",
    exact_max_n: int = 12_000,
    knn_k: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> np.ndarray:
    """Cluster embeddings by agglomerative clustering with cosine distance.

    Parameters
    ----------
    emb : array-like, shape (n, dim)
        Embeddings; rows need not be normalised (cosine distance ignores scale),
        but must be finite and non-zero.
    threshold : float
        Distance cut: clusters merge while their linkage distance is < threshold
        (sklearn ``distance_threshold`` semantics). Cosine distance = 1 - cos.
    linkage : {"average", "complete"}
    method : {"auto", "exact", "knn"}
        "exact": dense, O(n^2) memory (8 n^2 bytes, whatever exact_max_n says).
        "knn": sparse kNN graph, scales to millions with average linkage -- see
        the module docstring. "auto": "exact" when n <= exact_max_n, else "knn".
    exact_max_n : int
        Largest point set clustered densely: the whole input under "auto", and
        each connected component of the threshold graph under "knn". A 12k
        dense run needs about 1.2 GB.
    knn_k : int
        Neighbours per point in the kNN graph ("knn" only).
    seed : int
        Seed for the IVF partition (only used for n > 20k under "knn").
    progress : bool
        Show tqdm progress bars for the scalable path.

    Returns
    -------
    labels : np.ndarray of int64, shape (n,)
        Cluster ids 0..K-1, numbered by first occurrence in input order.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t = _check_threshold(threshold)
    exact_max_n = _check_int("exact_max_n", exact_max_n, minimum=0)
    knn_k = _check_int("knn_k", knn_k, minimum=1)

    n = _check_shape(emb)
    if method == "auto":
        method = "exact" if n <= exact_max_n else "knn"
    # float64 for the dense path, like sklearn; faiss needs float32.
    X = _unit_rows(emb, np.float64 if method == "exact" else np.float32)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    if t == 0.0:
        return np.arange(n, dtype=np.int64)  # nothing is strictly closer than 0

    if method == "exact":
        labels = exact_labels(X, t, linkage)
    else:
        labels = knn_labels(
            X, t, linkage, exact_max_n=exact_max_n, k=knn_k, seed=seed, progress=progress
        )
    return _first_occurrence_labels(labels)


def bcubed(labels_pred, labels_true) -> tuple[float, float, float]:
    """BCubed precision, recall and F1 of a clustering against reference labels.

    For each item, precision is the fraction of its predicted cluster that shares
    its reference label, recall the fraction of its reference class that shares
    its predicted cluster; both are averaged over items. Computed from the
    contingency counts c_ij (items in predicted cluster i and class j):
    P = sum c_ij^2 / |pred_i| / n and R = sum c_ij^2 / |true_j| / n.
    Labels may be any sortable values (ints, strings).
    """
    pred = np.asarray(labels_pred)
    true = np.asarray(labels_true)
    if pred.ndim != 1 or true.ndim != 1 or len(pred) != len(true):
        raise ValueError(
            f"labels must be two 1-d arrays of equal length, got {pred.shape} and {true.shape}"
        )
    n = len(pred)
    if n == 0:
        raise ValueError("BCubed is undefined for zero items")
    _, p = np.unique(pred, return_inverse=True)
    _, q = np.unique(true, return_inverse=True)
    p = p.astype(np.int64)
    q = q.astype(np.int64)
    n_true = int(q.max()) + 1
    cell, count = np.unique(p * n_true + q, return_counts=True)
    rows, cols = np.divmod(cell, n_true)
    count = count.astype(np.float64)
    precision = float(np.sum(count * count / np.bincount(p)[rows]) / n)
    recall = float(np.sum(count * count / np.bincount(q)[cols]) / n)
    f1 = 2.0 * precision * recall / (precision + recall)
    return precision, recall, f1


# ----------------------------------------------------------------------------
# validation


def _check_threshold(threshold) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise TypeError(f"threshold must be a number, got {threshold!r}") from None
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be finite and >= 0, got {threshold!r}")
    return t


def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_shape(emb) -> int:
    arr = np.asarray(emb)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array (n, dim), got shape {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"embeddings must be real numbers, got dtype {arr.dtype}")
    if arr.shape[0] > 0 and arr.shape[1] == 0:
        raise ValueError("embeddings must have at least one dimension")
    return arr.shape[0]


def _unit_rows(emb, dtype) -> np.ndarray:
    """L2-normalised copy; cosine distance is then 1 - dot product."""
    arr = np.asarray(emb)
    out = np.empty(arr.shape, dtype=dtype)
    for start in range(0, arr.shape[0], _ROW_CHUNK):
        block = arr[start : start + _ROW_CHUNK].astype(np.float64)
        if not np.isfinite(block).all():
            raise ValueError("embeddings contain NaN or infinite values")
        norms = np.linalg.norm(block, axis=1)
        if np.any(norms == 0):
            raise ValueError("embeddings contain all-zero rows (cosine distance undefined)")
        out[start : start + len(block)] = block / norms[:, None]
    return out


def _first_occurrence_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber so that cluster ids appear in input order: 0, 1, 2, ..."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]
