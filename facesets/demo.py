"""The offline demo: the few photos the insightface package ships, and a config overlay for them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from . import atomic


def shipped_images() -> list[Path]:
    import insightface

    folder = Path(insightface.__file__).parent / "data" / "images"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))


def setup_demo(folder: Path, pack: str | None = None) -> Path:
    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for img in shipped_images():
        dst = photos / img.name
        if not dst.exists():
            shutil.copy2(img, dst)
    pack = pack or os.environ.get("FACESETS_PACK") or "buffalo_l"
    overlay = {
        "results": str(folder / "results"),
        "sources": [{"name": "demo", "path": str(photos.resolve())}],
        "model": {"pack": pack},
        "embed": {"shards": 2},
    }
    cfg = folder / "config.yaml"
    atomic.write_text(cfg, yaml.safe_dump(overlay, sort_keys=False))
    return cfg
