"""embed on the real labeled photos with the real model pack."""
import collections
import csv
import shutil

import numpy as np
from conftest import FACES, copy_photos, labels, needs_shared, test_config

from facesets.embed.cache import FaceCache
from facesets.embed.store import FaceStore

pytestmark = needs_shared


def _faces_per_image(cache: FaceCache) -> collections.Counter:
    return collections.Counter(p.split("/", 1)[1] for p in cache.face_path.tolist())


def test_face_counts_match_labels(shared_store):
    store, stats = shared_store
    cache = FaceCache.load(store)
    got = _faces_per_image(cache)
    rows = labels()
    mismatches = [(r["path"], int(r["faces_detected"]), got.get(r["path"], 0)) for r in rows
                  if got.get(r["path"], 0) != int(r["faces_detected"])]
    assert mismatches == []
    statuses = {e["path"]: e["status"] for e in cache.files}
    for r in rows:
        assert statuses[r["path"]] == ("face" if int(r["faces_detected"]) else "noface"), r["path"]
    assert stats["embedded"] == len(rows)


def test_records_carry_every_field(shared_store):
    store, _ = shared_store
    cache = FaceCache.load(store)
    f = cache.faces
    n = len(cache)
    assert n > 100
    assert f["embedding"].shape == (n, 128)  # the test pack's recognizer is 128-d
    assert np.allclose(np.linalg.norm(f["embedding"], axis=1), 1.0, atol=1e-4)
    assert f["kps"].shape == (n, 5, 2) and f["bbox"].shape == (n, 4)
    assert (f["det_score"] >= 0.5).all() and (f["face_short"] > 0).all() and (f["blur"] >= 0).all()
    by_path = {e["path"]: e for e in cache.files}
    assert by_path["deepface/p01/img1.jpg"]["exif_datetime"].startswith("2019")
    assert by_path["deepface/p01/img1.jpg"]["width"] > 0


def test_inspect_csv(shared_store, tmp_path):
    from facesets.cli import main

    store, _ = shared_store
    out = tmp_path / "faces.csv"
    assert main(["inspect", str(store), "--csv", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for col in ("path", "status", "reason", "sha256", "face_index", "det_score", "bbox", "face_short", "blur"):
        assert col in rows[0]
    n_faces = sum(int(r["faces_detected"]) for r in labels())
    assert sum(r["status"] == "face" for r in rows) == n_faces
    assert sum(r["status"] == "noface" for r in rows) == sum(r["faces_detected"] == "0" for r in labels())
    assert not any(r["path"].startswith("/") for r in rows)  # relative to the source root


def test_duplicate_file_is_an_alias_and_rerun_is_incremental(tmp_path, engine):
    from facesets.embed.embedder import embed_source

    src = tmp_path / "src"
    copy_photos(src, ["deepface/p01/img1.jpg", "deepface/p03/img8.jpg", "photoprism/_no_face/" +
                      next(p.name for p in (FACES / "photoprism/_no_face").iterdir())])
    (src / "zz_copies").mkdir()
    shutil.copy2(src / "deepface/p01/img1.jpg", src / "zz_copies/same_bytes.jpg")
    nf = next((src / "photoprism/_no_face").iterdir())
    shutil.copy2(nf, src / "zz_copies" / ("dup_" + nf.name))
    cfg = test_config()
    store = tmp_path / "cache"
    s1 = embed_source(src, store, "s", cfg, lambda: engine, progress=False)
    assert s1["embedded"] == 3 and s1["reused"] == 2
    cache = FaceCache.load(store)
    status = {e["path"]: e for e in cache.files}
    assert status["zz_copies/same_bytes.jpg"]["status"] == "alias"
    assert status["zz_copies/same_bytes.jpg"]["alias_of"] == "s/deepface/p01/img1.jpg"
    assert status["zz_copies/dup_" + nf.name]["status"] == "alias"
    assert list(cache.face_path).count("s/deepface/p01/img1.jpg") == 1
    assert "s/zz_copies/same_bytes.jpg" not in cache.face_path  # no second record
    assert cache.aliases_of()["s/deepface/p01/img1.jpg"] == ["s/zz_copies/same_bytes.jpg"]

    # nothing changed: nothing hashed or embedded, no new segment
    segs = FaceStore(store).segments()
    s2 = embed_source(src, store, "s", cfg, lambda: engine, progress=False)
    assert s2["unchanged"] == 5 and s2["embedded"] == 0 and FaceStore(store).segments() == segs

    # a new photo and a changed one are the only work; a deleted one leaves the cache
    copy_photos(src, ["deepface/p04/img3.jpg"])
    shutil.copyfile(FACES / "deepface/p05/img16.jpg", src / "deepface/p03/img8.jpg")  # same name, new bytes
    (src / "zz_copies/same_bytes.jpg").unlink()
    s3 = embed_source(src, store, "s", cfg, lambda: engine, progress=False)
    assert s3["embedded"] == 2 and s3["removed"] == 1 and s3["unchanged"] == 3
    cache = FaceCache.load(store)
    paths = {e["path"] for e in cache.files}
    assert "zz_copies/same_bytes.jpg" not in paths and "deepface/p04/img3.jpg" in paths
    new_sha = {e["path"]: e["sha256"] for e in cache.files}["deepface/p03/img8.jpg"]
    import hashlib
    assert new_sha == hashlib.sha256((FACES / "deepface/p05/img16.jpg").read_bytes()).hexdigest()


def test_model_change_reembeds(tmp_path, engine):
    from facesets.embed.embedder import embed_source

    src = tmp_path / "src"
    copy_photos(src, ["deepface/p01/img1.jpg", "deepface/p01/img2.jpg"])
    store = tmp_path / "cache"
    embed_source(src, store, "s", test_config(), lambda: engine, progress=False)
    s2 = embed_source(src, store, "s", test_config(model={"det_thresh": 0.6}), lambda: engine, progress=False)
    assert s2["embedded"] == 2 and s2["unchanged"] == 0
