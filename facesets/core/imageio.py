"""Photo decoding for face work: EXIF orientation, reduced-scale JPEG decode, odd modes, clear skips.

Every failure becomes `ImageSkip(reason)` so the caller can record it and go on with the run.
HEIC/HEIF is read through pillow-heif's Pillow opener (registered on import), AVIF by Pillow's own
plugin (in Pillow's wheels from 11.3); both decode at full size and then take the normal path.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

try:  # HEIC/HEIF (iPhone, recent Android): libheif applies the irot/imir turn and resets EXIF orientation to 1
    import pillow_heif
except ImportError:  # pragma: no cover - a dependency; without it HEIC files are skipped with the reason
    pillow_heif = None
else:
    pillow_heif.register_heif_opener()

# Pillow's own bomb check is replaced by our explicit pixel limit (config embed.max_image_pixels).
Image.MAX_IMAGE_PIXELS = None

EXIF_DATETIME_ORIGINAL = 0x9003
EXIF_DATETIME_DIGITIZED = 0x9004
EXIF_DATETIME = 0x0132
EXIF_IFD = 0x8769
ORIENTATION = 0x0112


class ImageSkip(Exception):
    """The file cannot be used; `reason` is recorded in the cache."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Decoded:
    bgr: np.ndarray          # HxWx3 uint8, orientation applied, possibly reduced scale
    width: int               # full-size width after orientation
    height: int              # full-size height after orientation
    scale: float             # full-size pixels per decoded pixel (1.0 = full size)
    exif_datetime: str | None


def exif_datetime(img: Image.Image) -> str | None:
    """EXIF DateTimeOriginal, else DateTimeDigitized, else DateTime (as written, e.g. '2019:05:04 12:00:00')."""
    try:
        exif = img.getexif()
    except Exception:
        return None
    if not exif:
        return None
    try:
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:
        sub = {}
    for tag, src in ((EXIF_DATETIME_ORIGINAL, sub), (EXIF_DATETIME_DIGITIZED, sub), (EXIF_DATETIME, exif)):
        val = src.get(tag)
        if isinstance(val, bytes):
            val = val.decode("ascii", "ignore")
        if isinstance(val, str):
            val = val.strip().strip("\x00")
            if val and not val.startswith("0000"):
                return val
    return None


def orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(ORIENTATION, 1) or 1)
    except Exception:
        return 1


# EXIF orientation -> the cv2 operation that turns the stored pixels upright: the same pixels as
# ImageOps.exif_transpose, done on the final BGR array (~1.5x faster than transposing Pillow's image)
UPRIGHT = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.transpose(a),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode to 8-bit RGB: 16-bit scaled down, alpha dropped (as roop does), CMYK converted."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        if arr.dtype != np.uint8:
            top = 65535 if mode.startswith("I;16") or arr.max() > 255 else 255
            arr = np.clip(arr.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


# ISO-BMFF major brands (bytes 8..12 after 'ftyp') of the formats read through an optional decoder
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def _has_avif() -> bool:
    from PIL import features

    return bool(features.check("avif"))


def _no_decoder(data: bytes) -> str | None:
    """Why a file that Pillow could not open is still not "not an image": a HEIF/AVIF without its decoder."""
    if data[4:8] != b"ftyp":
        return None
    brand = data[8:12]
    if brand in _AVIF_BRANDS:
        if _has_avif():
            return "AVIF image that Pillow's AVIF decoder cannot open"
        return "AVIF image, but this Pillow has no AVIF decoder (Pillow >= 11.3 wheels have one)"
    if brand in _HEIF_BRANDS:
        if pillow_heif is not None:
            return "HEIC/HEIF image that libheif cannot open"
        return "HEIC/HEIF image, but pillow-heif is not installed (pip install pillow-heif)"
    return None


def readable_extensions() -> set[str]:
    """Lower-case extensions of the photo formats this install decodes (used to word the not-scanned hint)."""
    Image.init()
    photo = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".heic", ".heif",
             ".hif", ".avif", ".jp2", ".j2k", ".jpx", ".jpf", ".tga", ".ppm", ".pgm", ".pnm", ".qoi"}
    return {ext for ext, fmt in Image.registered_extensions().items() if ext in photo and fmt in Image.OPEN}


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Parse the header only; reject what is not an image or too large to decode safely."""
    if not data:
        raise ImageSkip("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageSkip(_no_decoder(data) or "not an image (unrecognised format)") from None
    except Exception as exc:  # Pillow raises many types for garbage headers
        raise ImageSkip(f"unreadable header: {exc}") from None
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageSkip(f"invalid size {w}x{h}")
    if w * h > max_pixels:
        raise ImageSkip(f"too many pixels ({w}x{h} > {max_pixels}): possible decompression bomb")
    return img


def decode(data: bytes, *, max_pixels: int, long_side: int = 0) -> Decoded:
    """Decode image bytes to BGR uint8 with EXIF orientation applied.

    With `long_side` > 0, JPEGs are decoded by libjpeg's DCT scaling (1/2, 1/4, 1/8) to the smallest
    size whose long side is still >= `long_side`: several times faster for large photos, and the
    detector downsizes to det_size anyway. `scale` maps decoded pixels back to full size. Other
    formats (PNG, WebP, HEIC, AVIF, ...) are decoded at full size (scale 1.0).

    Orientation: the EXIF tag is applied to the decoded pixels. A HEIC comes out of libheif already
    turned by its irot/imir boxes, with the tag reset to 1 by pillow-heif, so it is not turned twice; an
    AVIF comes out of Pillow as stored, with the irot/imir turn reported as the EXIF tag.
    """
    img = open_image(data, max_pixels)
    full_w, full_h = img.size
    orient = orientation(img)
    exif_dt = exif_datetime(img)
    if long_side and img.format == "JPEG" and max(full_w, full_h) >= 2 * long_side:
        ratio = max(full_w, full_h) / long_side
        img.draft("RGB", (int(full_w / ratio) + 1, int(full_h / ratio) + 1))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            rgb = to_rgb8(img)
    except ImageSkip:
        raise
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise ImageSkip("truncated image data") from None
        raise ImageSkip(f"decode failed: {msg}") from None
    except Exception as exc:
        raise ImageSkip(f"decode failed: {type(exc).__name__}: {exc}") from None
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # far faster than a reversed-axis copy
    if orient in UPRIGHT:
        bgr = UPRIGHT[orient](bgr)
    if orient in (5, 6, 7, 8):
        full_w, full_h = full_h, full_w
    dec_h, dec_w = bgr.shape[:2]
    scale = full_w / dec_w if dec_w else 1.0
    return Decoded(bgr=bgr, width=full_w, height=full_h, scale=scale, exif_datetime=exif_dt)
