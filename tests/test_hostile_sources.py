"""The default target on sources people really have: a Latin-1 file name, phone HEIC/AVIF photos, a GIF,
broken and hostile files, and buffalo_l's five models. The run ends 0 and every real face reaches the
outputs or a recorded reason."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FACES, SHARED, copy_photos, needs_shared
from PIL import Image
from pipeline_util import planned, snakemake, write_config

from facesets.embed.cache import FaceCache

pytestmark = [needs_shared, pytest.mark.slow]
LATIN1 = os.fsdecode(b"caf\xe9 \xe0 la plage.jpg")  # not UTF-8: old NAS shares and Windows copies
PEOPLE = ["deepface/p01/img1.jpg", "deepface/p01/img2.jpg", "deepface/p01/img4.jpg", "deepface/p01/img5.jpg",
          "deepface/p03/img8.jpg", "deepface/p03/img9.jpg", "deepface/p03/img47.jpg"]
BUFFALO = SHARED / "models" / "facepack-buffalo-shapes"


def _hostile_tree(src: Path) -> dict[str, str]:
    """The tree, and for each file that must be skipped the word its reason must hold."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    copy_photos(src, PEOPLE)
    shutil.copy2(FACES / "deepface/p01/img6.jpg", src / LATIN1)
    os.mkdir(src / os.fsdecode(b"dossier \xe9t\xe9"))  # a folder named so too
    shutil.copy2(FACES / "deepface/p03/img48.jpg", src / os.fsdecode(b"dossier \xe9t\xe9/img48.jpg"))
    phone = src / "phone"
    phone.mkdir()
    img = Image.open(FACES / "deepface/p01/img7.jpg").convert("RGB")
    img.save(phone / "IMG_0001.HEIC", format="HEIF", quality=90, enc_params={"preset": "ultrafast"})
    Image.open(FACES / "deepface/p03/img49.jpg").convert("RGB").save(phone / "IMG_0002.avif", format="AVIF",
                                                                     quality=90, speed=8)
    img.resize((img.width // 4, img.height // 4)).save(phone / "anim.gif")
    (phone / "IMG_0003.MOV").write_bytes(b"\0\0\0\x14ftypqt  not a movie")
    (src / "empty.jpg").write_bytes(b"")
    (src / "truncated.jpg").write_bytes((FACES / "deepface/p01/img10.jpg").read_bytes()[:2000])
    (src / "not_an_image.jpg").write_text("hello")
    (src / "broken_link.jpg").symlink_to(src / "no_such_file.jpg")
    return {"phone/anim.gif": "unsupported", "empty.jpg": "", "truncated.jpg": "", "not_an_image.jpg": "",
            "broken_link.jpg": ""}


def _face_files(cache: FaceCache) -> dict[str, int]:
    return {e["path"]: e.get("n_faces", 0) for e in cache.files if e["status"] == "face"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    wd = tmp_path_factory.mktemp("hostile")
    src = wd / "src"
    skips = _hostile_tree(src)
    cfg = write_config(wd, {"home": src}, refine={"min_faces": 2})
    out = snakemake(wd, cfg, check=False)
    return wd, cfg, src, skips, out


def test_run_ends_zero_and_nothing_is_silently_lost(hostile):
    wd, cfg, src, skips, out = hostile
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    res = wd / "results"
    cache = FaceCache.load(res / "cache/faces.npz")
    by_path = {e["path"]: e for e in cache.files}
    # every photo with a face was embedded, whatever its name or format
    faces = _face_files(cache)
    for rel in [*PEOPLE, LATIN1, os.fsdecode(b"dossier \xe9t\xe9/img48.jpg"), "phone/IMG_0001.HEIC",
                "phone/IMG_0002.avif"]:
        assert faces.get(rel, 0) >= 1, (rel, by_path.get(rel))
    # every file that cannot be used is recorded with its reason
    for rel, word in skips.items():
        e = by_path.get(rel)
        assert e is not None and e["status"] == "skipped" and e.get("reason"), (rel, e)
        assert word in e["reason"]
    # the .MOV is counted, not ignored
    counts = json.loads((res / "cache/listing/home/not_scanned.json").read_text())
    assert counts["not_scanned"].get(".mov") == 1 and counts["unsupported"].get(".gif") == 1
    assert "not scanned" in (res / "report/index.html").read_text()
    # every face is in a faceset or removed with a reason; every faceset member is a crop or an exclusion
    audit = subprocess.run([sys.executable, "-m", "facesets", "audit", str(res), "--no-verify"],
                           capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    refine = json.loads((res / "identities/facesets/refine_manifest.json").read_text())
    crops = json.loads((res / "export/crops.json").read_text())
    placed = {k for fs in refine["facesets"].values() for k, _ in fs["faces"]}
    exported = json.dumps(crops)
    assert all(k in exported for k in placed)
    assert planned(wd, cfg) == []  # and a second look finds nothing left to do


def test_non_utf8_name_round_trips_through_every_output(hostile):
    wd, *_ = hostile
    res = wd / "results"
    cache = FaceCache.load(res / "cache/faces.npz")
    assert LATIN1 in {e["path"] for e in cache.files}
    # the CSV names the file by its bytes on disk
    with open(res / "cache/faces.csv", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        assert LATIN1 in {r["path"] for r in csv.DictReader(fh)}
    # manifests are valid UTF-8 JSON and give back the same name
    refine_text = (res / "identities/facesets/refine_manifest.json").read_bytes().decode("utf-8")
    assert f"home/{LATIN1}" in {p for fs in json.loads(refine_text)["facesets"].values() for _, p in fs["faces"]}
    # crops keep their provenance: the export manifest names the photo it was cut from
    member_paths = set()
    for per in (res / "export").glob("faceset_*/manifest.json"):
        member_paths |= {m["path"] for m in json.loads(per.read_bytes().decode("utf-8"))["members"]}
    assert any(p.endswith(LATIN1) for p in member_paths), member_paths
    # the identity folder's link has the same bytes in its name and reaches the photo
    links = [p for p in (res / "identities/facesets").rglob("*") if os.fsencode(p.name).endswith(b"caf\xe9 \xe0 la plage.jpg")]
    assert links and all(p.resolve().is_file() for p in links)
    # the report shows it (escaped), and stays valid UTF-8
    pages = "".join(p.read_bytes().decode("utf-8") for p in (res / "report").glob("*.html"))
    assert "caf\\udce9" in pages


@pytest.fixture(scope="module")
def buffalo(tmp_path_factory):
    if not (BUFFALO / "1k3d68.onnx").is_file():
        pytest.skip(f"buffalo_l-shaped pack not found at {BUFFALO}")
    wd = tmp_path_factory.mktemp("buffalo")
    src = wd / "src"
    copy_photos(src, PEOPLE + ["deepface/_group/couple.jpg"])
    cfg = write_config(wd, {"home": src}, refine={"min_faces": 2}, model={"pack": str(BUFFALO)})
    snakemake(wd, cfg)
    return wd


def test_default_target_with_buffalo_l_models_uses_the_landmark_path(buffalo):
    from facesets.identities.enrich import load as load_enrich
    from facesets.identities.pose import pose_from_kps

    res = buffalo / "results"
    cache = FaceCache.load(res / "cache/faces.npz")
    assert cache.embeddings.shape[1] == 512
    side = load_enrich(res / "cache/enrich.npz")
    methods = set(side["pose_method"].tolist())
    assert methods == {"landmark_3d_68"}, methods  # every face went through the 106/68-point models
    assert side["landmark_2d_106"].shape[1:] == (106, 2) and side["landmark_3d_68"].shape[1:] == (68, 3)
    # ranking uses that pose: each crop's frontality is the landmark pose's, not the 5-keypoint estimate's
    crops = json.loads((res / "export/crops.json").read_text())
    keys = cache.face_keys()
    kps_pose = pose_from_kps(cache.faces["kps"])
    pose_of = {k: side["pose"][i] for i, k in enumerate(side["key"].tolist())}
    checked = differs = 0
    for per in (res / "export").glob("faceset_*/manifest.json"):
        for m in json.loads(per.read_text())["members"]:
            i = keys.index(m["key"])
            pose = pose_of[m["key"]]
            want = float(np.clip(1 - np.hypot(pose[0], pose[1]) / 90.0, 0, 1))
            assert m["quality"]["frontality"] == pytest.approx(want, abs=1e-4)  # stored to 4 decimals
            kps_front = float(np.clip(1 - np.hypot(kps_pose[i][0], kps_pose[i][1]) / 90.0, 0, 1))
            differs += abs(kps_front - want) > 1e-3
            checked += 1
    assert checked >= 4 and differs >= 1, (checked, differs)
    assert crops  # the export indexed its crops
    verify = json.loads((res / "curation/verify.json").read_text())
    assert verify["ok"], verify["violations"][:5]
