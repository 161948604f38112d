"""Writing and safely reading roop-unleashed `.fsz` bundles (flat ZIPs of single-face PNGs).

Reading never extracts to disk: members are read into memory one at a time after their names, types,
sizes and places in the file are checked, and inflated in bounded chunks, so zip-slip paths, absolute
paths, symlink members, entries sharing data and zip bombs are reported, not followed.
"""
from __future__ import annotations

import copy
import stat
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from facesets.core import atomic

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


CHUNK = 1 << 16  # decompressed bytes asked of zipfile per read: never the whole member at once
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's own layout of a local file header (30 bytes)


def max_png_bytes(size: int) -> int:
    """The most bytes a legitimate `size` x `size` 8-bit RGB PNG can take, generously.

    Its worst honest encoding is the raw scanlines left uncompressed: size * (3 * size + 1) bytes plus
    a few bytes per 64 KiB stored block and per IDAT chunk (and Adam7's extra filter bytes). Twice the
    raw pixels covers all of that; 4 MiB on top leaves room for ancillary chunks (ICC profile, EXIF,
    text) that roop ignores. At 512 that is ~5.5 MiB, against the 64 MiB `verify.max_member_bytes`."""
    return 2 * size * size * 3 + (4 << 20)


def _data_ranges(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> list[tuple[int, int]]:
    """[start, end) in the file of each entry: its local header, name, extra field and compressed data."""
    fp, out = zf.fp, []
    for info in infos:
        start = info.header_offset
        try:
            fp.seek(start)
            raw = fp.read(_LOCAL_HEADER.size)
        except (OSError, ValueError):  # e.g. a negative offset: zipfile reports it when the member is read
            raw = b""
        if len(raw) == _LOCAL_HEADER.size and raw[:4] == b"PK\x03\x04":
            *_, n_name, n_extra = _LOCAL_HEADER.unpack(raw)
        else:  # zipfile reports the bad header when the member is read
            n_name, n_extra = len(info.orig_filename.encode("utf-8")), 0
        out.append((start, start + _LOCAL_HEADER.size + n_name + n_extra + info.compress_size))
    return out


def overlaps(zf: zipfile.ZipFile) -> dict[int, str]:
    """Entry index -> the name of another entry whose bytes it shares (same or overlapping local header or
    data): the shape of zip bombs that make many entries inflate one compressed stream."""
    infos = zf.infolist()
    ranges = _data_ranges(zf, infos)
    out: dict[int, str] = {}
    reach, owner = -1, -1  # the furthest end seen so far in offset order, and whose it is
    for i in sorted(range(len(infos)), key=lambda k: ranges[k]):
        start, end = ranges[i]
        if owner >= 0 and start < reach:
            out[i] = infos[owner].filename
            out.setdefault(owner, infos[i].filename)
        if end > reach:
            reach, owner = end, i
    return out


class _OverTotal(Exception):
    pass


def _read_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> tuple[bytes | None, str | None]:
    """The member's bytes, inflated CHUNK by CHUNK, or why not. Stops as soon as the output passes the
    declared size (zipfile alone inflates a lying stream in one call, up to 1 GiB, before truncating it
    to the declared size); raises _OverTotal past `budget`, what is left of the bundle's total cap."""
    probe = copy.copy(info)
    # zipfile stops (and checks the CRC) once it has handed over file_size bytes: let it run a little past the
    # declared size, so that a stream inflating further shows here (one read is at most CHUNK + 4 KiB)
    probe.file_size = info.file_size + 2 * CHUNK
    buf = bytearray()
    with zf.open(probe) as fh:
        while chunk := fh.read(CHUNK):
            buf += chunk
            if len(buf) > info.file_size:
                return None, f"inflates past its declared size ({info.file_size} bytes): possible zip bomb"
            if len(buf) > budget:
                raise _OverTotal
    if len(buf) != info.file_size:  # zipfile checked the CRC-32 at the end of the stream
        return None, f"unreadable member: {len(buf)} bytes, {info.file_size} declared"
    return bytes(buf), None


def open_bundle(path: str | Path) -> tuple[zipfile.ZipFile | None, str | None]:
    try:
        return zipfile.ZipFile(path), None
    except Exception as exc:  # hostile central directories raise more than BadZipFile (ValueError, ...)
        return None, f"not a zip file: {exc}"


def iter_members(zf: zipfile.ZipFile, max_member_bytes: int, max_ratio: float = 200.0,
                 max_total_bytes: int | None = None) -> Iterator[Member]:
    """Each entry with its bytes, or with a problem where the contract is broken; one at a time.

    Never trusts declared sizes: entries sharing bytes with another are refused unread, members are
    inflated in chunks and stopped past their declared size or `max_member_bytes`, and reading stops
    for good once the bundle has inflated `max_total_bytes` (default: `max_ratio` times its size on
    disk, which a bundle whose entries all pass the per-entry ratio check cannot exceed)."""
    if max_total_bytes is None:
        zf.fp.seek(0, 2)
        max_total_bytes = int(max_ratio * zf.fp.tell())
    shared = overlaps(zf)
    total = 0
    for i, info in enumerate(zf.infolist()):
        name = info.filename
        mode = info.external_attr >> 16
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
            yield Member(name, None, "unsafe path (absolute or escapes the folder)")
        elif info.is_dir() or name.endswith("/"):
            yield Member(name, None, "directory entry (breaks roop's loader)")
        elif "/" in name or "\\" in name:
            yield Member(name, None, "not at the top level (roop ignores it)")
        elif mode and stat.S_ISLNK(mode):
            yield Member(name, None, "symlink member")
        elif not name.endswith(".png"):
            yield Member(name, None, "not a lower-case .png (roop ignores it)")
        elif i in shared:
            yield Member(name, None, f"overlaps another entry ({shared[i]!r}) in the file: possible zip bomb")
        elif info.file_size == 0:
            yield Member(name, None, "empty file (aborts roop's whole load)")
        elif info.file_size > max_member_bytes or (
                info.compress_size and info.file_size / info.compress_size > max_ratio):
            yield Member(name, None, f"too large ({info.file_size} bytes): possible zip bomb")
        else:
            try:
                data, problem = _read_bounded(zf, info, max_total_bytes - total)
            except _OverTotal:
                yield Member(name, None, f"the bundle inflates past {max_total_bytes} bytes in total here "
                                         "(members after it not read): possible zip bomb")
                return
            except Exception as exc:  # zipfile raises BadZipFile, zlib.error, EOFError, ... on hostile data
                data, problem = None, f"unreadable member: {exc}"
            total += len(data or b"")
            yield Member(name, data, problem)


def read_members(path: str | Path, max_member_bytes: int, max_ratio: float = 200.0,
                 max_total_bytes: int | None = None) -> tuple[list[Member], str | None]:
    """Members of a bundle with a problem each where the contract is broken (or a whole-file problem)."""
    zf, problem = open_bundle(path)
    if problem:
        return [], problem
    with zf:
        return list(iter_members(zf, max_member_bytes, max_ratio, max_total_bytes)), None
