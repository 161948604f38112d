"""Benchmark facesets.identities.clustering on identity-structured synthetic face embeddings.

The data imitate a family photo library: identity sizes follow a Zipf law (a few
people with thousands of photos, many with a handful), plus a fraction of
one-off strangers. Each identity has a random unit centre c; a face is
    x = a*c + sqrt(1 - a^2)*noise,   a ~ N(sqrt(same), spread), noise a random unit vector,
so two faces of one person have cosine ~ a_i*a_j (mean ~ `same`), and centres
share a common "face" direction so that different people have cosine ~ `diff`
(real photos: ~0.72 / ~0.03 with a 128-d recognizer; ArcFace 512-d: 0.6-0.75 /
0.0-0.1). The measured means are printed so the calibration is visible.

Every run happens in a fresh spawned process that generates the data itself
(deterministically from the seed) and reports its own peak RSS (VmHWM), so
sizes and methods never share memory. "peak GB" includes the embeddings
themselves and the interpreter ("data GB": RSS just before clustering).

    python benchmarks/bench_cluster.py                       # 10k, 100k, 1M
    python benchmarks/bench_cluster.py --sizes 10000 --dim 128
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facesets.identities import clustering_knn
from facesets.identities.clustering import bcubed, cluster_embeddings

_GEN_CHUNK = 65_536


def identity_sizes(n: int, *, strangers: float, per_identity: float, zipf: float) -> np.ndarray:
    """Zipf-distributed identity sizes summing to n minus the strangers (size-1 identities)."""
    n_strangers = round(n * strangers)
    n_known = n - n_strangers
    n_ids = max(1, round(n_known / per_identity))
    weights = 1.0 / np.arange(1, n_ids + 1) ** zipf
    sizes = np.maximum(2, np.floor(weights / weights.sum() * n_known)).astype(np.int64)
    sizes[0] += n_known - sizes.sum()  # rounding remainder goes to the biggest person
    return np.concatenate([sizes, np.ones(n_strangers, dtype=np.int64)])


def identity_labels(n, *, strangers=0.1, per_identity=100.0, zipf=1.0, seed=0, **_):
    """The ground-truth identity of each face, as make_identities draws it."""
    return _draw_labels(n, np.random.default_rng(seed), strangers, per_identity, zipf)


def _draw_labels(n, rng, strangers, per_identity, zipf):
    sizes = identity_sizes(n, strangers=strangers, per_identity=per_identity, zipf=zipf)
    return np.repeat(np.arange(len(sizes)), sizes)[rng.permutation(n)]


def make_identities(n, dim, *, same=0.7, diff=0.03, spread=0.08, strangers=0.1,
                    per_identity=100.0, zipf=1.0, seed=0):
    """(embeddings float32 (n, dim), identity labels (n,)) in random order."""
    rng = np.random.default_rng(seed)
    labels = _draw_labels(n, rng, strangers, per_identity, zipf)
    n_ids = labels.max() + 1
    shared = _unit(rng.standard_normal(dim))
    # centre.centre' ~ g, so faces of different people get ~ E[a]^2 * g = diff
    g = diff / same
    centres = _unit(np.sqrt(g) * shared + np.sqrt(1 - g) * _unit(rng.standard_normal((n_ids, dim))))
    centres = centres.astype(np.float32)
    emb = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, _GEN_CHUNK):
        lab = labels[start : start + _GEN_CHUNK]
        a = np.clip(rng.normal(np.sqrt(same), spread, len(lab)), 0.3, 0.98).astype(np.float32)[:, None]
        noise = _unit(rng.standard_normal((len(lab), dim), dtype=np.float32))
        emb[start : start + len(lab)] = _unit(a * centres[lab] + np.sqrt(1 - a * a) * noise)
    return emb, labels


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def similarity_stats(emb, labels, *, pairs=200_000, seed=1):
    """Mean (and std) cosine of random same-identity and different-identity pairs."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(emb), pairs)
    # partner with the same label: random member of i's identity
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], labels[i], side="left")
    ends = np.searchsorted(labels[order], labels[i], side="right")
    multi = ends - starts > 1
    i, starts, ends = i[multi], starts[multi], ends[multi]
    j = order[starts + (rng.random(len(i)) * (ends - starts)).astype(np.int64)]
    ok = j != i
    same = np.einsum("ij,ij->i", emb[i[ok]], emb[j[ok]])
    a, b = rng.integers(0, len(emb), (2, pairs))
    ok = labels[a] != labels[b]
    diff = np.einsum("ij,ij->i", emb[a[ok]], emb[b[ok]])
    return same, diff


