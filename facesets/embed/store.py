"""The resumable face store: an append-only folder of small segment files.

Each flush writes one new segment (<= flush_every files of work) atomically, so a flush costs
O(new work) whatever the store's size, and a kill -9 loses at most the unflushed files. Loading
replays the segments in order; the latest entry for a file wins, and the latest embedding of a
content hash (sha256) wins. Entries carry an engine signature so a model change re-embeds.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesets.core import atomic
from facesets.core.errors import Locked
from facesets.core.locks import exclusive

SEG_RE = re.compile(r"^seg-(\d{8})-[0-9a-f]+\.npz$")
COMPACT_AFTER = 200  # segments; compaction is end-of-run work, never part of a flush

FACE_FIELDS = {
    "sha256": ("U64", ()),
    "face_index": (np.int32, ()),
    "bbox": (np.float32, (4,)),
    "kps": (np.float32, (5, 2)),
    "det_score": (np.float32, ()),
    "face_short": (np.float32, ()),
    "blur": (np.float32, ()),
    "emb_norm": (np.float32, ()),
}


class StoreLocked(Locked):
    pass


def empty_faces(dim: int = 0) -> dict[str, np.ndarray]:
    out = {k: np.zeros((0, *shape), dtype=dt) for k, (dt, shape) in FACE_FIELDS.items()}
    out["embedding"] = np.zeros((0, dim), np.float32)
    return out


def concat_faces(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if len(p["sha256"])]
    if not parts:
        return empty_faces()
    dims = {p["embedding"].shape[1] for p in parts}
    if len(dims) > 1:
        raise ValueError(f"embeddings of different widths in one cache: {sorted(dims)}")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def take_faces(faces: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in faces.items()}


@dataclass
class StoreState:
    files: dict[tuple[str, str], dict] = field(default_factory=dict)   # (source, relpath) -> entry
    faces: dict[str, np.ndarray] = field(default_factory=empty_faces)  # latest rows per sha256

    def content(self, sig: str) -> dict[str, dict]:
        """sha256 -> a face/noface entry embedded with engine signature `sig` (reusable content)."""
        out = {}
        for e in self.files.values():
            if e["status"] in ("face", "noface") and e.get("sig") == sig:
                out.setdefault(e["sha256"], e)
        return out


class FaceStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.seg_dir = self.root / "segments"
        self._lock_fh = None

    # -- locking: one writer per store (Snakemake has its own lock; this covers direct CLI use)
    @contextlib.contextmanager
    def locked(self):
        msg = f"another facesets process is writing {self.root}; wait for it to finish"
        with exclusive(self.root / ".lock", StoreLocked, msg):
            self._sweep_partial()
            yield self

    def _sweep_partial(self) -> None:
        """Temp files of a flush that a kill interrupted: never renamed, so never part of the store."""
        if self.seg_dir.is_dir():
            for p in self.seg_dir.glob(".seg-*.tmp"):
                p.unlink(missing_ok=True)

    def segments(self) -> list[Path]:
        if not self.seg_dir.is_dir():
            return []
        segs = [p for p in self.seg_dir.iterdir() if SEG_RE.match(p.name)]
        return sorted(segs, key=lambda p: (int(SEG_RE.match(p.name).group(1)), p.name))

    def _next_name(self) -> str:
        segs = self.segments()
        n = int(SEG_RE.match(segs[-1].name).group(1)) + 1 if segs else 0
        return f"seg-{n:08d}-{os.urandom(4).hex()}.npz"

    def append(self, files: list[dict], faces: dict[str, np.ndarray] | None = None) -> Path | None:
        """Write one segment atomically. Costs O(len(files) + faces), independent of the store size."""
        if not files:
            return None
        faces = faces if faces is not None else empty_faces()
        buf = io.BytesIO()
        payload = {k: np.asarray(v) for k, v in faces.items()}
        payload["files_json"] = np.frombuffer(atomic.dumps_json(files).encode("utf-8"), dtype=np.uint8)
        np.savez(buf, **payload)
        path = self.seg_dir / self._next_name()
        atomic.write_bytes(path, buf.getvalue())
        return path

    @staticmethod
    def read_segment(path: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
        with np.load(path, allow_pickle=False) as z:
            files = json.loads(z["files_json"].tobytes().decode("utf-8"))
            faces = {k: z[k] for k in z.files if k != "files_json"}
        return files, faces

    def load(self) -> StoreState:
        state = StoreState()
        parts: list[dict[str, np.ndarray]] = []
        for seg in self.segments():
            files, faces = self.read_segment(seg)
            for e in files:
                key = (e["source"], e["path"])
                if e["status"] == "removed":
                    state.files.pop(key, None)
                else:
                    state.files[key] = e
            if len(faces.get("sha256", ())):
                parts.append(faces)
        faces = concat_faces(parts)
        if len(faces["sha256"]):
            # a later embedding of the same content replaces every earlier face row of it
            last_part = np.concatenate([np.full(len(p["sha256"]), i) for i, p in enumerate(parts)])
            latest: dict[str, int] = {}
            for sha, part in zip(faces["sha256"].tolist(), last_part.tolist()):
                latest[sha] = part
            keep = np.fromiter((latest[s] == p for s, p in zip(faces["sha256"].tolist(), last_part.tolist())),
                               dtype=bool, count=len(last_part))
            live = {e["sha256"] for e in state.files.values() if e["status"] == "face"}
            keep &= np.isin(faces["sha256"], list(live)) if live else False
            faces = take_faces(faces, keep)
        state.faces = faces
        return state

    def compact(self, state: StoreState | None = None) -> None:
        """Fold all segments into one (end-of-run housekeeping, O(store size))."""
        old = self.segments()
        if len(old) <= 1:
            return
        state = state or self.load()
        files = list(state.files.values())
        new = self.append(files, state.faces) if files else None
        for p in old:
            if p != new:
                p.unlink()

    def maybe_compact(self) -> None:
        if len(self.segments()) > COMPACT_AFTER:
            self.compact()
