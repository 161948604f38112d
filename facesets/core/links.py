"""Materialising identity folders: stable flattened names, hard links with symlink/copy fallback."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path

MAX_NAME_BYTES = 200


def safe_dst_name(abs_path: str | Path) -> str:
    """The absolute source path flattened into one file name: stable across runs and roots.

    `/mnt/x/src/a b/IMG_1.jpg` -> `mnt__x__src__a b__IMG_1.jpg`. Over-long names keep their tail and
    gain a hash of the whole path so they stay unique.
    """
    parts = [p for p in Path(os.path.abspath(abs_path)).parts if p not in ("/", "\\")]
    name = "__".join(p.replace(":", "") for p in parts)
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
        tail = name[-(MAX_NAME_BYTES // 2):]
        name = f"{digest}__{tail}"
    return name


def place(src: Path, dst: Path, mode: str = "hardlink") -> str:
    """Make `dst` show `src`; returns the method used. Falls back hardlink -> symlink -> copy."""
    if dst.exists() or dst.is_symlink():
        return "exists"
    dst.parent.mkdir(parents=True, exist_ok=True)
    order = {"hardlink": ["hardlink", "symlink", "copy"], "symlink": ["symlink", "copy"], "copy": ["copy"]}[mode]
    for how in order:
        try:
            if how == "hardlink":
                os.link(src, dst)
            elif how == "symlink":
                os.symlink(os.path.abspath(src), dst)
            else:
                tmp = dst.with_name(f".{dst.name}.tmp")
                shutil.copy2(src, tmp)
                os.replace(tmp, dst)
            return how
        except OSError:
            continue
    raise OSError(f"cannot place {src} at {dst}")


def _drop_other_kind(dst: Path, src: Path, mode: str) -> None:
    """A hard link placed under an earlier `hardlink` setting keeps raising the source's link count: when
    links are no longer asked for, it is replaced (the source itself is not touched)."""
    if mode != "hardlink" and not dst.is_symlink() and dst.is_file():
        with contextlib.suppress(OSError):
            if os.path.samefile(dst, src):
                dst.unlink()


def sync_folder(folder: Path, wanted: dict[str, Path], mode: str) -> dict[str, int]:
    """Make `folder` hold exactly the `wanted` names (name -> source file). Only entries this tool placed
    (links or copies of sources) are removed; the sources themselves are never touched."""
    counts = {"placed": 0, "kept": 0, "removed": 0, "missing": 0}
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.name not in wanted and (entry.is_file() or entry.is_symlink()) and not entry.name.startswith("."):
            entry.unlink()
            counts["removed"] += 1
    for name, src in wanted.items():
        if not src.exists():
            counts["missing"] += 1
            continue
        _drop_other_kind(folder / name, src, mode)
        counts["kept" if place(src, folder / name, mode) == "exists" else "placed"] += 1
    return counts
