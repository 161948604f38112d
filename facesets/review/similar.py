"""Which facesets and loose faces resemble a faceset (the review page's merge and assign suggestions), from the
face cache and the refine manifest. Loaded once when a faceset page first needs it, and again only when the
cache or the manifest changed."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from facesets.core.layout import Layout
from facesets.embed.cache import FaceCache
from facesets.review.people import read


def _stamp(*paths: Path) -> tuple:
    return tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in paths)


class Similar:
    def __init__(self, layout: Layout):
        self.layout = layout
        self._lock = threading.Lock()
        self._stamp = None

    def _load(self) -> None:
        stamp = _stamp(self.layout.cache, self.layout.refine_manifest)
        if stamp == self._stamp:
            return
        refine = read(self.layout.refine_manifest) or {"facesets": {}, "removed": {}}
        cache = FaceCache.load(self.layout.cache) if self.layout.cache.is_file() else None
        keys = cache.face_keys() if cache is not None else []
        self.index = {k: i for i, k in enumerate(keys)}
        self.cache = cache
        self.names, cents, placed = [], [], set()
        for name, fs in refine["facesets"].items():
            idx = [self.index[k] for k, _ in fs["faces"] if k in self.index]
            placed.update(idx)
            if idx:
                c = cache.embeddings[idx].mean(axis=0)
                self.names.append(name)
                cents.append(c / max(float(np.linalg.norm(c)), 1e-12))
        dim = cache.embeddings.shape[1] if cache is not None and len(cache) else 1
        self.cents = np.stack(cents).astype(np.float32) if cents else np.zeros((0, dim), np.float32)
        self.loose = np.array(sorted(set(range(len(keys))) - placed), dtype=np.int64)  # in no faceset
        self.members = {n: [k for k, _ in fs["faces"]] for n, fs in refine["facesets"].items()}
        self._stamp = stamp

    def facesets(self, name: str, k: int = 8) -> list[tuple[str, float]]:
        """The facesets whose centroid is nearest to this one's, most similar first."""
        with self._lock:
            self._load()
            if name not in self.names:
                return []
            sims = self.cents @ self.cents[self.names.index(name)]
            order = [int(i) for i in np.argsort(-sims) if self.names[int(i)] != name][:k]
            return [(self.names[i], round(float(sims[i]), 3)) for i in order]

    def faces(self, name: str, k: int = 24) -> list[dict]:
        """Faces in no faceset (singletons, candidates, faces refine left out), nearest to this faceset first."""
        with self._lock:
            self._load()
            if name not in self.names or not len(self.loose):
                return []
            keys = self.cache.face_keys()
            dist = 1.0 - self.cache.embeddings[self.loose] @ self.cents[self.names.index(name)]
            best = np.argsort(dist, kind="stable")[:k]
            return [{"key": keys[int(self.loose[j])], "distance": round(float(dist[j]), 3),
                     "path": str(self.cache.face_path[int(self.loose[j])])} for j in best]

    def face(self, key: str) -> dict | None:
        """Where a face is (photo path, sha256, bbox), for its thumbnail."""
        with self._lock:
            self._load()
            i = self.index.get(key)
            if i is None:
                return None
            f = self.cache.faces
            return {"path": str(self.cache.face_path[i]), "sha256": str(f["sha256"][i]), "bbox": f["bbox"][i]}

    def anchor_keys(self, name: str) -> list[str]:
        """A few face keys that stand for a faceset: its best-ranked crops, else its first members."""
        per = read(self.layout.export / name / "manifest.json") or {}
        keys = [m["key"] for m in per.get("members", [])]
        if not keys:
            with self._lock:
                self._load()
                keys = self.members.get(name, [])
        return keys
