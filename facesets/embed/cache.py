"""The face cache every later stage reads: one snapshot of all sources' faces, files and aliases.

A face is identified by (sha256 of the image bytes, face index), never by path. Byte-identical files
are resolved here: the first file in (source order, path) order is canonical and carries the faces;
the others become `alias` entries pointing at it, so every on-disk location stays represented.
"""
from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesets.core import atomic
from facesets.embed.store import FaceStore, concat_faces, empty_faces, take_faces

CACHE_VERSION = 1


@dataclass
class FaceCache:
    sources: dict[str, str]                 # source name -> root path
    files: list[dict]                       # every file entry (face/noface/skipped/alias)
    faces: dict[str, np.ndarray] = field(default_factory=empty_faces)
    face_path: np.ndarray = field(default_factory=lambda: np.zeros(0, "U1"))    # canonical "source/relpath"
    meta: dict = field(default_factory=dict)

    # ---- construction
    @classmethod
    def from_states(cls, sources: dict[str, str], states) -> "FaceCache":
        files: dict[tuple[str, str], dict] = {}
        parts = []
        for st in states:
            files.update(st.files)
            parts.append(st.faces)
        faces = concat_faces(parts)
        order = {name: i for i, name in enumerate(sources)}
        entries = sorted(files.values(), key=lambda e: (order.get(e["source"], len(order)), e["source"], e["path"]))
        canonical: dict[str, dict] = {}
        out = []
        for e in entries:
            e = dict(e)
            if e["status"] in ("face", "noface"):
                first = canonical.get(e["sha256"])
                if first is None:
                    canonical[e["sha256"]] = e
                else:
                    e["status"] = "alias"
                    e["alias_of"] = f'{first["source"]}/{first["path"]}'
            out.append(e)
        # one row per (sha, face_index): shards may have embedded the same bytes twice
        if len(faces["sha256"]):
            keys = np.char.add(np.char.add(faces["sha256"], ":"), faces["face_index"].astype(str))
            _, first_idx = np.unique(keys, return_index=True)
            live = np.array([s in canonical for s in faces["sha256"][np.sort(first_idx)]], dtype=bool)
            faces = take_faces(faces, np.sort(first_idx)[live])
            order_rows = np.lexsort((faces["face_index"], faces["sha256"]))
            faces = take_faces(faces, order_rows)
        face_path = np.array(
            [f'{canonical[s]["source"]}/{canonical[s]["path"]}' for s in faces["sha256"]], dtype=str
        ) if len(faces["sha256"]) else np.zeros(0, "U1")
        return cls(sources=dict(sources), files=out, faces=faces, face_path=face_path)

    @classmethod
    def from_store_dirs(cls, sources: dict[str, str], store_dirs: list[str | Path]) -> "FaceCache":
        return cls.from_states(sources, (FaceStore(d).load() for d in store_dirs))

    # ---- persistence
    def save(self, path: str | Path) -> None:
        buf = io.BytesIO()
        meta = dict(self.meta, version=CACHE_VERSION, sources=self.sources)
        np.savez(
            buf,
            **{k: np.asarray(v) for k, v in self.faces.items()},
            face_path=self.face_path,
            files_json=np.frombuffer(atomic.dumps_json(self.files).encode(), np.uint8),
            meta_json=np.frombuffer(atomic.dumps_json(meta).encode(), np.uint8),
        )
        atomic.write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "FaceCache":
        """Load a cache snapshot (.npz) or a store folder (the CLI's `embed SRC CACHE` form)."""
        path = Path(path)
        if path.is_dir():
            stores = [p.parent for p in sorted(path.rglob("segments"))] or [path]
            cache = cls.from_store_dirs({}, stores)
            cache.sources = _sources_of(cache.files, path)
            return cache
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta_json"].tobytes().decode())
            files = json.loads(z["files_json"].tobytes().decode())
            faces = {k: z[k] for k in z.files if k not in ("files_json", "meta_json", "face_path")}
            face_path = z["face_path"]
        if meta.get("version") != CACHE_VERSION:
            raise ValueError(f"{path}: cache version {meta.get('version')} is not {CACHE_VERSION}")
        return cls(sources=meta.get("sources", {}), files=files, faces=faces, face_path=face_path, meta=meta)

    # ---- views
    def __len__(self) -> int:
        return len(self.faces["sha256"])

    @property
    def embeddings(self) -> np.ndarray:
        return self.faces["embedding"]

    def face_keys(self) -> list[str]:
        return [f"{s}:{i}" for s, i in zip(self.faces["sha256"].tolist(), self.faces["face_index"].tolist())]

    def by_status(self, status: str) -> list[dict]:
        return [e for e in self.files if e["status"] == status]

    @functools.cached_property
    def image_sizes(self) -> dict[str, tuple[int, int]]:
        """canonical "source/path" -> (width, height) of the photo after EXIF orientation (built once)."""
        return {f'{e["source"]}/{e["path"]}': (int(e.get("width") or 0), int(e.get("height") or 0))
                for e in self.files if e["status"] == "face"}

    def aliases_of(self) -> dict[str, list[str]]:
        """canonical "source/path" -> the alias paths of the same bytes."""
        out: dict[str, list[str]] = {}
        for e in self.files:
            if e["status"] == "alias":
                out.setdefault(e["alias_of"], []).append(f'{e["source"]}/{e["path"]}')
        return out

    def abs_path(self, source_path: str) -> Path:
        source, _, rel = source_path.partition("/")
        return Path(self.sources[source]) / rel


def _sources_of(files: list[dict], store_root: Path) -> dict[str, str]:
    roots = {}
    for e in files:
        if e.get("root"):
            roots.setdefault(e["source"], e["root"])
    return roots
