"""Hand-sorted folder identities and the era split by EXIF date."""
import json

import numpy as np
import pytest
from conftest import FACES, copy_photos, needs_shared, test_config
from PIL import Image

from facesets.embed.cache import FaceCache
from facesets.embed.exif_years import YearCache, read_year
from facesets.identities import eras, folders

pytestmark = needs_shared


def _dated_copy(src, dst, year):
    img = Image.open(src).convert("RGB")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = f"{year}:06:15 12:00:00"  # DateTimeOriginal
    dst.parent.mkdir(parents=True, exist_ok=True)
    img.save(dst, quality=85, exif=exif.tobytes())


@pytest.fixture(scope="module")
def folder_world(tmp_path_factory, engine):
    from facesets.embed.embedder import embed_source

    tmp = tmp_path_factory.mktemp("folders")
    src = tmp / "src"
    p01 = [f"deepface/p01/{n}" for n in ("img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg")]
    p03 = [f"deepface/p03/{n}" for n in ("img47.jpg", "img48.jpg", "img49.jpg", "img50.jpg", "img8.jpg")]
    p04 = [f"deepface/p04/{n}" for n in ("img12.jpg", "img3.jpg", "img53.jpg", "img55.jpg", "img54.jpg")]
    for rel in p01:
        copy_photos(src / "alice", [rel])
    for rel in p03:
        copy_photos(src / "bob", [rel])
    for rel in p04:
        copy_photos(src / "carol", [rel])  # img54 holds carol and two bystanders
    # a mixed-folder photo of two known people side by side
    a = Image.open(FACES / "deepface/p01/img7.jpg").convert("RGB")
    b = Image.open(FACES / "deepface/p03/img9.jpg").convert("RGB")
    h = 800
    a, b = a.resize((int(a.width * h / a.height), h)), b.resize((int(b.width * h / b.height), h))
    both = Image.new("RGB", (a.width + b.width, h))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    (src / "mixed").mkdir()
    both.save(src / "mixed/alice_and_bob.jpg", quality=92)
    embed_source(src, tmp / "store", "lib", test_config(), lambda: engine, progress=False)
    cache = FaceCache.load(tmp / "store")
    cache.save(tmp / "faces.npz")
    params = dict(test_config()["folders"],
                  trusted=[{"label": "alice", "path": str(src / "alice")}, {"label": "bob", "path": str(src / "bob")},
                           {"label": "carol", "path": str(src / "carol")}],
                  mixed=[str(src / "mixed")])
    return tmp, src, params


def test_trusted_folder_drops_bystanders(folder_world):
    tmp, src, params = folder_world
    m = folders.run(tmp / "faces.npz", tmp / "out", params)
    by_label = {fs["label"]: fs for fs in m["facesets"].values()}
    carol = by_label["carol"]
    group_faces = [k for k, p in carol["faces"] if p.endswith("img54.jpg")]
    assert carol["faces_in_folder"] == 7 and len(group_faces) == 1  # 3 faces in img54, 1 is carol
    assert len(carol["dropped"]) == 2 and all(p.endswith("img54.jpg") for _, p, _ in carol["dropped"])
    cache = FaceCache.load(tmp / "faces.npz")
    area = {k: float(np.prod(b[2:] - b[:2])) for k, b in zip(cache.face_keys(), cache.faces["bbox"])}
    img54 = [k for k, p in zip(cache.face_keys(), cache.face_path.tolist()) if p.endswith("img54.jpg")]
    assert group_faces[0] == max(img54, key=area.get)  # the one kept is the labeled (largest) face


def test_mixed_photo_lands_in_both_identities(folder_world):
    tmp, src, params = folder_world
    m = folders.run(tmp / "faces.npz", tmp / "out2", params)
    by_label = {fs["label"]: fs for fs in m["facesets"].values()}
    mixed = lambda fs: [k for k, p in fs["faces"] if "mixed/" in p]  # noqa: E731
    assert len(mixed(by_label["alice"])) == 1 and len(mixed(by_label["bob"])) == 1
    assert mixed(by_label["alice"]) != mixed(by_label["bob"])  # each identity gets its own face of the photo
    assert mixed(by_label["carol"]) == []
    assert m["stats"]["routed_from_mixed"] == 2


