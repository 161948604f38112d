"""The review page's thumbnails, made once and kept in <results>/review/thumbs/.

A crop's thumbnail is named by the sha256 of the crop's bytes, so a crop the export renders again (new
settings) gets a new one and an unchanged crop never costs more than a stat (the hash is remembered per
size and mtime). A loose face's thumbnail (a singleton has no crop) is cut from its photo, found through
the face cache, and named by its key, which is the photo's own hash. Only files under the results folder's
export are ever read by name; a photo is only ever reached through the cache, by a face key.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import cv2
import numpy as np

from facesets.core import atomic
from facesets.core.layout import Layout

SIZE = 160
MAX_PIXELS = 250_000_000


def inside(base: Path, rel: str, suffix: str) -> Path | None:
    """`base/rel` when it is a file with `suffix` that resolves (links followed) inside `base`; else None."""
    if not rel or "\\" in rel or "\0" in rel or rel.startswith("/") or ".." in Path(rel).parts:
        return None
    try:
        path = (base / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return path if path.is_file() and path.suffix.lower() == suffix and path.is_relative_to(base.resolve()) else None


def _jpeg(img: np.ndarray, out: Path) -> Path:
    h, w = img.shape[:2]
    s = SIZE / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 82])
    atomic.write_bytes(out, buf.tobytes())
    return out


class Thumbs:
    def __init__(self, layout: Layout, similar):
        self.layout, self.similar = layout, similar
        self.dir = layout.review / "thumbs"
        self._hashes: dict[Path, tuple[int, int, str]] = {}
        self._lock = threading.Lock()

    def _sha(self, path: Path) -> str:
        st = path.stat()
        with self._lock:
            known = self._hashes.get(path)
        if known and known[:2] == (st.st_size, st.st_mtime_ns):
            return known[2]
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        with self._lock:
            self._hashes[path] = (st.st_size, st.st_mtime_ns, sha)
        return sha

    def crop(self, rel: str) -> Path | None:
        """The thumbnail of an exported crop (`rel` relative to the export folder), made on first use."""
        path = inside(self.layout.export, rel, ".png")
        if path is None:
            return None
        sha = self._sha(path)
        out = self.dir / "crops" / sha[:2] / f"{sha}.jpg"
        if out.is_file():
            return out
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return _jpeg(img, out) if img is not None else None

    def face(self, key: str) -> Path | None:
        """The thumbnail of any face the cache knows, framed as roop frames a crop, cut from its photo."""
        from facesets.export.crops import dct_reduction, render, roop_frame
        from facesets.export.decode import decoded, read_source

        info = self.similar.face(key)
        if info is None:
            return None
        out = self.dir / "faces" / f"{key.replace(':', '_')}.jpg"
        if out.is_file():
            return out
        cache = self.similar.cache
        data, why = read_source(cache, info["path"], info["sha256"], cache.aliases_of().get(info["path"], []))
        src, why = decoded(data, why, MAX_PIXELS, dct_reduction([info["bbox"]], 0.5, SIZE))
        if src is None:
            return None
        frame = roop_frame(src.to_image(info["bbox"]), 0.5)
        return _jpeg(render(src.bgr, frame, SIZE), out)
