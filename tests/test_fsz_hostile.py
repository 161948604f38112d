"""Hostile `.fsz` bundles (issue #13, defect 3): verify-fsz must report them within bounded memory.

The crafted zips are written byte by byte with the stdlib (struct + zlib), streaming, so the test
itself stays small in memory; each verify-fsz run is a separate child whose peak RSS is measured.
"""
import json
import struct
import subprocess
import sys
import zipfile
import zlib

import cv2
import pytest
from conftest import FACES, PACK, needs_shared

from facesets.export.fsz import read_members, write_fsz

CHECKS = [[640, 0.5], [320, 0.5], [640, 0.3]]
PEAK_LIMIT_KIB = 400 * 1024
MiB = 1 << 20


# ---------------------------------------------------------------- hand-written zip structures
def _local_header(name: bytes, crc: int, csize: int, usize: int, method: int = 8) -> bytes:
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x5021, crc, csize, usize, len(name), 0) + name


def _central_entry(name: bytes, crc: int, csize: int, usize: int, offset: int, method: int = 8) -> bytes:
    return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x5021, crc, csize, usize,
                       len(name), 0, 0, 0, 0, 0o644 << 16, offset) + name


def _end_of_central_dir(n: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, cd_size, cd_offset, 0)


def _deflate_zeros(fh, total: int, chunk: int, flush_every: int | None = None) -> tuple[int, int]:
    """Write a raw deflate stream of `total` zero bytes to fh, a chunk at a time; (compressed size, crc)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros, crc, size, done = bytes(chunk), 0, 0, 0
    while done < total:
        part = zeros[:min(chunk, total - done)]
        out = comp.compress(part)
        if flush_every:
            out += comp.flush(zlib.Z_FULL_FLUSH)
        fh.write(out)
        size += len(out)
        crc = zlib.crc32(part, crc)
        done += len(part)
    out = comp.flush()
    fh.write(out)
    return size + len(out), crc


def shared_member_bundle(path, n_entries: int = 40, member_bytes: int = 60 * MiB, same_name: bool = False):
    """One deflated member of zeros, and n_entries central-directory entries all pointing at its local header.

    Full flushes every 4 KiB keep the stream at ~1:160, under read_members' 1:200 declared-ratio check, so
    every entry on its own looks like a legitimate member (as in the issue's report)."""
    first = b"00.png"
    with open(path, "wb") as fh:
        fh.write(_local_header(first, 0, 0, 0))  # sizes patched below
        csize, crc = _deflate_zeros(fh, member_bytes, 4096, flush_every=4096)
        fh.seek(0)
        fh.write(_local_header(first, crc, csize, member_bytes))
        fh.seek(0, 2)
        cd_offset = fh.tell()
        names = [first if same_name else f"{i:02d}.png".encode() for i in range(n_entries)]
        cd = b"".join(_central_entry(n, crc, csize, member_bytes, 0) for n in names)
        fh.write(cd)
        fh.write(_end_of_central_dir(n_entries, len(cd), cd_offset))
    return csize


def lying_size_bundle(path, declared: int = 1000, actual: int = 1 << 30):
    """One deflated member that declares `declared` bytes (CRC of that many zeros) but inflates to `actual`."""
    name = b"a.png"
    crc = zlib.crc32(bytes(declared))  # what zipfile checks after truncating to the declared size
    with open(path, "wb") as fh:
        fh.write(_local_header(name, 0, 0, 0))
        csize, _ = _deflate_zeros(fh, actual, MiB)
        fh.seek(0)
        fh.write(_local_header(name, crc, csize, declared))
        fh.seek(0, 2)
        cd_offset = fh.tell()
        cd = _central_entry(name, crc, csize, declared, 0)
        fh.write(cd)
        fh.write(_end_of_central_dir(1, len(cd), cd_offset))
    return csize


# ---------------------------------------------------------------- running verify-fsz in a measured child
WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(json.dumps({'rc': p.returncode, 'stdout': p.stdout, 'stderr': p.stderr,\n"
    "                  'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def run_verify_measured(bundle) -> dict:
    """verify-fsz in a grandchild; the wrapper child reports only that grandchild's peak RSS (KiB on Linux),
    so children spawned earlier by this pytest process do not count."""
    cmd = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "facesets", "verify-fsz", str(bundle),
           "--model-pack", str(PACK), "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\n{bundle.name}: rc={res['rc']} peak RSS {res['maxrss_kib'] / 1024:.0f} MiB\n{res['stdout']}")
    return res


@needs_shared
@pytest.mark.parametrize("same_name", [False, True], ids=["distinct-names", "same-name"])
def test_forty_entries_sharing_one_member_are_refused_in_bounded_memory(tmp_path, same_name):
    bundle = tmp_path / "shared.fsz"
    csize = shared_member_bundle(bundle, same_name=same_name)
    assert bundle.stat().st_size < MiB and 60 * MiB / csize < 200  # each entry passes the per-entry checks
    res = run_verify_measured(bundle)
    assert res["rc"] == 1, res
    assert "Traceback" not in res["stderr"] + res["stdout"]
    assert res["stdout"].count("overlaps") == 40, res["stdout"]
    assert res["maxrss_kib"] < PEAK_LIMIT_KIB, res["maxrss_kib"]


@needs_shared
def test_member_inflating_past_its_declared_size_is_refused_in_bounded_memory(tmp_path):
    bundle = tmp_path / "liar.fsz"
    lying_size_bundle(bundle)
    assert bundle.stat().st_size < 2 * MiB
    res = run_verify_measured(bundle)
    assert res["rc"] == 1, res
    assert "Traceback" not in res["stderr"] + res["stdout"]
    assert "inflates past its declared size" in res["stdout"], res["stdout"]
    assert res["maxrss_kib"] < PEAK_LIMIT_KIB, res["maxrss_kib"]


# ---------------------------------------------------------------- units
def test_overlapping_entries_are_refused_without_reading(tmp_path):
    """Two entries whose data ranges overlap (not the same offset): both refused, neither read."""
    path = tmp_path / "overlap.fsz"
    payload = b"\x89PNG\r\n\x1a\n" + bytes(200)
    crc = zlib.crc32(payload)
    a = _local_header(b"a.png", crc, len(payload), len(payload), method=0) + payload
    with open(path, "wb") as fh:
        fh.write(a)
        cd_offset = fh.tell()
        # b.png starts inside a.png's data (at byte 40 of it) and claims the rest of it
        cd = (_central_entry(b"a.png", crc, len(payload), len(payload), 0, method=0)
              + _central_entry(b"b.png", 0, 100, 100, 30 + 5 + 40, method=0))
        fh.write(cd)
        fh.write(_end_of_central_dir(2, len(cd), cd_offset))
    members, problem = read_members(path, max_member_bytes=64 * MiB)
    assert problem is None
    by = {m.name: m for m in members}
    assert "overlaps" in by["a.png"].problem and "overlaps" in by["b.png"].problem
    assert by["a.png"].data is None and by["b.png"].data is None


def test_small_shared_member_and_lying_size_are_refused_by_read_members(tmp_path):
    """The same two attacks at a size that is cheap to build: reported per member, never raised."""
    shared = tmp_path / "shared.fsz"
    shared_member_bundle(shared, n_entries=3, member_bytes=MiB)
    members, problem = read_members(shared, max_member_bytes=64 * MiB)
    assert problem is None and len(members) == 3
    assert all("overlaps" in m.problem and m.data is None for m in members)
    liar = tmp_path / "liar.fsz"
    lying_size_bundle(liar, declared=1000, actual=16 * MiB)
    (m,), problem = read_members(liar, max_member_bytes=64 * MiB)
    assert problem is None and m.data is None and "inflates past its declared size (1000 bytes)" in m.problem


def test_member_over_the_out_size_cap_is_refused(tmp_path):
    """verify caps a member at what an out_size x out_size 8-bit RGB PNG can need (far below max_member_bytes)."""
    from facesets.export.fsz import max_png_bytes
    from facesets.export.verify import verify

    path = tmp_path / "big.fsz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("big.png", b"\x89PNG\r\n\x1a\n" + bytes(max_png_bytes(512)))
    rows = verify([path], None, CHECKS, size=512, max_member_bytes=64 * MiB)  # refused before any detection
    assert len(rows) == 1 and "too large" in rows[0]["problem"] and "zip bomb" in rows[0]["problem"]
    (m,), _ = read_members(path, max_member_bytes=64 * MiB)  # read_members alone only applies the given cap
    assert m.problem is None


def test_total_cap_stops_a_bundle(tmp_path):
    path = tmp_path / "many.fsz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(4):
            zf.writestr(f"{i}.png", b"\x89PNG\r\n\x1a\n" + bytes(MiB))
    members, problem = read_members(path, max_member_bytes=64 * MiB, max_total_bytes=2 * MiB + 100)
    assert problem is None
    assert [m.data is not None for m in members] == [True, True, False]
    assert "total" in members[-1].problem


def test_corrupt_member_is_a_violation_not_a_crash(tmp_path):
    path = tmp_path / "corrupt.fsz"
    garbage = b"\xff" * 64  # not a valid deflate stream: zlib.error inside zipfile
    with open(path, "wb") as fh:
        fh.write(_local_header(b"a.png", 0, len(garbage), 1000) + garbage)
        cd_offset = fh.tell()
        cd = _central_entry(b"a.png", 0, len(garbage), 1000, 0)
        fh.write(cd)
        fh.write(_end_of_central_dir(1, len(cd), cd_offset))
    (m,), problem = read_members(path, max_member_bytes=64 * MiB)
    assert problem is None and m.data is None and "unreadable member" in m.problem


def _face_crops(engine, tmp_path, rels):
    """Real 512x512 single-face crops, framed the way export frames them."""
    from facesets.export.crops import make_crop

    out = []
    for i, rel in enumerate(rels):
        bgr = cv2.imread(str(FACES / rel), cv2.IMREAD_COLOR)
        det = engine.detect(bgr)
        areas = (det.bboxes[:, 2] - det.bboxes[:, 0]) * (det.bboxes[:, 3] - det.bboxes[:, 1])
        big = int(areas.argmax())
        others = [det.bboxes[j] for j in range(len(det)) if j != big]
        crop, problem, _ = make_crop(engine, bgr, det.bboxes[big], others, 0.5, 512, CHECKS)
        assert problem is None, (rel, problem)
        png = tmp_path / f"{i}.png"
        cv2.imwrite(str(png), crop)
        out.append((f"{i}.png", png))
    return out


@needs_shared
def test_valid_bundle_still_passes(tmp_path, engine):
    from facesets.export.verify import verify

    bundle = tmp_path / "ok.fsz"
    write_fsz(bundle, _face_crops(engine, tmp_path, ["deepface/p01/img1.jpg", "deepface/p01/img5.jpg"]))
    members, problem = read_members(bundle, max_member_bytes=64 * MiB)
    assert problem is None and [m.problem for m in members] == [None, None]
    assert verify([bundle], engine, CHECKS) == []
    deflated = tmp_path / "ok_deflate.fsz"  # the contract allows deflate too
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert verify([deflated], engine, CHECKS) == []


def test_a_damaged_corpus_bundle_is_rewritten_not_a_crash(tmp_path):
    """apply compares a corpus bundle's member CRCs to decide whether to re-zip it: a bundle damaged or edited
    by hand (bad central directory, truncated, not a zip) reads as "nothing to compare", so it is written anew."""
    from facesets.curation.crc_ledger import bundle_digest

    good = tmp_path / "good.fsz"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("a.png", b"x" * 100)
    data = good.read_bytes()
    assert bundle_digest(good) == [("a.png", zlib.crc32(b"x" * 100))]
    eocd = data.rindex(b"PK\x05\x06")
    assert len(data) == 208  # the offsets below are for this layout
    damaged = {
        "truncated": data[: len(data) // 2],
        "not_a_zip": b"hello, not a zip at all",
        "cd_size_huge": data[:eocd + 12] + struct.pack("<I", 2 ** 31) + data[eocd + 16:],
        "cd_flags_unsupported": data[:141] + b"\xff" + data[142:],  # zipfile raises NotImplementedError here
    }
    for name, blob in damaged.items():
        bad = tmp_path / f"{name}.fsz"
        bad.write_bytes(blob)
        assert bundle_digest(bad) is None, name
