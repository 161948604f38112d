"""The source photo of a crop: read by any path that still holds the embedded bytes, and decoded upright,
at full size or -- for a JPEG whose crop frames are all >= 2x out_size -- by libjpeg's DCT scaling, as small
as keeps every frame >= out_size (the crops are still only ever shrunk, at a fraction of the decode time)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from facesets.core import imageio
from facesets.embed.cache import FaceCache


@dataclass
class Source:
    """A photo decoded for cropping, upright, at 1/scale of its full size. Boxes are in full-size
    upright pixels; `offset` is the margin, in those pixels, that libjpeg's partial last block puts
    on the left / top once the reduced image is turned upright."""
    bgr: np.ndarray
    scale: int = 1
    offset: tuple[float, float] = (0.0, 0.0)

    def to_image(self, box: np.ndarray) -> np.ndarray:
        if self.scale == 1 and self.offset == (0.0, 0.0):
            return box  # as it is: a full-size decode renders exactly what it always rendered
        ox, oy = self.offset
        return (np.asarray(box[:4], np.float64) + (ox, oy, ox, oy)) / self.scale


def _upright_offset(orient: int, pad: tuple[int, int]) -> tuple[float, float]:
    """The reduced image covers the stored one padded by `pad` (x, y) source pixels on the right and
    bottom; after the EXIF turn that padding may sit on the left or top and shift every coordinate.
    Found by turning a marked corner with the very operation imageio applies, so the two cannot drift."""
    if orient not in imageio.UPRIGHT:
        return 0.0, 0.0
    corner = np.zeros((2, 2), np.uint8)
    corner[0, 0] = 1  # the stored image's top-left: the corner without padding
    row, col = np.argwhere(imageio.UPRIGHT[orient](corner))[0]
    px, py = (pad[1], pad[0]) if orient in (5, 6, 7, 8) else pad  # these turns swap the axes
    return float(px if col else 0), float(py if row else 0)


def _decode_reduced(data: bytes, max_pixels: int, reduce: int) -> Source | None:
    """libjpeg's DCT-scaled decode at 1/reduce (the orientation and colour handling of imageio.decode);
    None where the photo is not a single-scan JPEG big enough for it."""
    img = imageio.open_image(data, max_pixels)
    w, h = img.size
    if img.format != "JPEG" or min(w, h) < reduce:
        return None
    drafted = img.draft("RGB", (w // reduce, h // reduce))
    if not drafted:
        return None
    scale = round(w / drafted[1][2])
    if not 2 <= scale <= reduce:  # more than asked for would make some crop an upscale
        return None
    orient = imageio.orientation(img)
    img.load()
    bgr = cv2.cvtColor(imageio.to_rgb8(img), cv2.COLOR_RGB2BGR)
    if orient in imageio.UPRIGHT:
        bgr = imageio.UPRIGHT[orient](bgr)
    pad = (scale * img.size[0] - w, scale * img.size[1] - h)
    return Source(bgr, scale, _upright_offset(orient, pad))


def decode_for_crops(data: bytes, max_pixels: int, reduce: int = 1) -> Source:
    """The photo upright, reduced by `reduce` where a JPEG allows it, else full size. Any trouble with
    the reduced decode goes the full-size way, so unreadable files give imageio's skip reasons."""
    if reduce > 1:
        try:
            src = _decode_reduced(data, max_pixels, reduce)
        except Exception:  # noqa: BLE001 -- the full decode below reports what is wrong
            src = None
        if src is not None:
            return src
    return Source(imageio.decode(data, max_pixels=max_pixels, long_side=0).bgr)


def read_source(cache: FaceCache, path: str, sha: str, aliases: list[str]) -> tuple[bytes | None, str | None]:
    """The photo's bytes, from its canonical path or any alias that still has them (every location
    holding these bytes decodes alike, so one read serves every reduction)."""
    last = "source missing"
    for loc in [path, *aliases]:
        try:
            data = cache.abs_path(loc).read_bytes()
        except OSError as exc:
            last = f"source unreadable: {exc.strerror or exc}"
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            last = "source changed since embed"
            continue
        return data, None
    return None, last


def decoded(data: bytes | None, why: str | None, max_pixels: int, reduce: int) -> tuple[Source | None, str | None]:
    if data is None:
        return None, why
    try:
        return decode_for_crops(data, max_pixels, reduce), None
    except imageio.ImageSkip as exc:
        return None, exc.reason
