"""The scalable path of `cluster_embeddings` (method="knn"): a kNN graph from faiss, its connected
components below the threshold clustered exactly (small) or on the sparse graph (large, see
graph_linkage.py), then, for average linkage, clusters the kNN search never linked rejoined.

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
    together; the rejoin pass (step 5 in clustering.py) merges such pieces again when their average distance is
    below the threshold, but a face that lost all its links to a group it would
    only just have joined can stay apart. Inside a large component a missing
    edge can also hide a cluster's nearest neighbour and so change the merge
    order. For complete linkage the rejoin does not apply. Raising ``knn_k``
    reduces misses. Measured agreement: benchmarks/bench_cluster.py.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from facesets.identities.clustering_exact import exact_labels
from facesets.identities.graph_linkage import GraphAverageLinkage

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
# Rows summed per sparse product when _rejoin_clusters forms the cluster means.
_SUM_CHUNK = 65_536


def knn_labels(X, t, linkage, *, exact_max_n, k, seed, progress) -> np.ndarray:
    if t >= 1.0:
        raise ValueError(
            "method='knn' needs threshold < 1 (a positive-similarity cut): beyond that, "
            "points that are not near neighbours can merge; use method='exact'"
        )
    n = len(X)
    sims, ids = neighbours(X, min(k + 1, n), seed, progress)  # +1: each point finds itself
    u, v, sim = edges_within(sims, ids, t)
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
        local = exact_labels(X[members].astype(np.float64), t, linkage)
        labels[members] = next_label + local
        next_label += int(local.max()) + 1

    if len(large):
        nodes = np.sort(np.concatenate([order[bounds[c] : bounds[c + 1]] for c in large]))
        in_large = np.zeros(n, dtype=bool)
        in_large[nodes] = True
        keep = in_large[u]  # both ends of an edge lie in the same component
        local_id = np.full(n, -1, dtype=np.int64)
        local_id[nodes] = np.arange(len(nodes))
        agglo = GraphAverageLinkage(
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
    for start in range(0, n, _SUM_CHUNK):
        stop = min(n, start + _SUM_CHUNK)
        members = sparse.csr_matrix(
            (np.ones(stop - start), (labels[start:stop], np.arange(stop - start))),
            shape=(n_clusters, stop - start),
        )
        sums += members @ X[start:stop].astype(np.float64)
    sizes = np.bincount(labels, minlength=n_clusters).astype(np.float64)
    means = (sums / sizes[:, None]).astype(np.float32)
    sims, ids = neighbours(means, min(k + 1, n_clusters), seed, progress)
    del means
    u, v, sim = edges_within(sims, ids, t)
    if len(u) == 0:
        return labels
    roots = GraphAverageLinkage(sums, sizes, u, v, sim, t).run(progress=progress)
    _, merged = np.unique(roots, return_inverse=True)
    return merged.ravel()[labels]


def neighbours(X, k, seed, progress):
    """(similarities, ids) of the k most similar rows of each row, itself included."""
    faiss = _import_faiss()
    if len(X) <= _BRUTE_FORCE_MAX_N:
        return faiss.knn(X, X, k, metric=faiss.METRIC_INNER_PRODUCT)
    return _ivfneighbours(X, k, seed, progress)


def _ivfneighbours(X, k, seed, progress):
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


def edges_within(sims, ids, t):
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