def test_folder_numbers_follow_refine_and_are_stable(folder_world):
    tmp, src, params = folder_world
    refine_m = tmp / "refine_manifest.json"
    refine_m.write_text(json.dumps({"next_number": 7, "facesets": {}}))
    m1 = folders.run(tmp / "faces.npz", tmp / "out3", params, refine_m)
    assert sorted(m1["facesets"]) == ["faceset_007", "faceset_008", "faceset_009"]
    params2 = dict(params, trusted=params["trusted"][::-1])  # order changed, numbers kept
    m2 = folders.run(tmp / "faces.npz", tmp / "out3", params2, refine_m)
    assert {n: f["label"] for n, f in m2["facesets"].items()} == {n: f["label"] for n, f in m1["facesets"].items()}


def test_folder_identities_export_with_label_bundles(folder_world, engine):
    from facesets.export.identities_in import identities_of
    from facesets.export.exporter import export_bundles, export_crops

    tmp, src, params = folder_world
    folders.run(tmp / "faces.npz", tmp / "out4", params)
    idents, meta = identities_of([str(tmp / "out4/folders_manifest.json")])
    export_crops(tmp / "faces.npz", idents, tmp / "export", test_config()["export"],
                 [[640, 0.5], [320, 0.5], [640, 0.3]], lambda: engine, meta=meta)
    export_bundles(tmp / "export", 30)
    alice = next(n for n, mt in meta.items() if mt["bundle_prefix"] == "alice")
    assert (tmp / "export" / alice / "alice_top30.fsz").is_file()
    assert (tmp / "export" / alice / "alice.txt").is_file()
    manifest = json.loads((tmp / "export/manifest.json").read_text())
    assert {f["name"] for f in manifest["facesets"]} == set(idents)


# ---------------------------------------------------------------- eras
def _era_world(tmp, n_a=24, n_b=22):
    """Real photo copies with written EXIF years; embeddings with a controlled era structure
    (one person, two looks), since one test identity's real photos do not span eras."""
    rng = np.random.default_rng(7)
    d = 128
    base, r, s1, s2 = np.linalg.qr(rng.normal(size=(d, 4)))[0].T  # orthonormal directions

    def around(c, n, noise=0.25):
        x = c + noise * rng.normal(size=(n, d)) / np.sqrt(d)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    half = np.arccos(1 - 0.45) / 2  # looks A and B are 0.45 apart, each 0.12 from the identity centre
    a_c = np.cos(half) * base + np.sin(half) * r
    b_c = np.cos(half) * base - np.sin(half) * r
    phi = np.arccos(1 - 0.36)  # fragments 0.36 from A: their own sub-cluster at 0.35, within attach 0.40
    near_c = np.cos(phi) * a_c + np.sin(phi) * s1
    far_c = np.cos(phi) * a_c + np.sin(phi) * s2
    groups = [("a", around(a_c, n_a), [2010, 2011, 2012, 2013]), ("b", around(b_c, n_b), [2019, 2020]),
              ("near", around(near_c, 4), [2012]),   # close in look and in time: attaches to A
              ("far", around(far_c, 4), [2020])]     # close in look, 7+ years from A: stays alone
    photos = sorted((FACES / "deepface/p01").glob("*.jpg"))
    files, emb, paths = [], [], []
    for gname, vecs, years in groups:
        for j, v in enumerate(vecs):
            rel = f"{gname}/{j:03d}.jpg"
            _dated_copy(photos[j % len(photos)], tmp / "src" / rel, years[j % len(years)])
            sha = f"{len(files):064x}"
            files.append({"source": "s", "path": rel, "sha256": sha, "status": "face", "n_faces": 1})
            emb.append(v)
            paths.append(f"s/{rel}")
    n = len(emb)
    faces = {"sha256": np.array([f["sha256"] for f in files], "U64"), "face_index": np.zeros(n, np.int32),
             "bbox": np.tile(np.array([10, 10, 210, 260], np.float32), (n, 1)), "kps": np.zeros((n, 5, 2), np.float32),
             "det_score": np.full(n, 0.9, np.float32), "face_short": np.full(n, 200, np.float32),
             "blur": np.full(n, 300, np.float32), "emb_norm": np.ones(n, np.float32),
             "embedding": np.array(emb, np.float32)}
    cache = FaceCache({"s": str(tmp / "src")}, files, faces, np.array(paths))
    cache.save(tmp / "faces.npz")
    seed = {"faceset_001": {"faces": [[k, p] for k, p in zip(cache.face_keys(), paths)]}}
    (tmp / "refine_manifest.json").write_text(json.dumps({"kind": "refine", "facesets": seed}))
    return cache