def _status_bytes(field: str) -> int:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak), in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(conn, n, dim, gen_kwargs, cluster_kwargs, overrides):
    for name, value in overrides.items():  # benchmark-only knobs, e.g. exact kNN search
        setattr(clustering_knn, name, value)
    emb, _ = make_identities(n, dim, **gen_kwargs)
    data_rss = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    labels = cluster_embeddings(emb, **cluster_kwargs)
    seconds = time.perf_counter() - t0
    # Not getrusage's ru_maxrss: Linux carries it over from the parent through
    # fork + exec, so a child would report the parent's peak if that is higher.
    # VmHWM is the peak of this process's own address space.
    peak = _status_bytes("VmHWM")
    conn.send((labels, seconds, peak, data_rss))
    conn.close()


def run_isolated(n, dim, gen_kwargs, cluster_kwargs, overrides=None):
    """Cluster in a fresh process: (labels, seconds, peak RSS bytes, RSS after data generation)."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, n, dim, gen_kwargs, cluster_kwargs, overrides or {}))
    proc.start()
    send.close()
    try:
        result = recv.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"child for n={n} died with exit code {proc.exitcode}") from None
    proc.join()
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--threshold", type=float, default=0.55)
    ap.add_argument("--same", type=float, default=0.7, help="target mean same-person cosine")
    ap.add_argument("--diff", type=float, default=0.03, help="target mean different-person cosine")
    ap.add_argument("--spread", type=float, default=0.08, help="std of a face's projection on its centre")
    ap.add_argument("--strangers", type=float, default=0.1, help="fraction of one-off faces")
    ap.add_argument("--per-identity", type=float, default=100.0, help="mean faces per recurring person")
    ap.add_argument("--knn-k", type=int, default=20)
    ap.add_argument("--exact-max-n", type=int, default=12_000)
    ap.add_argument("--dense-max", type=int, default=20_000,
                    help="also run the exact dense method up to this size (memory ~ 8 n^2 bytes)")
    ap.add_argument("--ivf-check-max", type=int, default=100_000,
                    help="up to this size, also cluster from an exact (brute-force) kNN graph "
                         "to measure what the approximate IVF search costs in agreement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    gen = {
        "same": args.same, "diff": args.diff, "spread": args.spread, "strangers": args.strangers,
        "per_identity": args.per_identity, "seed": args.seed,
    }

    emb, labels = make_identities(min(max(sizes), 100_000), args.dim, **gen)
    same, diff = similarity_stats(emb, labels)
    below = np.mean(same < 1 - args.threshold)
    print(f"calibration ({args.dim}-d): same-person cosine {same.mean():.3f} +- {same.std():.3f} "
          f"({below:.1%} of pairs beyond the threshold), different-person {diff.mean():.3f} +- {diff.std():.3f}")
    del emb, labels

    header = f"{'n':>9} {'method':<18} {'time s':>8} {'peak GB':>8} {'data GB':>8} {'clusters':>9} {'F truth':>8} {'F ref':>8}"
    print("F = BCubed F1. F ref: against the exact dense method where it fits (n <= --dense-max),")
    print("else against clustering from the exact kNN graph (n <= --ivf-check-max).")
    print(header)
    print("-" * len(header))
    common = {
        "threshold": args.threshold, "knn_k": args.knn_k, "seed": args.seed, "progress": args.progress,
    }
    for n in sizes:
        truth = identity_labels(n, **gen)
        knn = {"method": "knn", "exact_max_n": args.exact_max_n}
        runs = [("knn", knn, None)]
        dense = n <= args.dense_max
        if dense:
            # exact_max_n=1 sends every component through the sparse graph agglomeration
            runs += [
                ("knn, graph only", dict(knn, exact_max_n=1), None),
                # the approximate IVF search normally starts above 20k points
                ("knn, IVF search", knn, {"_BRUTE_FORCE_MAX_N": 0}),
                ("exact", {"method": "exact"}, None),
            ]
        ivf_check = clustering_knn._BRUTE_FORCE_MAX_N < n <= args.ivf_check_max
        if ivf_check:
            runs += [("knn, exact kNN", knn, {"_BRUTE_FORCE_MAX_N": n})]
        results = {name: run_isolated(n, args.dim, gen, {**common, **kw}, over) for name, kw, over in runs}
        reference = "exact" if dense else "knn, exact kNN" if ivf_check else None
        for name, (lab, sec, peak, data) in results.items():
            agree = f"{bcubed(lab, results[reference][0])[2]:.4f}" if reference else "-"
            print(f"{n:>9} {name:<18} {sec:>8.1f} {peak / 2**30:>8.2f} {data / 2**30:>8.2f} "
                  f"{len(np.unique(lab)):>9} {bcubed(lab, truth)[2]:>8.4f} {agree:>8}", flush=True)
        if dense:
            _, s_knn, p_knn, _ = results["knn"]
            _, s_ex, p_ex, _ = results["exact"]
            print(f"{'':>9} exact / knn: time x{s_ex / s_knn:.2f}, peak memory x{p_ex / p_knn:.2f}", flush=True)


if __name__ == "__main__":
    main()
