"""Average linkage agglomerated on a sparse graph with exact average distances: the large connected
components of the kNN path (clustering_knn.py) and the rejoin pass over cluster means."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

# Large components: exact reciprocal-pair rounds, with a bulk round when fewer
# than _RAC_MIN_SHARE of the clusters that want to merge are in reciprocal
# pairs, below rising levels up to (1 - _EXACT_BAND) * t.
_RAC_MIN_SHARE = 0.01
_COARSE_LEVELS = 5
_EXACT_BAND = 0.1
_ROWDOT_CHUNK = 32_768


class GraphAverageLinkage:
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
