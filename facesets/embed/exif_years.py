"""EXIF year per photo, read with exifread and cached on disk (path, size, mtime -> year).

DateTimeOriginal first, then DateTimeDigitized, then Image DateTime; otherwise "no date" (None). Where
exifread finds no date (it cannot parse every HEIC: pillow-heif's fail with an AssertionError) the
same tags are read through Pillow's getexif(), with HEIC/HEIF/AVIF openers registered: embed's reader.
The cache means a re-run after a threshold change reads no EXIF again (slow on network mounts).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from facesets.core import atomic

log = logging.getLogger(__name__)
TAGS = ("EXIF DateTimeOriginal", "EXIF DateTimeDigitized", "Image DateTime")
YEAR = re.compile(r"^\s*(\d{4})[:\-]")


def _year_of(text) -> int | None:
    m = YEAR.match(str(text))
    return int(m.group(1)) if m and 1900 < int(m.group(1)) < 2200 else None


def _exifread_year(path: str | Path) -> int | None:
    import exifread

    try:
        with open(path, "rb") as fh:
            tags = exifread.process_file(fh, details=False, stop_tag="DateTimeOriginal")
    except Exception as exc:  # exifread raises many types on odd files (AssertionError on some HEIC)
        log.debug("exifread cannot read %s: %s", path, exc)
        return None
    for t in TAGS:
        if t in tags and (y := _year_of(tags[t])) is not None:
            return y
    return None


def _pillow_year(path: str | Path) -> int | None:
    from PIL import Image

    from facesets.core.imageio import exif_datetime  # registers the HEIC/HEIF opener

    try:
        with Image.open(path) as img:  # the header and metadata only, no pixels
            dt = exif_datetime(img)
    except Exception as exc:  # not an image, or a format Pillow cannot open: "no date"
        log.debug("exif unreadable %s: %s", path, exc)
        return None
    return _year_of(dt) if dt else None


def read_year(path: str | Path) -> int | None:
    y = _exifread_year(path)
    return y if y is not None else _pillow_year(path)


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
