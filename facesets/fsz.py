"""Writing and safely reading roop-unleashed `.fsz` bundles (flat ZIPs of single-face PNGs).

Reading never extracts to disk: members are read into memory after their names, types and sizes
are checked, so zip-slip paths, absolute paths, symlink members and zip bombs are reported, not followed.
"""
from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import atomic

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def write_fsz(path: str | Path, members: list[tuple[str, Path]]) -> None:
    """members: (name inside the zip, PNG file). Stored (PNG is already compressed), atomic."""
    with atomic.atomic_open(path, "wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, src in members:
                if "/" in name or not name.endswith(".png") or name != name.lower():
                    raise ValueError(f"bad member name {name!r}")
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # fixed: same content, same bytes
                info.external_attr = 0o644 << 16
                zf.writestr(info, Path(src).read_bytes())


@dataclass
class Member:
    name: str
    data: bytes | None
    problem: str | None


def read_members(path: str | Path, max_member_bytes: int, max_ratio: float = 200.0) -> tuple[list[Member], str | None]:
    """Members of a bundle with a problem each where the contract is broken (or a whole-file problem)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return [], f"not a zip file: {exc}"
    out = []
    with zf:
        for info in zf.infolist():
            name = info.filename
            mode = info.external_attr >> 16
            if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
                out.append(Member(name, None, "unsafe path (absolute or escapes the folder)"))
            elif info.is_dir() or name.endswith("/"):
                out.append(Member(name, None, "directory entry (breaks roop's loader)"))
            elif "/" in name or "\\" in name:
                out.append(Member(name, None, "not at the top level (roop ignores it)"))
            elif mode and stat.S_ISLNK(mode):
                out.append(Member(name, None, "symlink member"))
            elif not name.endswith(".png"):
                out.append(Member(name, None, "not a lower-case .png (roop ignores it)"))
            elif info.file_size == 0:
                out.append(Member(name, None, "empty file (aborts roop's whole load)"))
            elif info.file_size > max_member_bytes or (
                    info.compress_size and info.file_size / info.compress_size > max_ratio):
                out.append(Member(name, None, f"too large ({info.file_size} bytes): possible zip bomb"))
            else:
                try:
                    out.append(Member(name, zf.read(info), None))
                except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
                    out.append(Member(name, None, f"unreadable member: {exc}"))
    return out, None
