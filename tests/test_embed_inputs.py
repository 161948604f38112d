"""Bad, odd and hostile inputs: each is embedded correctly or skipped with a recorded reason."""
import io
import os
import struct
import sys
import zlib

import numpy as np
import pytest
from conftest import FACES, needs_shared, test_config
from PIL import Image

from facesets.embed.cache import FaceCache

pytestmark = needs_shared
PHOTO = FACES / "deepface/p01/img1.jpg"  # one face


def _png_with_size(w: int, h: int) -> bytes:
    """A tiny valid PNG whose header claims w x h (a decompression-bomb header)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[16:29]
    ihdr[0:8] = struct.pack(">II", w, h)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory):
    src = tmp_path_factory.mktemp("bad") / "src"
    src.mkdir()
    good = PHOTO.read_bytes()
    img = Image.open(PHOTO)
    (src / "zero.jpg").write_bytes(b"")
    (src / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (src / "text.jpg").write_text("this is not an image\n")
    (src / "bomb.png").write_bytes(_png_with_size(30000, 30000))
    img.convert("CMYK").save(src / "cmyk.jpg", quality=92)
    img.convert("L").save(src / "gray.jpg", quality=92)
    rgba = img.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(src / "alpha.png")
    arr16 = (np.asarray(img.convert("L")).astype(np.uint16) * 257)
    Image.fromarray(arr16).save(src / "sixteen.png")  # mode I;16
    (src / "Ünïcødé name ☃.JPG").write_bytes(good)
    (src / "dir.jpg").mkdir()
    (src / "dir.jpg" / "inside.jpeg").write_bytes(PHOTO.read_bytes() + b"\0")  # other bytes, same picture
    os.symlink(src / "missing.jpg", src / "dangling.jpg")
    os.symlink(src / "loop_b.jpg", src / "loop_a.jpg")
    os.symlink(src / "loop_a.jpg", src / "loop_b.jpg")
    (src / "notes.txt").write_text("ignored: not an image extension")
    wide = Image.new("RGB", (12000, 900), (90, 120, 150))
    wide.paste(img.convert("RGB").resize((600, 810)), (5000, 45))
    wide.save(src / "panorama.jpg", quality=90)  # a huge panorama with one face in it
    img.convert("RGB").resize((8, 8)).save(src / "tiny.png")
    (src / "locked.jpg").write_bytes(good + b"\1")  # made unreadable below (root ignores chmod)
    return src


@pytest.fixture(scope="module")
def bad_cache(bad_tree, engine, tmp_path_factory):
    import builtins

    from facesets.embed.embedder import embed_source

    store = tmp_path_factory.mktemp("badstore") / "cache"
    cfg = test_config(embed={"max_image_pixels": 100_000_000})
    real_open = builtins.open

    def no_permission(file, *a, **kw):  # what a file without read permission does for a normal user
        if str(file).endswith("locked.jpg"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *a, **kw)

    builtins.open = no_permission
    try:
        stats = embed_source(bad_tree, store, "bad", cfg, lambda: engine, progress=False)
    finally:
        builtins.open = real_open
    return FaceCache.load(store), stats


def test_every_file_is_recorded(bad_cache):
    cache, stats = bad_cache
    by = {e["path"]: e for e in cache.files}
    expect_skip = {
        "zero.jpg": "empty",
        "truncated.jpg": "truncated",
        "text.jpg": "not an image",
        "bomb.png": "decompression bomb",
        "dangling.jpg": "symlink",
        "loop_a.jpg": "symlink",
        "loop_b.jpg": "symlink",
        "locked.jpg": "permission denied",
    }
    for name, word in expect_skip.items():
        assert by[name]["status"] == "skipped", name
        assert word in by[name]["reason"], (name, by[name]["reason"])
    for name in ("cmyk.jpg", "gray.jpg", "alpha.png", "sixteen.png", "Ünïcødé name ☃.JPG", "dir.jpg/inside.jpeg"):
        assert by[name]["status"] in ("face", "alias"), (name, by[name])
        assert by[name].get("n_faces", 1) == 1 or by[name]["status"] == "alias"
    assert "notes.txt" not in by
    assert by["panorama.jpg"]["status"] == "face" and by["panorama.jpg"]["n_faces"] == 1
    assert by["panorama.jpg"]["width"] == 12000
    assert by["tiny.png"]["status"] == "noface"
    assert stats["skipped"] == len(expect_skip)


def test_odd_modes_embed_like_the_original(bad_cache, engine):

    cache, _ = bad_cache
    emb = dict(zip(cache.face_path.tolist(), cache.embeddings))
    ref = emb["bad/Ünïcødé name ☃.JPG"]
    for name in ("cmyk.jpg", "alpha.png", "gray.jpg", "sixteen.png"):
        assert float(emb[f"bad/{name}"] @ ref) > 0.9, name


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, engine, orientation):
    """The stored pixels are transposed so that applying the EXIF tag gives the upright photo back."""
    from facesets.embed.embedder import embed_source

    upright = Image.open(PHOTO).convert("RGB")
    inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = upright.transpose(inverse) if inverse else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    src = tmp_path / "src"
    src.mkdir()
    stored.save(src / f"o{orientation}.jpg", quality=95, exif=exif.tobytes())
    store = tmp_path / "c"
    embed_source(src, store, "o", test_config(), lambda: engine, progress=False)
    cache = FaceCache.load(store)
    assert len(cache) == 1
    e = cache.files[0]
    assert (e["width"], e["height"]) == upright.size
    x1, y1, x2, y2 = cache.faces["bbox"][0]
    # the face in this portrait is in the upper half, centred: only true if orientation was applied
    assert y1 < upright.size[1] / 2 and abs((x1 + x2) / 2 - upright.size[0] / 2) < upright.size[0] / 4


def test_source_tree_is_never_written(tmp_path, engine):
    """An audit hook sees every open(); nothing under the source may be opened for writing."""
    from conftest import copy_photos

    from facesets.embed.embedder import embed_source

    src = tmp_path / "src"
    copy_photos(src, ["deepface/p01/img1.jpg", "deepface/p04/img54.jpg", "insightface/_rotated/" +
                      sorted(p.name for p in (FACES / "insightface/_rotated").iterdir())[0]])
    (src / "bad.jpg").write_bytes(b"junk")
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.rglob("*") if p.is_file()}
    writes = []
    root = str(src)

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            mode, flags = args[1], args[2]
            writing = (mode and any(c in str(mode) for c in "wax+")) or (flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if path.startswith(root) and writing:
                writes.append(path)

    sys.addaudithook(hook)
    os.chmod(src, 0o555)
    try:
        embed_source(src, tmp_path / "cache", "ro", test_config(), lambda: engine, progress=False)
    finally:
        os.chmod(src, 0o755)
        root = "\0"  # disarm: audit hooks cannot be removed
    assert writes == []
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in src.rglob("*") if p.is_file()}
    assert after == before


def test_shard_listing_stats_only_its_own_files(tmp_path, monkeypatch):
    """A shard's listing equals the filtered full listing, and stats only that shard's files."""
    from facesets.embed import scan

    for d in ("a", "a/b", "c"):
        (tmp_path / d).mkdir(exist_ok=True)
    names = [f"{d}/img_{i}.JPG" for d in ("a", "a/b", "c") for i in range(20)] + ["top.png", "skip.txt"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    os.symlink(tmp_path / "missing.jpg", tmp_path / "c" / "dangling.jpg")
    full = scan.list_source(tmp_path, [".jpg", ".png"])
    assert "skip.txt" not in {e.relpath for e in full} and len(full) == 62
    assert all(e.st is not None for e in full if e.problem is None)

    stat_calls = []
    real_stat = os.stat
    monkeypatch.setattr(scan.os, "stat", lambda p, *a, **k: stat_calls.append(p) or real_stat(p, *a, **k))
    shards = 4
    union = []
    for k in range(shards):
        stat_calls.clear()
        part = scan.list_source(tmp_path, [".jpg", ".png"], (k, shards))
        assert part == [e for e in full if scan.shard_of(e.relpath, shards) == k]
        file_stats = [p for p in stat_calls if os.fspath(p) != os.fspath(tmp_path)]
        assert len(file_stats) == len(part)  # the other shards' files are never stat'ed
        union += part
    assert sorted(union, key=lambda e: e.relpath) == full


def test_shard_listings_change_only_where_the_tree_changed(tmp_path):
    from facesets.embed import scan

    src, out = tmp_path / "src", tmp_path / "listing"
    src.mkdir()
    for i in range(30):
        (src / f"p{i}.jpg").write_bytes(b"x" * i)
    digests = scan.write_shard_listings(src, [".jpg"], 4, out)
    paths = [out / f"shard_{k:03d}.tsv" for k in range(4)]
    assert digests == scan.shard_listing_digests(out, 4) and all(digests)
    assert sum(len(p.read_text().splitlines()) for p in paths) == 30
    before = {p: p.stat().st_mtime_ns for p in paths}
    texts = {p: p.read_text() for p in paths}

    assert scan.write_shard_listings(src, [".jpg"], 4, out) == digests  # nothing changed: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in paths} == before

    changed = src / "p7.jpg"
    changed.write_bytes(b"changed content")
    os.symlink(src / "nowhere.jpg", src / "broken.jpg")
    odd = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name on a UTF-8 system
    (src / odd).write_bytes(b"y")
    new = scan.write_shard_listings(src, [".jpg"], 4, out)
    touched = {paths[scan.shard_of(n, 4)] for n in ("p7.jpg", "broken.jpg", odd)}
    for k, p in enumerate(paths):
        assert (new[k] != digests[k]) == (p in touched), p.name
        if p in touched:
            assert p.read_text(errors="surrogateescape") != texts[p], p.name
        else:  # not even rewritten with the same bytes
            assert p.stat().st_mtime_ns == before[p] and p.read_text() == texts[p], p.name
    text = paths[scan.shard_of("broken.jpg", 4)].read_text(errors="surrogateescape")
    assert "broken.jpg\t!broken or looping symlink" in text
    assert os.fsencode(odd) in paths[scan.shard_of(odd, 4)].read_bytes()


class _ScoreByScale:
    """A stand-in engine whose detection score depends on the decode scale, like a face at the threshold."""

    det_thresh = 0.5

    def __init__(self, reduced_score: float, full_score: float, full_width: int):
        self.scores = {"reduced": reduced_score, "full": full_score}
        self.full_width = full_width
        self.seen: list[str] = []

    def detect(self, bgr, det_size=None, det_thresh=None):
        from facesets.core.engine import Detections

        kind = "full" if bgr.shape[1] == self.full_width else "reduced"
        self.seen.append(kind)
        score = self.scores[kind]
        w = bgr.shape[1]
        if score < (self.det_thresh if det_thresh is None else det_thresh):
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        box = np.array([[w * 0.3, w * 0.2, w * 0.6, w * 0.55]], np.float32)
        kps = np.tile(box[:, None, :2], (1, 5, 1)) + np.float32(w * 0.1)
        return Detections(box, np.array([score], np.float32), kps)

    def embed(self, bgr, kps):
        return np.ones((len(kps), 8), np.float32)


@pytest.mark.parametrize("reduced,full,expect_full,expect_faces", [
    (0.51, 0.49, True, 0),   # borderline on the reduced decode: the full-size photo decides (no face)
    (0.49, 0.51, True, 1),   # borderline the other way: the face the reduced decode missed is kept
    (0.80, 0.80, False, 1),  # clear-cut: the reduced decode alone
    (0.20, 0.20, False, 0),
])
def test_borderline_detections_are_decided_at_full_size(tmp_path, reduced, full, expect_full, expect_faces):
    from facesets.embed.embedder import Embedder, _read

    rng = np.random.default_rng(0)
    big = (rng.random((1500, 2000, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "JPEG", quality=80)
    (tmp_path / "big.jpg").write_bytes(buf.getvalue())
    cfg = test_config()["embed"]
    assert cfg["decode_long_side"] * 2 <= 2000 and cfg["det_recheck_margin"] >= 0.01
    r = _read(tmp_path, "big.jpg", set(), cfg)
    assert r.decoded.scale > 1  # the cheap path was taken first
    fake = _ScoreByScale(reduced, full, full_width=2000)
    info, rows = Embedder(fake, cfg, "sig").faces_of(r)
    assert ("full" in fake.seen) == expect_full
    assert info["n_faces"] == expect_faces == len(rows["sha256"])
    if expect_faces:  # the boxes are in full-size pixels whichever decode found them
        assert 550 < rows["bbox"][0][0] < 650


def test_a_photo_the_models_cannot_take_is_recorded_not_fatal(tmp_path):
    """One photo whose analysis fails is recorded as skipped with the reason; the others are embedded."""
    import cv2

    from facesets.embed.embedder import embed_source
    from facesets.embed.store import FaceStore

    src = tmp_path / "src"
    src.mkdir()
    for name, side in (("ok.jpg", 64), ("odd.jpg", 48)):
        Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(src / name, "JPEG")

    class Picky(_ScoreByScale):
        def detect(self, bgr, det_size=None, det_thresh=None):
            if bgr.shape[0] == 48:
                raise cv2.error("simulated failure inside the detector")
            return super().detect(bgr, det_size, det_thresh)

    stats = embed_source(src, tmp_path / "store", "s", test_config(), lambda: Picky(0.9, 0.9, 64), progress=False)
    assert stats["embedded"] == 1 and stats["skipped"] == 1
    files = {p: e for (_, p), e in FaceStore(tmp_path / "store").load().files.items()}
    assert files["odd.jpg"]["status"] == "skipped" and "simulated failure" in files["odd.jpg"]["reason"]
    assert files["ok.jpg"]["status"] == "face"
