"""Phone libraries: HEIC/HEIF and AVIF photos are embedded, exported and dated like JPEGs; GIF and other
image types facesets does not use are recorded as skipped with the reason; every other extension is
counted per source and reported.

The HEIC and AVIF files are made from a real one-face photo the way phones write them: the pixels stored
turned, the turn in the file (HEIF irot/imir boxes, EXIF Orientation) and an EXIF DateTimeOriginal that
differs from the JPEG's, so a missed or doubled turn moves the face and a missed date shows.
"""
import json
import logging
import shutil
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import FACES, needs_shared, test_config
from PIL import Image

from facesets.embed.cache import FaceCache

pytestmark = needs_shared
PHOTO = FACES / "deepface/p01/img1.jpg"  # exactly one face (labels.csv), upright, EXIF date 2019
JPEG, HEIC, AVIF, GIF = "camera/img1.jpg", "phone/IMG_0001.HEIC", "phone/IMG_0002.avif", "phone/anim.gif"
DATES = {HEIC: "2013:07:14 10:11:12", AVIF: "2011:02:03 04:05:06"}
TURNS = {HEIC: 6, AVIF: 8}  # EXIF orientation: 6 = shown turned 90 degrees clockwise, 8 = counter-clockwise
# the stored pixels that the EXIF orientation turns back upright
STORED = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
CHECKS = [[640, 0.5], [320, 0.5], [640, 0.3]]


