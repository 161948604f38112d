"""Agglomerative clustering of face embeddings with cosine distance.

The reference result is ``sklearn.cluster.AgglomerativeClustering(n_clusters=None,
metric="cosine", linkage=..., distance_threshold=t)``: two clusters are merged
while their linkage distance is *strictly* below ``t`` (scipy's ``fcluster`` with
``criterion="distance"`` differs only for distances exactly equal to ``t``).

Two ways to get it:

``exact``
    Dense condensed distance matrix + ``scipy.cluster.hierarchy.linkage``.
    O(n^2) memory, so only for up to ``exact_max_n`` points.

``knn``
    1. A k-nearest-neighbour graph from faiss (exact BLAS search for small n,
       an IVF partition searched list-by-list with BLAS for large n).
    2. Only edges closer than the threshold are kept; the connected components
       of that graph are independent sub-problems (see "Why components are
       safe" below).
    3. Each component with at most ``exact_max_n`` points is clustered by the
       exact dense method; it is then exact for that component.
    4. Larger components (average linkage only) are agglomerated on the sparse
       graph with *exact* average distances (see ``_GraphAverageLinkage``); the
       merge order is exact except for "bulk" rounds far below the threshold.
    5. Average linkage: clusters that are still closer than the threshold on
       average -- pieces of one person that the kNN search never linked --
       are found by a kNN search over cluster means and merged
       (``_rejoin_clusters``). On a complete graph this finds nothing.

Why components are safe
    With average linkage, two groups with no pair of points closer than ``t``
    have an average distance of at least ``t`` and can never merge; with
    complete linkage every pair inside a cluster is closer than ``t``. So no
    final cluster spans two components of the graph of *all* pairs closer than
    ``t``. The kNN graph is a subgraph of it: a within-threshold pair is missing
    when a point has more than ``knn_k`` neighbours inside the threshold (it is
    then still linked to ``knn_k`` of them, so this rarely splits anything), or
    when the approximate IVF search (n > 20k) misses a neighbour. Such a miss
    can split a component, separating points the dense method might put
    together; step 5 merges such pieces again when their average distance is
    below the threshold, but a face that lost all its links to a group it would
    only just have joined can stay apart. Inside a large component a missing
    edge can also hide a cluster's nearest neighbour and so change the merge
    order. For complete linkage step 5 does not apply. Raising ``knn_k``
    reduces misses. Measured agreement: benchmarks/bench_cluster.py.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.cluster import hierarchy
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

__all__ = ["LINKAGES", "METHODS", "bcubed", "cluster_embeddings"]

LINKAGES = ("average", "complete")
METHODS = ("auto", "exact", "knn")

# Rows normalised per chunk so validation never allocates a second n x dim array.
_ROW_CHUNK = 65_536
# Rows of the similarity matrix computed per BLAS call when filling the
# condensed matrix (1024 x n float64: 100 MB at n = 12k).
_DENSE_BLOCK_ROWS = 1024
# Exact brute-force kNN (n^2 dot products) is cheaper than training an IVF
# partition up to about this size on a 2-core machine.
_BRUTE_FORCE_MAX_N = 20_000
# IVF partition: ~2 sqrt(n) lists (balances assigning points to centroids,
# n * lists, against searching them, n * n / lists), each point searched in
# its 8 nearest lists, no list holding more than twice the mean. At 100k
# synthetic faces the clustering then agrees with the one from the exact kNN
# graph at BCubed F 0.9999 (4 probes: 0.9993) for 1/10 of the kNN time.
_IVF_LISTS_PER_SQRT_N = 2.0
_IVF_NPROBE = 8
_IVF_MAX_LOAD = 2.0
_IVF_TRAIN_POINTS_PER_LIST = 16
_KMEANS_ITERS = 8
# kNN similarities are float32; keep edges slightly past the threshold so that
# rounding never drops a pair the float64 decision would merge.
_EDGE_SLACK = 1e-5
# Large components (see _GraphAverageLinkage): exact reciprocal-pair rounds,
# with a bulk round when fewer than _RAC_MIN_SHARE of the clusters that want
# to merge are in reciprocal pairs, below rising levels up to (1 - _EXACT_BAND) * t.
_RAC_MIN_SHARE = 0.01
_COARSE_LEVELS = 5
_EXACT_BAND = 0.1
_ROWDOT_CHUNK = 32_768


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
        labels = _exact_labels(X, t, linkage)
    else:
        labels = _knn_labels(
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


# ----------------------------------------------------------------------------
# exact dense method


def _exact_labels(X: np.ndarray, t: float, linkage: str) -> np.ndarray:
    """Dense hierarchical clustering of unit rows X; labels 0..K-1 (any order)."""
    if len(X) == 1:
        return np.zeros(1, dtype=np.int64)
    tree = hierarchy.linkage(_condensed_cosine(X), method=linkage)
    # fcluster keeps merges at height <= its cut, sklearn only those < t.
    cut = np.nextafter(t, -np.inf)
    return hierarchy.fcluster(tree, cut, criterion="distance").astype(np.int64) - 1


def _condensed_cosine(X: np.ndarray) -> np.ndarray:
    """Condensed (upper-triangle, row-major) cosine distances of unit rows, float64.

    Built from BLAS blocks instead of scipy's pdist, which is several times slower.
    """
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    out = np.empty(n * (n - 1) // 2)
    pos = 0
    for start in range(0, n - 1, _DENSE_BLOCK_ROWS):
        stop = min(n, start + _DENSE_BLOCK_ROWS)
        # Columns before `start` belong to rows already written.
        sims = X[start:stop] @ X[start:].T
        for r in range(stop - start):
            row_len = n - (start + r) - 1
            out[pos : pos + row_len] = sims[r, r + 1 :]
            pos += row_len
    np.subtract(1.0, out, out=out)
    np.clip(out, 0.0, 2.0, out=out)
    return out


# ----------------------------------------------------------------------------
# scalable kNN-graph method


def _knn_labels(X, t, linkage, *, exact_max_n, k, seed, progress) -> np.ndarray:
    if t >= 1.0:
        raise ValueError(
            "method='knn' needs threshold < 1 (a positive-similarity cut): beyond that, "
            "points that are not near neighbours can merge; use method='exact'"
        )
    n = len(X)
    sims, ids = _neighbours(X, min(k + 1, n), seed, progress)  # +1: each point finds itself
    u, v, sim = _edges_within(sims, ids, t)
    del sims, ids
    graph = sparse.csr_matrix((np.ones(len(u), dtype=np.int8), (u, v)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    del graph

    sizes = np.bincount(comp)
    large = np.flatnonzero(sizes > exact_max_n)
    if len(large) and linkage != "average":
        raise ValueError(
            f"{linkage} linkage has no scalable path: a connected component has "
            f"{int(sizes[large].max())} points > exact_max_n={exact_max_n}; "
            "raise exact_max_n (dense memory grows as n^2)"
        )
    order = np.argsort(comp, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    labels = np.empty(n, dtype=np.int64)

    singles = order[bounds[:-1][sizes == 1]]
    labels[singles] = np.arange(len(singles))
    next_label = len(singles)

    small = np.flatnonzero((sizes >= 2) & (sizes <= exact_max_n))
    for c in tqdm(small, desc="dense components", disable=not progress, leave=False):
        members = order[bounds[c] : bounds[c + 1]]
        local = _exact_labels(X[members].astype(np.float64), t, linkage)
        labels[members] = next_label + local
        next_label += int(local.max()) + 1

    if len(large):
        nodes = np.sort(np.concatenate([order[bounds[c] : bounds[c + 1]] for c in large]))
        in_large = np.zeros(n, dtype=bool)
        in_large[nodes] = True
        keep = in_large[u]  # both ends of an edge lie in the same component
        local_id = np.full(n, -1, dtype=np.int64)
        local_id[nodes] = np.arange(len(nodes))
        agglo = _GraphAverageLinkage(
            X[nodes].astype(np.float64), np.ones(len(nodes)), local_id[u[keep]], local_id[v[keep]], sim[keep], t
        )
        roots = agglo.run(progress=progress)
        _, local = np.unique(roots, return_inverse=True)
        labels[nodes] = next_label + local.ravel()

    if linkage == "average":
        labels = _rejoin_clusters(X, labels, t, k, seed, progress)
    return labels


def _rejoin_clusters(X, labels, t, k, seed, progress):
    """Merge final clusters that are still closer than t on average.

    Exact average linkage stops only when every pair of clusters is at least t
    apart, so on a complete neighbour graph this finds nothing to do. When the
    approximate kNN search missed all the links between two parts of one person
    (typical for people with few photos among a million faces, whom no IVF list
    is centred on), they end up as separate clusters; their means are very
    similar, and a kNN search over cluster means finds them. The inner product
    of two cluster means is exactly their average similarity, so the same
    agglomeration as for points applies, starting from the clusters.
    """
    n, dim = X.shape
    n_clusters = int(labels.max()) + 1
    sums = np.zeros((n_clusters, dim))
    for start in range(0, n, _ROW_CHUNK):
        stop = min(n, start + _ROW_CHUNK)
        members = sparse.csr_matrix(
            (np.ones(stop - start), (labels[start:stop], np.arange(stop - start))),
            shape=(n_clusters, stop - start),
        )
        sums += members @ X[start:stop].astype(np.float64)
    sizes = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    means = (sums / sizes[:, None]).astype(np.float32)
    sims, ids = _neighbours(means, min(k + 1, n_clusters), seed, progress)
    del means
    u, v, sim = _edges_within(sims, ids, t)
    if len(u) == 0:
        return labels
    roots = _GraphAverageLinkage(sums, sizes, u, v, sim, t).run(progress=progress)
    _, merged = np.unique(roots, return_inverse=True)
    return merged.ravel()[labels]


def _neighbours(X, k, seed, progress):
    """(similarities, ids) of the k most similar rows of each row, itself included."""
    faiss = _import_faiss()
    if len(X) <= _BRUTE_FORCE_MAX_N:
        return faiss.knn(X, X, k, metric=faiss.METRIC_INNER_PRODUCT)
    return _ivf_neighbours(X, k, seed, progress)


def _ivf_neighbours(X, k, seed, progress):
    """Approximate kNN via an IVF partition, searched one inverted list at a time.

    Grouping all queries that probe the same list turns the search into one
    BLAS matrix product per list (the scheme of faiss.contrib.big_batch_search),
    which is far faster than per-query scanning when every point is a query.
    The cost is sum over lists of (queries x members), so lists are capped
    (see _capped_lists): k-means cannot split a person with thousands of
    near-isotropic faces, and one centroid would otherwise hold most of them.
    """
    faiss = _import_faiss()
    n, dim = X.shape
    n_lists = int(np.clip(round(_IVF_LISTS_PER_SQRT_N * np.sqrt(n)), 1, n // _IVF_TRAIN_POINTS_PER_LIST))
    n_probe = min(_IVF_NPROBE, n_lists)
    rng = np.random.default_rng(seed)
    train = X[np.sort(rng.choice(n, n_lists * _IVF_TRAIN_POINTS_PER_LIST, replace=False))]
    kmeans = faiss.Kmeans(
        dim, n_lists, niter=_KMEANS_ITERS, seed=seed, spherical=True, verbose=False,
        min_points_per_centroid=1,  # the sample is small on purpose
    )
    kmeans.train(train)
    del train
    probe_sims, probes = faiss.knn(X, kmeans.centroids, n_probe, metric=faiss.METRIC_INNER_PRODUCT)

    # Each point is stored in one list (its home) and searched in all its probes.
    home = _capped_lists(probes, probe_sims, n_lists, cap=int(np.ceil(_IVF_MAX_LOAD * n / n_lists)))
    member_order, member_bounds = _group_by(home, n_lists)
    query_order, query_bounds = _group_by(probes.ravel(), n_lists)
    query_order //= n_probe
    del probes, probe_sims

    heap = faiss.ResultHeap(n, k, keep_max=True)
    for lst in tqdm(range(n_lists), desc="kNN (IVF lists)", disable=not progress, leave=False):
        members = member_order[member_bounds[lst] : member_bounds[lst + 1]]
        queries = query_order[query_bounds[lst] : query_bounds[lst + 1]]
        if len(members) == 0 or len(queries) == 0:
            continue
        sims, idx = faiss.knn(
            X[queries], X[members], min(k, len(members)), metric=faiss.METRIC_INNER_PRODUCT
        )
        heap.add_result_subset(queries, sims, members[idx])
    heap.finalize()
    return heap.D, heap.I


def _capped_lists(probes, probe_sims, n_lists, cap):
    """Home list of each point: its closest list that still has room.

    Lists are filled with the points most similar to their centroid first, so a
    big person's most central faces (everyone's nearest neighbours) share the
    list that all of that person's faces probe. Points left over after all
    their probes are full go to their closest list anyway.
    """
    n, n_probe = probes.shape
    home = np.full(n, -1, dtype=np.int64)
    load = np.zeros(n_lists, dtype=np.int64)
    pending = np.arange(n)
    for r in range(n_probe):
        lst = probes[pending, r]
        order = np.lexsort((-probe_sims[pending, r], lst))
        lst = lst[order]
        rank = np.arange(len(lst)) - np.searchsorted(lst, lst, side="left")
        fits = rank < cap - load[lst]
        home[pending[order[fits]]] = lst[fits]
        load += np.bincount(lst[fits], minlength=n_lists)
        pending = pending[order[~fits]]
    home[pending] = probes[pending, 0]
    return home


def _group_by(keys: np.ndarray, n_groups: int):
    """Positions sorted by key, and the slice bounds of each key value."""
    order = np.argsort(keys, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=n_groups))])
    return order, bounds


def _edges_within(sims, ids, t):
    """Undirected, deduplicated kNN edges (u < v) with cosine distance < t (+ slack)."""
    n, k = ids.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = ids.ravel()
    s = sims.ravel()
    keep = (cols >= 0) & (cols != rows) & (s >= 1.0 - t - _EDGE_SLACK)
    rows, cols, s = rows[keep], cols[keep], s[keep]
    key, first = np.unique(np.minimum(rows, cols) * n + np.maximum(rows, cols), return_index=True)
    u, v = np.divmod(key, n)
    return u, v, s[first].astype(np.float64)


def _import_faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("method='knn' needs faiss: pip install faiss-cpu") from exc
    return faiss


class _GraphAverageLinkage:
    """Average linkage on a sparse graph, with exact average distances.

    For unit vectors the average cosine distance between clusters A and B is
        mean_{a in A, b in B} (1 - a.b) = 1 - (sum A).(sum B) / (|A| |B|),
    so keeping each cluster's vector sum gives the exact average-linkage
    distance in O(dim), without any pairwise matrix. The graph only decides
    which cluster pairs are compared: two clusters with no within-threshold
    point pair cannot be closer than the threshold on average. Edges are
    contracted as clusters merge, and edges at distance >= t are dropped for
    good: a merged cluster is never closer to C than the closer of its two
    parts was (average linkage is "reducible").

    Merge order:
    * Reciprocal nearest neighbours (each the other's closest cluster) can all
      be merged at once without changing the result of sequential HAC, for a
      reducible linkage (RAC: Sumengen et al., "Scaling Hierarchical
      Agglomerative Clustering to Billion-sized Datasets", 2021). Exact.
    * RAC stalls on a "hub": a big cluster that most points have as their
      nearest neighbour absorbs them one per round (a 12k-face person would
      need ~12k rounds). When a round's reciprocal pairs are fewer than
      _RAC_MIN_SHARE of the clusters that want to merge, that round instead
      merges every cluster into its nearest neighbour at once (connected
      components of the nearest-neighbour links; SCC: Monath et al., "Scalable
      Hierarchical Agglomerative Clustering", KDD 2021). To keep the ordering
      error of such bulk rounds small they only use links below the current
      level of _COARSE_LEVELS rising levels, all below (1 - _EXACT_BAND) * t.
    * Within _EXACT_BAND of the threshold, where the cut is decided, only
      reciprocal pairs merge.
    So the result is exact unless a bulk round happened; the benchmark and the
    tests measure the agreement with the dense method.
    """

    def __init__(self, sums, sizes, u, v, sim, t):
        """sums: float64 (m, dim) vector sum of each starting cluster (modified in
        place); sizes: their point counts; u, v, sim: edges and their average
        similarities."""
        self.t = t
        self.sums = sums
        self.sizes = np.asarray(sizes, dtype=np.float64)
        self.parent = np.arange(len(sums))
        self.rounds = 0
        self.bulk_rounds = 0
        d = 1.0 - sim
        keep = d < t
        self.u, self.v, self.d = u[keep], v[keep], d[keep]
        # The cut is decided in the band below t: use float64 there, not the
        # float32 kNN similarities.
        band = self.d >= (1.0 - _EXACT_BAND) * t
        self.d[band] = self._distances(self.u[band], self.v[band])
        # Edges at or above the current level cannot take part in its merges
        # (a cluster whose nearest neighbour is below the level reaches it by an
        # edge below the level), so they wait aside and rounds only touch the
        # rest. `grown` marks clusters changed since they were set aside.
        self.level = np.inf
        self.parked = []
        self.grown = np.zeros(len(sums), dtype=bool)

    def run(self, progress=False) -> np.ndarray:
        """Agglomerate below t; returns each point's root (a member point id)."""
        coarse = np.linspace(0.0, (1.0 - _EXACT_BAND) * self.t, _COARSE_LEVELS + 1)[1:]
        with tqdm(desc="agglomerating", unit=" rounds", disable=not progress, leave=False) as bar:
            for level, bulk_ok in [(lv, True) for lv in coarse] + [(self.t, False)]:
                self._start_level(level)
                while self._round(bulk_ok):
                    bar.set_postfix(edges=len(self.u), bulk=self.bulk_rounds)
                    bar.update()
        return self._roots()

    def _start_level(self, level):
        """Bring back the edges set aside, up to date, and set aside those >= level."""
        u, v, d = self.u, self.v, self.d
        if self.parked:
            self.parent = self._roots()
            u = self.parent[np.concatenate([u] + [p[0] for p in self.parked])]
            v = self.parent[np.concatenate([v] + [p[1] for p in self.parked])]
            d = np.concatenate([d] + [p[2] for p in self.parked])
            a, b = np.minimum(u, v), np.maximum(u, v)
            keep = a != b
            a, b, d = a[keep], b[keep], d[keep]
            m = len(self.parent)
            # Copies of one cluster pair carry the same distance once refreshed.
            key, first = np.unique(a * m + b, return_index=True)
            u, v = np.divmod(key, m)
            d = d[first]
            stale = self.grown[u] | self.grown[v]
            d[stale] = self._distances(u[stale], v[stale])
            keep = d < self.t
            u, v, d = u[keep], v[keep], d[keep]
        self.grown[:] = False
        self.level = level
        self.parked = []
        self._set(u, v, d)

    def _set(self, u, v, d):
        """Keep edges below the level active, set aside those up to t, drop the rest."""
        active = d < self.level
        aside = ~active & (d < self.t)
        if aside.any():
            self.parked.append((u[aside], v[aside], d[aside]))
        self.u, self.v, self.d = u[active], v[active], d[active]

    def _round(self, bulk_ok) -> bool:
        """One merge round among links below the level; False when there are none."""
        if len(self.u) == 0:
            return False
        nn, nn_dist = self._nearest()
        src = np.flatnonzero(nn_dist < self.level)
        if len(src) == 0:
            return False
        self.rounds += 1
        dst = nn[src]
        pair = (nn[dst] == src) & (src < dst)
        # Not empty: the closest link below the level is always reciprocal.
        if bulk_ok and pair.sum() < _RAC_MIN_SHARE * len(src):
            self.bulk_rounds += 1
            reps = self._merge_groups(src, dst)
        else:
            reps = self._merge_pairs(src[pair], dst[pair])
        self.grown[reps] = True
        self._contract(reps)
        return True

    def _distances(self, a, b) -> np.ndarray:
        out = np.empty(len(a))
        for s in range(0, len(a), _ROWDOT_CHUNK):
            aa, bb = a[s : s + _ROWDOT_CHUNK], b[s : s + _ROWDOT_CHUNK]
            dots = np.einsum("ij,ij->i", self.sums[aa], self.sums[bb])
            out[s : s + len(aa)] = 1.0 - dots / (self.sizes[aa] * self.sizes[bb])
        return out

    def _nearest(self):
        """Each cluster's closest neighbour over the edges (ties: smallest id)."""
        m = len(self.parent)
        x = np.concatenate([self.u, self.v])
        y = np.concatenate([self.v, self.u])
        d = np.concatenate([self.d, self.d])
        nn_dist = np.full(m, np.inf)
        np.minimum.at(nn_dist, x, d)
        best = d == nn_dist[x]
        nn = np.full(m, np.iinfo(np.int64).max)
        np.minimum.at(nn, x[best], y[best])
        nn[np.isinf(nn_dist)] = -1
        return nn, nn_dist

    def _merge_pairs(self, keep, gone) -> np.ndarray:
        self.sums[keep] += self.sums[gone]
        self.sizes[keep] += self.sizes[gone]
        self.parent[gone] = keep
        return keep

    def _merge_groups(self, src, dst) -> np.ndarray:
        """Merge the connected components of the links src -> dst."""
        nodes, inv = np.unique(np.concatenate([src, dst]), return_inverse=True)
        inv = inv.ravel()
        links = sparse.csr_matrix(
            (np.ones(len(src), dtype=np.int8), (inv[: len(src)], inv[len(src) :])),
            shape=(len(nodes), len(nodes)),
        )
        _, group = connected_components(links, directed=False)
        order = np.lexsort((nodes, group))  # the smallest id leads each group
        members = nodes[order]
        starts = np.flatnonzero(np.concatenate([[True], group[order][1:] != group[order][:-1]]))
        reps = members[starts]
        self.sums[reps] = np.add.reduceat(self.sums[members], starts, axis=0)
        self.sizes[reps] = np.add.reduceat(self.sizes[members], starts)
        self.parent[members] = np.repeat(reps, np.diff(np.append(starts, len(members))))
        return reps

    def _contract(self, reps):
        """Re-point edges at merged clusters, dedupe them, refresh their distances."""
        m = len(self.parent)
        u, v = self.parent[self.u], self.parent[self.v]
        a, b = np.minimum(u, v), np.maximum(u, v)
        keep = a != b
        a, b, d = a[keep], b[keep], self.d[keep]
        changed = np.zeros(m, dtype=bool)
        changed[reps] = True
        touched = changed[a] | changed[b]
        # Only edges at a merged cluster can have become duplicates.
        key = np.unique(a[touched] * m + b[touched])
        ta, tb = np.divmod(key, m)
        a = np.concatenate([a[~touched], ta])
        b = np.concatenate([b[~touched], tb])
        d = np.concatenate([d[~touched], self._distances(ta, tb)])
        self._set(a, b, d)

    def _roots(self) -> np.ndarray:
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand
