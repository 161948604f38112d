"""EXIF year per photo, read with exifread and cached on disk (path, size, mtime -> year).

DateTimeOriginal first, then DateTimeDigitized, then Image DateTime; otherwise "no date" (None). The
cache means a re-run after a threshold change reads no EXIF again (slow on network mounts).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from . import atomic

log = logging.getLogger(__name__)
TAGS = ("EXIF DateTimeOriginal", "EXIF DateTimeDigitized", "Image DateTime")
YEAR = re.compile(r"^\s*(\d{4})[:\-]")


def read_year(path: str | Path) -> int | None:
    import exifread

    try:
        with open(path, "rb") as fh:
            tags = exifread.process_file(fh, details=False, stop_tag="DateTimeOriginal")
    except Exception as exc:  # exifread raises many types on odd files; "no date" is the honest answer
        log.debug("exif unreadable %s: %s", path, exc)
        return None
    for t in TAGS:
        if t in tags:
            m = YEAR.match(str(tags[t]))
            if m and 1900 < int(m.group(1)) < 2200:
                return int(m.group(1))
    return None


class YearCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data = atomic.read_json(self.path) if self.path.is_file() else {}
        self.reads = 0

    def year(self, photo: str | Path) -> int | None:
        photo = os.path.abspath(photo)
        try:
            st = os.stat(photo)
        except OSError:
            return None
        hit = self.data.get(photo)
        if hit and hit["size"] == st.st_size and hit["mtime_ns"] == st.st_mtime_ns:
            return hit["year"]
        y = read_year(photo)
        self.reads += 1
        self.data[photo] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "year": y}
        return y

    def save(self) -> None:
        atomic.write_json(self.path, self.data, indent=None)