def _exif(orientation: int, date: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = date  # DateTimeOriginal
    return exif.tobytes()


def _ispe(data: bytes) -> tuple[int, int]:
    """The stored (coded) width and height of a HEIF/AVIF file: its 'ispe' box."""
    i = data.index(b"ispe")
    return struct.unpack(">II", data[i + 8:i + 16])


@pytest.fixture(scope="module")
def phone_tree(tmp_path_factory):
    import pillow_heif

    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this pillow-heif build has no HEVC encoder to write the test HEIC")
    pillow_heif.register_heif_opener()  # to write the test files (facesets.core.imageio registers it for reading)
    src = tmp_path_factory.mktemp("phone") / "src"
    (src / "camera").mkdir(parents=True)
    (src / "phone").mkdir()
    shutil.copy2(PHOTO, src / JPEG)
    upright = Image.open(PHOTO).convert("RGB")
    for rel in (HEIC, AVIF):
        stored = upright.transpose(STORED[TURNS[rel]])
        exif = _exif(TURNS[rel], DATES[rel])
        if rel == HEIC:  # pillow-heif writes the turn as irot (as iPhones do) and keeps the EXIF tag
            stored.save(src / rel, format="HEIF", quality=90, exif=exif, enc_params={"preset": "ultrafast"})
        else:  # Pillow's own AVIF writer moves the EXIF turn into irot/imir
            stored.save(src / rel, format="AVIF", quality=90, speed=8, exif=exif)
    small = upright.resize((upright.width // 4, upright.height // 4))
    small.save(src / GIF, save_all=True, append_images=[small.rotate(5)], duration=200, loop=0)
    (src / "phone/IMG_0001.MOV").write_bytes(b"\0\0\0\x14ftypqt  not really a movie")
    (src / "phone/IMG_0001.AAE").write_text("<plist>edits</plist>\n")
    (src / "phone/notes.txt").write_text("not a photo\n")
    return src


@pytest.fixture(scope="module")
def phone_cache(phone_tree, engine, tmp_path_factory):
    from facesets.embed.embedder import embed_source

    store = tmp_path_factory.mktemp("phone_store") / "cache"
    stats = embed_source(phone_tree, store, "phone", test_config(), lambda: engine, progress=False)
    return FaceCache.load(store), stats


def test_the_test_files_are_stored_turned_as_phones_write_them(phone_tree):
    """Guards the test itself: the coded pixels are turned, and only the file's turn makes them upright."""
    w, h = Image.open(PHOTO).size
    for rel in (HEIC, AVIF):
        data = (phone_tree / rel).read_bytes()
        assert _ispe(data) == (h, w), rel
        assert b"irot" in data, rel
    assert Image.open(phone_tree / HEIC).format == "HEIF"
    assert Image.open(phone_tree / AVIF).format == "AVIF"


def test_heic_and_avif_embed_like_the_jpeg(phone_cache):
    cache, stats = phone_cache
    by = {e["path"]: e for e in cache.files}
    upright = Image.open(PHOTO).size
    rows = {p: i for i, p in enumerate(cache.face_path.tolist())}
    ref = rows[f"phone/{JPEG}"]
    ref_box = cache.faces["bbox"][ref]
    face_w = ref_box[2] - ref_box[0]
    for rel in (HEIC, AVIF):
        e = by[rel]
        assert e["status"] == "face" and e["n_faces"] == 1, (rel, e)
        assert (e["width"], e["height"]) == upright, rel  # orientation applied, and only once
        assert e["exif_datetime"] == DATES[rel], rel
        i = rows[f"phone/{rel}"]
        # the same face at the same place of the upright photo: within 1 px here (JPEG decoded at half
        # scale, HEIC/AVIF at full size); a missed or doubled turn moves it by hundreds
        assert np.abs(cache.faces["bbox"][i] - ref_box).max() < 0.02 * face_w, (rel, cache.faces["bbox"][i], ref_box)
        cos = float(cache.embeddings[i] @ cache.embeddings[ref])
        assert cos > 0.95, (rel, cos)
    assert by[JPEG]["exif_datetime"].startswith("2019")
    assert stats["embedded"] == 3 and stats["faces_added"] == 3


def test_exif_year_is_read_from_heic_and_avif(phone_tree, tmp_path):
    from facesets.embed.exif_years import YearCache, read_year

    assert read_year(phone_tree / HEIC) == 2013
    assert read_year(phone_tree / AVIF) == 2011
    assert read_year(phone_tree / JPEG) == 2019
    yc = YearCache(tmp_path / "years.json")
    assert [yc.year(phone_tree / r) for r in (HEIC, AVIF, JPEG)] == [2013, 2011, 2019]
    yc.save()
    again = YearCache(tmp_path / "years.json")
    assert again.year(phone_tree / HEIC) == 2013 and again.reads == 0


def test_export_crops_from_heic_and_avif_sources(phone_cache, tmp_path, engine):
    from facesets.export.decode import decode_for_crops
    from facesets.export.exporter import export_crops

    cache, _ = phone_cache
    cache.save(tmp_path / "faces.npz")
    keys = dict(zip(cache.face_path.tolist(), cache.face_keys()))
    ex = dict(test_config()["export"], outlier_threshold=2.0, min_face_short=0, burst_similarity=1.01)
    index = export_crops(tmp_path / "faces.npz", {"faceset_001": list(keys.values())}, tmp_path / "out", ex,
                         CHECKS, lambda: engine)
    fs = index["facesets"]["faceset_001"]
    assert fs["excluded"] == []
    crops = {m["path"]: cv2.imread(str(tmp_path / "out" / m["crop"]), cv2.IMREAD_UNCHANGED) for m in fs["members"]}
    assert set(crops) == {f"phone/{r}" for r in (JPEG, HEIC, AVIF)}
    ref = crops[f"phone/{JPEG}"].astype(np.float32)
    for rel in (HEIC, AVIF):
        crop = crops[f"phone/{rel}"]
        assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
        mad = float(np.abs(crop.astype(np.float32) - ref).mean())
        assert mad < 6.0, (rel, mad)  # the same upright crop (~2; turned by 90 degrees: ~86)
    # a HEIC is decoded upright at full size whatever reduction a JPEG of that frame would get
    src = decode_for_crops((cache.abs_path(f"phone/{HEIC}")).read_bytes(), 10**9, 2)
    assert src.scale == 1 and src.bgr.shape[:2] == Image.open(PHOTO).size[::-1]


def test_gif_is_recorded_as_skipped_with_the_reason(phone_cache, phone_tree):
    from facesets.embed import scan

    cache, stats = phone_cache
    by = {e["path"]: e for e in cache.files}
    assert by[GIF]["status"] == "skipped"
    assert "unsupported format (.gif)" in by[GIF]["reason"]
    assert stats["skipped"] == 1
    assert {"phone/IMG_0001.MOV", "phone/IMG_0001.AAE", "phone/notes.txt"}.isdisjoint(by)
    # named in embed.extensions, a GIF is scanned like any photo
    listed = {e.relpath: e for e in scan.list_source(phone_tree, [".jpg", ".gif"])}
    assert listed[GIF].problem is None and listed[GIF].st is not None


def test_unscanned_extensions_are_counted_per_source(phone_cache, phone_tree, tmp_path, caplog, engine):
    from facesets.embed import scan

    _, stats = phone_cache
    assert stats["not_scanned"] == {".aae": 1, ".mov": 1, ".txt": 1}
    # the pipeline's listing walk: one small file per source beside its shard listings, and warnings
    # that the Snakemake run prints before the DAG
    old_exts = [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"]  # the defaults before HEIC/AVIF
    extra = tmp_path / "family"
    (extra / "2009").mkdir(parents=True)
    for i in range(3):
        shutil.copy2(PHOTO, extra / "2009" / f"p{i}.JPG")
        (extra / "2009" / f"p{i}.HEIC").write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="facesets.embed.scan"):
        for name, root in (("phone", phone_tree), ("family", extra)):
            scan.write_shard_listings(root, old_exts, 4, tmp_path / "listing" / name)
    counts = {n: json.loads((tmp_path / "listing" / n / scan.NOT_SCANNED).read_text()) for n in ("phone", "family")}
    assert counts["phone"] == {"not_scanned": {".aae": 1, ".avif": 1, ".heic": 1, ".mov": 1, ".txt": 1},
                               "unsupported": {".gif": 1}}
    assert counts["family"] == {"not_scanned": {".heic": 3}, "unsupported": {}}
    said = [r.getMessage() for r in caplog.records]
    assert "source 'family': 3 .heic files not scanned: add them to embed.extensions" in said
    assert "source 'phone': 1 .heic file not scanned: add them to embed.extensions" in said
    assert "source 'phone': 1 .avif file not scanned: add them to embed.extensions" in said
    assert any(m.startswith("source 'phone': also not scanned") and "1 .mov file" in m and "1 .aae file" in m
               for m in said)
    assert any(m.startswith("source 'phone': recorded as skipped") and "1 .gif file" in m for m in said)
    # the GIF's skip is in its shard's listing, so embed records it; a not-scanned file is in none
    tsv = "".join(p.read_text() for p in sorted((tmp_path / "listing" / "phone").glob("shard_*.tsv")))
    assert f"{GIF}\t!unsupported format (.gif)" in tsv and ".HEIC" not in tsv and ".MOV" not in tsv

    # `facesets embed SRC CACHE` (no shards) says the same for its source
    from facesets.embed.embedder import embed_source

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facesets.embed.embedder"):
        stats = embed_source(extra, tmp_path / "family_store", "family", test_config(embed={"extensions": old_exts}),
                             lambda: engine, progress=False)
    assert stats["not_scanned"] == {".heic": 3}
    assert [r.getMessage() for r in caplog.records if r.name == "facesets.embed.embedder"] == [
        "source 'family': 3 .heic files not scanned: add them to embed.extensions"]

    # with the defaults HEIC and AVIF are scanned: only the non-photos are left, and no hint to add them
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="facesets.embed.scan"):
        scan.write_shard_listings(phone_tree, test_config()["embed"]["extensions"], 4, tmp_path / "listing" / "phone")
    assert json.loads((tmp_path / "listing" / "phone" / scan.NOT_SCANNED).read_text())["not_scanned"] == {
        ".aae": 1, ".mov": 1, ".txt": 1}
    assert not any("add them to embed.extensions" in r.getMessage() for r in caplog.records)


def test_facesets_registers_the_decoders_itself(phone_tree):
    """The fixture registered pillow-heif to write the files; a fresh process has only what facesets does."""
    code = ("import sys; from facesets.core import imageio\n"
            "for p in sys.argv[1:]:\n"
            "    d = imageio.decode(open(p, 'rb').read(), max_pixels=10**9)\n"
            "    print(d.width, d.height, d.exif_datetime)\n")
    out = subprocess.run([sys.executable, "-c", code, str(phone_tree / HEIC), str(phone_tree / AVIF)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    w, h = Image.open(PHOTO).size
    assert out == [f"{w} {h} {DATES[HEIC]}", f"{w} {h} {DATES[AVIF]}"]


def test_a_missing_decoder_is_named_in_the_skip_reason(phone_tree, monkeypatch):
    from facesets.core import imageio

    heic, avif = (phone_tree / HEIC).read_bytes(), (phone_tree / AVIF).read_bytes()
    assert {".heic", ".heif", ".avif"} <= imageio.readable_extensions()
    assert imageio._no_decoder((phone_tree / JPEG).read_bytes()) is None
    assert "libheif cannot open" in imageio._no_decoder(heic)  # decoder present: the file is at fault
    monkeypatch.setattr(imageio, "pillow_heif", None)
    monkeypatch.setattr(imageio, "_has_avif", lambda: False)
    assert "pillow-heif is not installed" in imageio._no_decoder(heic)
    assert "no AVIF decoder" in imageio._no_decoder(avif)

    def no_opener(fp):  # what Pillow does with a HEIC when no HEIF opener is registered
        raise imageio.UnidentifiedImageError("cannot identify image file")

    monkeypatch.setattr(imageio.Image, "open", no_opener)
    with pytest.raises(imageio.ImageSkip, match="pillow-heif is not installed"):  # the reason embed records
        imageio.decode(heic, max_pixels=10**9)
