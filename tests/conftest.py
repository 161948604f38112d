"""Shared fixtures. Tests that need the real photos / model pack skip only where ../shared is absent."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESETS_SHARED", REPO.parent / "shared"))
FACES = SHARED / "data" / "faces"
PACK = SHARED / "models" / "facepack-sc128"

needs_shared = pytest.mark.skipif(
    not (FACES / "labels.csv").is_file() or not PACK.is_dir(),
    reason=f"real photos and model pack not found under {SHARED} (set FACESETS_SHARED)",
)


def labels() -> list[dict]:
    with open(FACES / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_config(**overrides) -> dict:
    from facesets.core import config

    cfg = config.defaults()
    cfg["model"]["pack"] = str(PACK)
    for section, values in overrides.items():
        cfg[section].update(values)
    return config.validate(cfg)


test_config.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def engine():
    from facesets.core.engine import FaceEngine

    return FaceEngine(str(PACK))


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory, engine):
    """The whole labeled photo set embedded once for every test that reads it."""
    from facesets.embed.embedder import embed_source

    store = tmp_path_factory.mktemp("shared_store") / "cache"
    stats = embed_source(FACES, store, "faces", test_config(), lambda: engine, progress=False)
    return store, stats


def copy_photos(dst: Path, rels: list[str]) -> list[Path]:
    out = []
    for rel in rels:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(FACES / rel, target)
        out.append(target)
    return out


def identity_photos(n: int | None = None) -> list[str]:
    rows = [r["path"] for r in labels() if r["identity"]]
    return rows[:n] if n else rows
