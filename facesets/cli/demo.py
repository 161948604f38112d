"""The offline demo: the few photos the insightface package ships, and a config overlay for them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from facesets.core import atomic


def shipped_images() -> list[Path]:
    import insightface

    folder = Path(insightface.__file__).parent / "data" / "images"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def _variants(group_photo: Path, out: Path) -> None:
    """A few re-takes of the shipped group photo (flip, zoom, tilt, light), so the six people in it
    each appear in several photos and form identities. They are near-duplicate shots by design: the
    export collapses them, which the demo shows too."""
    from PIL import Image, ImageEnhance, ImageOps

    out.mkdir(parents=True, exist_ok=True)
    img = Image.open(group_photo).convert("RGB")
    w, h = img.size
    takes = {
        "flip": ImageOps.mirror(img),
        "zoom": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w, h)),
        "tilt_left": img.rotate(6, resample=Image.Resampling.BICUBIC, expand=True),
        "tilt_right": img.rotate(-6, resample=Image.Resampling.BICUBIC, expand=True),
        "dark": ImageEnhance.Brightness(img).enhance(0.7),
        "warm": ImageEnhance.Color(img).enhance(1.6),
    }
    for name, take in takes.items():
        dst = out / f"{group_photo.stem}_{name}.jpg"
        if not dst.exists():
            take.save(dst, quality=92)


def setup_demo(folder: Path, pack: str | None = None) -> Path:
    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for img in shipped_images():
        dst = photos / img.name
        if not dst.exists():
            shutil.copy2(img, dst)
        if img.name == "t1.jpg":
            _variants(img, photos / "retakes")
    pack = pack or os.environ.get("FACESETS_PACK") or "buffalo_l"
    overlay = {
        "results": str(folder / "results"),
        "sources": [{"name": "demo", "path": str(photos.resolve())}],
        "model": {"pack": pack},
        "embed": {"shards": 2},
        "refine": {"min_faces": 4},  # the demo has seven photos per person at most
    }
    cfg = folder / "config.yaml"
    atomic.write_text(cfg, yaml.safe_dump(overlay, sort_keys=False))
    return cfg
