"""facesets.identities.clustering (and its exact / kNN / graph-linkage modules): exact path vs sklearn,
scalable path vs exact, BCubed."""

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering

from scipy import sparse
from scipy.sparse.csgraph import connected_components

from facesets.identities import clustering_knn
from facesets.identities.clustering import bcubed, cluster_embeddings
from facesets.identities.graph_linkage import GraphAverageLinkage


def _in_order(labels):
    """Renumber labels by first occurrence, to compare partitions as arrays."""
    _, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inv]


def _sklearn(X, threshold, linkage):
    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage=linkage, distance_threshold=threshold
    )
    return _in_order(model.fit_predict(X))


def _identities(n, dim=128, *, n_ids=40, same=0.6, strangers=0.1, seed=0):
    """Unit embeddings of Zipf-sized identities: cosine ~same within, ~0 between."""
    rng = np.random.default_rng(seed)
    n_known = n - int(n * strangers)
    weights = 1.0 / np.arange(1, n_ids + 1)
    ident = rng.choice(n_ids, n_known, p=weights / weights.sum())
    labels = np.concatenate([ident, n_ids + np.arange(n - n_known)])
    centres = rng.standard_normal((labels.max() + 1, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    a = np.clip(rng.normal(np.sqrt(same), 0.08, n), 0.3, 0.98)[:, None]
    noise = rng.standard_normal((n, dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    X = a * centres[labels] + np.sqrt(1 - a * a) * noise
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), labels


# ---------------------------------------------------------------- exact path


@pytest.mark.parametrize("linkage", ["average", "complete"])
@pytest.mark.parametrize("seed,threshold", [(0, 0.5), (1, 0.8), (2, 0.95)])
def test_exact_equals_sklearn_dense(linkage, seed, threshold):
    X = np.random.default_rng(seed).standard_normal((250, 12))  # not normalised on purpose
    ours = cluster_embeddings(X, threshold, linkage=linkage, method="exact")
    ref = _sklearn(X, threshold, linkage)
    assert 1 < ref.max() + 1 < len(X)  # a non-trivial cut, or the test proves nothing
    np.testing.assert_array_equal(ours, ref)


def test_threshold_is_strict_like_sklearn():
    X = np.array([[1.0, 0.0], [0.0, 1.0]])  # cosine distance exactly 1.0
    assert cluster_embeddings(X, 1.0, method="exact").tolist() == [0, 1]
    assert _sklearn(X, 1.0, "average").tolist() == [0, 1]
    assert cluster_embeddings(X, np.nextafter(1.0, 2.0), method="exact").tolist() == [0, 0]


def test_labels_numbered_by_first_occurrence():
    X, _ = _identities(400, 32, n_ids=6, same=0.7, strangers=0.0, seed=3)
    labels = cluster_embeddings(X, 0.55)
    first_seen = labels[np.sort(np.unique(labels, return_index=True)[1])]
    np.testing.assert_array_equal(first_seen, np.arange(labels.max() + 1))


# ---------------------------------------------------------------- scalable path


@pytest.fixture(scope="module")
def identity_set():
    X, truth = _identities(2500, seed=7)
    exact = cluster_embeddings(X, 0.55, method="exact")
    # Calibration guard: the cut must split some identities, or agreement is trivial.
    assert bcubed(exact, truth)[1] < 0.99
    return X, exact


@pytest.mark.parametrize(
    "exact_max_n",
    [12_000, 1],  # 1: every component goes through the sparse graph agglomeration
)
def test_knn_agrees_with_exact(identity_set, exact_max_n):
    X, exact = identity_set
    labels = cluster_embeddings(X, 0.55, method="knn", exact_max_n=exact_max_n)
    assert bcubed(labels, exact)[2] >= 0.995


def test_knn_with_ivf_search_agrees_with_exact(identity_set, monkeypatch):
    X, exact = identity_set
    monkeypatch.setattr(clustering_knn, "_BRUTE_FORCE_MAX_N", 100)  # force the IVF branch
    labels = cluster_embeddings(X, 0.55, method="knn", exact_max_n=1, seed=3)
    assert bcubed(labels, exact)[2] >= 0.995


def test_graph_average_linkage_is_exact_on_a_complete_graph():
    # With every pair as an edge, the sparse agglomeration must reproduce dense
    # average linkage, including a "hub" that absorbs points one by one.
    X, _ = _identities(300, 16, n_ids=5, same=0.5, strangers=0.2, seed=11)
    X = X.astype(np.float64)
    u, v = np.triu_indices(len(X), k=1)
    sim = np.einsum("ij,ij->i", X[u], X[v])
    for t in (0.4, 0.55, 0.7):
        roots = GraphAverageLinkage(X.copy(), np.ones(len(X)), u, v, sim, t).run()
        ref = cluster_embeddings(X, t, method="exact")
        np.testing.assert_array_equal(_in_order(roots), ref)


def test_pieces_the_knn_graph_never_linked_are_rejoined(identity_set):
    # With one neighbour per point the graph falls apart into many small
    # components; the pass over cluster means must put each person back together.
    X, exact = identity_set
    sims, ids = clustering_knn.neighbours(X, 2, 0, False)
    u, v, _ = clustering_knn.edges_within(sims, ids, 0.55)
    graph = sparse.csr_matrix((np.ones(len(u)), (u, v)), shape=(len(X),) * 2)
    pieces = connected_components(graph, directed=False)[1]
    assert bcubed(pieces, exact)[1] < 0.98  # the graph really splits people
    labels = cluster_embeddings(X, 0.55, method="knn", knn_k=1)
    assert bcubed(labels, exact)[2] >= 0.995


def test_knn_is_deterministic(identity_set):
    X, _ = identity_set
    a = cluster_embeddings(X, 0.55, method="knn", exact_max_n=1)
    b = cluster_embeddings(X, 0.55, method="knn", exact_max_n=1)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- complete linkage


@pytest.mark.parametrize("method", ["exact", "knn"])
def test_complete_linkage_keeps_every_pair_within_threshold(method):
    X, _ = _identities(600, 32, n_ids=8, same=0.55, seed=5)
    t = 0.5
    labels = cluster_embeddings(X, t, linkage="complete", method=method)
    assert labels.max() + 1 < len(X) * 0.5  # plenty of merges happened
    dist = 1.0 - X.astype(np.float64) @ X.T.astype(np.float64)
    same = labels[:, None] == labels[None, :]
    assert dist[same].max() < t


def test_complete_linkage_refuses_oversized_components():
    X, _ = _identities(500, 32, n_ids=2, same=0.7, strangers=0.0, seed=1)
    with pytest.raises(ValueError, match="exact_max_n"):
        cluster_embeddings(X, 0.55, linkage="complete", method="knn", exact_max_n=50)


# ---------------------------------------------------------------- edge cases and validation


@pytest.mark.parametrize("method", ["auto", "exact", "knn"])
def test_empty_and_single(method):
    empty = cluster_embeddings(np.zeros((0, 128), np.float32), 0.5, method=method)
    assert empty.shape == (0,) and empty.dtype == np.int64
    one = cluster_embeddings(np.ones((1, 128), np.float32), 0.5, method=method)
    assert one.tolist() == [0]


def test_zero_threshold_gives_singletons():
    X = np.ones((5, 3))  # identical points, distance 0, still not < 0
    assert cluster_embeddings(X, 0.0).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "emb,kwargs,error",
    [
        (np.ones(5), {}, ValueError),  # 1-d
        (np.array([[1.0, np.nan], [1.0, 0.0]]), {}, ValueError),
        (np.array([[1.0, np.inf], [1.0, 0.0]]), {}, ValueError),
        (np.array([[0.0, 0.0], [1.0, 0.0]]), {}, ValueError),  # zero row
        (np.array([["a", "b"]]), {}, TypeError),
        (np.ones((3, 2)), {"linkage": "ward"}, ValueError),
        (np.ones((3, 2)), {"method": "fast"}, ValueError),
        (np.ones((3, 2)), {"threshold": -0.1}, ValueError),
        (np.ones((3, 2)), {"threshold": float("nan")}, ValueError),
        (np.ones((3, 2)), {"knn_k": 0}, ValueError),
        (np.ones((3, 2)), {"threshold": 1.2, "method": "knn"}, ValueError),
    ],
)
def test_invalid_input(emb, kwargs, error):
    kwargs = {"threshold": 0.5, **kwargs}
    with pytest.raises(error):
        cluster_embeddings(emb, **kwargs)


# ---------------------------------------------------------------- BCubed


def test_bcubed_perfect():
    assert bcubed([3, 3, 1, 1, 7], ["a", "a", "b", "b", "c"]) == (1.0, 1.0, 1.0)


def test_bcubed_all_in_one_cluster():
    true = [0, 0, 1, 1, 1, 2]
    p, r, f = bcubed([0] * 6, true)
    assert p == pytest.approx((2 * 2 + 3 * 3 + 1 * 1) / 6 / 6)  # 14/36
    assert r == 1.0
    assert f == pytest.approx(2 * p / (p + 1))


def test_bcubed_all_singletons():
    p, r, _ = bcubed(np.arange(6), [0, 0, 1, 1, 1, 2])
    assert p == 1.0
    assert r == pytest.approx((2 * (1 / 2) + 3 * (1 / 3) + 1) / 6)


def test_bcubed_is_not_symmetric_in_its_arguments():
    pred, true = [0, 0, 0, 1], [0, 0, 1, 1]
    p, r, _ = bcubed(pred, true)
    p2, r2, _ = bcubed(true, pred)
    assert (p, r) == pytest.approx((r2, p2))
    assert p != pytest.approx(r)


def test_bcubed_rejects_bad_input():
    with pytest.raises(ValueError):
        bcubed([0, 1], [0])
    with pytest.raises(ValueError):
        bcubed([], [])