def test_exif_years_are_read_and_cached(tmp_path):
    _dated_copy(FACES / "deepface/p01/img2.jpg", tmp_path / "a.jpg", 2014)
    assert read_year(tmp_path / "a.jpg") == 2014
    assert read_year(FACES / "deepface/p01/img1.jpg") == 2019  # a real camera date
    assert read_year(FACES / "deepface/p01/img2.jpg") is None  # no date
    yc = YearCache(tmp_path / "years.json")
    assert yc.year(tmp_path / "a.jpg") == 2014 and yc.reads == 1
    yc.save()
    again = YearCache(tmp_path / "years.json")
    assert again.year(tmp_path / "a.jpg") == 2014 and again.reads == 0


def test_era_split_anchors_and_time_rule(tmp_path):
    _era_world(tmp_path)
    params = dict(test_config()["eras"])
    m = eras.run(tmp_path / "faces.npz", tmp_path / "eras", [tmp_path / "refine_manifest.json"], ["faceset_001"],
                 params, params["probe_thresholds"], tmp_path / "years.json")
    assert m["probe"]["faceset_001"]["age_sortable"] is True
    names = sorted(m["facesets"])
    assert names == ["faceset_001_2010-13", "faceset_001_2019-20"]
    a = m["facesets"]["faceset_001_2010-13"]
    assert a["n_faces"] == 24 + 4 and sum("near/" in p for _, p in a["faces"]) == 4  # the near fragment attached
    far = [e for e in m["thin_eras"].values() if any("far/" in p for _, p in e["faces"])]
    assert len(far) == 1 and far[0]["n_faces"] == 4 and far[0]["thin"]  # 7 years away: standalone, THIN
    assert all(not any("far/" in p for _, p in e["faces"]) for e in m["facesets"].values())
    # a re-run after a threshold change reads no EXIF again
    m2 = eras.run(tmp_path / "faces.npz", tmp_path / "eras", [tmp_path / "refine_manifest.json"], ["faceset_001"],
                  dict(params, attach_years=10), params["probe_thresholds"], tmp_path / "years.json")
    assert m2["exif_reads"] == 0
    assert sum("far/" in p for _, p in m2["facesets"]["faceset_001_2010-20"]["faces"]) == 4  # now within 10 years


def test_era_extend_slots_new_faces_without_recentring(tmp_path):
    cache = _era_world(tmp_path)
    params = dict(test_config()["eras"])
    first = eras.run(tmp_path / "faces.npz", tmp_path / "eras", [tmp_path / "refine_manifest.json"], ["faceset_001"],
                     params, params["probe_thresholds"], tmp_path / "years.json")
    # two new photos: one of era b's look dated 2021, one of era a's look dated 2030 (too far from both)
    emb = cache.embeddings
    b_keys = [k for k, p in first["facesets"]["faceset_001_2019-20"]["faces"]]
    kidx = {k: i for i, k in enumerate(cache.face_keys())}
    new_vecs = [emb[kidx[b_keys[0]]], emb[kidx[first["facesets"]["faceset_001_2010-13"]["faces"][0][0]]]]
    photos = sorted((FACES / "deepface/p01").glob("*.jpg"))
    _dated_copy(photos[0], tmp_path / "src/new/0.jpg", 2021)
    _dated_copy(photos[1], tmp_path / "src/new/1.jpg", 2030)
    files = cache.files + [{"source": "s", "path": f"new/{j}.jpg", "sha256": f"{900 + j:064x}", "status": "face",
                            "n_faces": 1} for j in range(2)]
    faces = {k: np.concatenate([v, v[:2]]) for k, v in cache.faces.items()}
    faces["sha256"] = np.concatenate([cache.faces["sha256"], np.array([f"{900 + j:064x}" for j in range(2)], "U64")])
    faces["embedding"] = np.concatenate([cache.embeddings, np.array(new_vecs, np.float32)])
    bigger = FaceCache(cache.sources, files, faces, np.concatenate([cache.face_path, ["s/new/0.jpg", "s/new/1.jpg"]]))
    bigger.save(tmp_path / "faces.npz")
    second = eras.run(tmp_path / "faces.npz", tmp_path / "eras", [tmp_path / "refine_manifest.json"], ["faceset_001"],
                      params, params["probe_thresholds"], tmp_path / "years.json")
    assert second["stats"]["faceset_001"]["mode"] == "extend"
    b_after = second["facesets"]["faceset_001_2019-20"]
    assert {k for k, _ in b_after["faces"]} == set(b_keys) | {f"{900:064x}:0"}
    for name, e in first["facesets"].items():  # nothing moved out of an existing era
        assert {k for k, _ in e["faces"]} <= {k for k, _ in second["facesets"][name]["faces"]}
    assert all(f"{901:064x}:0" not in {k for k, _ in e["faces"]} for e in second["facesets"].values())
