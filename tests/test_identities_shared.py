"""cluster / refine / extend / dedup / enrich / evaluate on the real labeled photos."""
import collections
import shutil

import numpy as np
import pytest
from conftest import FACES, copy_photos, labels, needs_shared, test_config

from facesets.embed.cache import FaceCache
from facesets.identities import cluster_stage, dedup, enrich, refine
from facesets.identities.evaluate import evaluate, read_labels

pytestmark = needs_shared
SMALL = {"min_faces": 3}


def refine_params(**kw):
    return {**test_config()["refine"], **SMALL, **kw}


@pytest.fixture(scope="module")
def cache_file(shared_store, tmp_path_factory):
    store, _ = shared_store
    path = tmp_path_factory.mktemp("cachefile") / "faces.npz"
    cache = FaceCache.load(store)
    cache.sources = {"faces": str(FACES)}
    cache.save(path)
    return path


@pytest.fixture(scope="module")
def refined(cache_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("refined")
    manifest = refine.run(cache_file, out, refine_params())
    return out, manifest


def _label_of_key(cache_file):
    """key -> identity for the largest face of every labeled photo."""
    cache = FaceCache.load(cache_file)
    lab = read_labels(FACES / "labels.csv")
    area = np.prod(cache.faces["bbox"][:, 2:] - cache.faces["bbox"][:, :2], axis=1)
    best = {}
    for k, p, a in zip(cache.face_keys(), cache.face_path.tolist(), area.tolist()):
        rel = p.split("/", 1)[1]
        if rel in lab and a > best.get(rel, (None, -1))[1]:
            best[rel] = (k, a)
    return {k: lab[rel] for rel, (k, _) in best.items()}


def test_refine_quality_against_labels(refined, cache_file):
    out, manifest = refined
    scores = evaluate(out / "refine_manifest.json", FACES / "labels.csv", FACES, cache_file)
    assert scores["bcubed_f"] >= 0.95, scores
    assert scores["clusters_merged"] == 0
    # every faceset holds one identity: its labeled faces all carry the same label
    lab = _label_of_key(cache_file)
    for name, fs in manifest["facesets"].items():
        ids_in = {lab[k] for k, _ in fs["faces"] if k in lab}
        assert len(ids_in) <= 1, (name, ids_in)
    assert len(manifest["facesets"]) >= 8


def test_refine_accounts_for_every_face(refined, cache_file):
    out, manifest = refined
    n = len(FaceCache.load(cache_file))
    st = manifest["stats"]
    assert st["accounted"] and st["faces"] == n
    placed = {k for fs in manifest["facesets"].values() for k, _ in fs["faces"]}
    removed = {k for stage in ("quality", "outlier") for k, _, _ in manifest["removed"][stage]}
    small = {k for g in manifest["removed"]["too_small"] for k, _ in g["faces"]}
    assert len(placed) + len(removed) + len(small) == n and not (placed & removed) and not (placed & small)
    assert all(why for _, _, why in manifest["removed"]["quality"])
    assert any("face_short" in why for _, _, why in manifest["removed"]["quality"])
    for name, fs in manifest["facesets"].items():
        assert set(fs["removed"]) == {"quality_gate", "outlier"}
        assert fs["n_images"] >= SMALL["min_faces"]
        folder = out / name
        assert len(list(folder.iterdir())) >= fs["n_images"]  # every photo (and alias) materialised


def test_raw_cluster_manifest(cache_file, tmp_path):
    m = cluster_stage.run(cache_file, tmp_path / "raw", 0.55, 0.5)
    st = m["stats"]
    assert st["faces_in_persons"] + st["singletons"] == st["faces"]
    assert st["noface_images"] == sum(r["faces_detected"] == "0" for r in labels())
    assert (tmp_path / "raw/_noface").is_dir() and (tmp_path / "raw/_singletons").is_dir()
    assert sorted(p.name for p in (tmp_path / "raw").glob("person_*")) == sorted(m["persons"])
    scores = evaluate(tmp_path / "raw/manifest.json", FACES / "labels.csv", FACES, cache_file)
    assert scores["bcubed_precision"] >= 0.95
    # same input, same threshold: a second run changes nothing
    m2 = cluster_stage.run(cache_file, tmp_path / "raw", 0.55, 0.5)
    assert m2["persons"] == m["persons"] and m2["mode"] == "extend"


def test_extend_keeps_numbers_and_places_newcomers(tmp_path, engine):
    """Embed half the photos, build identities, add the other half, re-run."""
    from facesets.embed.embedder import embed_source

    src = tmp_path / "src"
    by_id = collections.defaultdict(list)
    for r in labels():
        if r["identity"]:
            by_id[r["identity"]].append(r["path"])
    first = [p for ps in by_id.values() for p in ps[: (len(ps) + 1) // 2]]
    second = [p for ps in by_id.values() for p in ps[(len(ps) + 1) // 2:]]
    copy_photos(src, first)
    store, cache_path = tmp_path / "store", tmp_path / "faces.npz"
    cfg = test_config()

    def build():
        embed_source(src, store, "lib", cfg, lambda: engine, progress=False)
        FaceCache.load(store).save(cache_path)
        raw = cluster_stage.run(cache_path, tmp_path / "raw", 0.55, 0.5)
        ref = refine.run(cache_path, tmp_path / "ref", refine_params(min_faces=2))
        return raw, ref

    raw1, ref1 = build()
    copy_photos(src, second)
    raw2, ref2 = build()
    assert ref2["stats"]["mode"] == "extend" and raw2["mode"] == "extend"
    for name, fs in ref1["facesets"].items():
        old = {k for k, _ in fs["faces"]}
        assert old <= {k for k, _ in ref2["facesets"][name]["faces"]}, name  # nothing left its faceset
    for name, faces in raw1["persons"].items():
        assert {k for k, _ in faces} <= {k for k, _ in raw2["persons"][name]}
    # newcomers land in the faceset of their identity
    lab = {}
    cache = FaceCache.load(cache_path)
    for k, p in zip(cache.face_keys(), cache.face_path.tolist()):
        lab.setdefault(k, p.split("/", 1)[1])
    ident = {r["path"]: r["identity"] for r in labels()}
    majority = {}
    for name, fs in ref1["facesets"].items():
        c = collections.Counter(ident[lab[k]] for k, _ in fs["faces"])
        majority[name] = c.most_common(1)[0][0]
    placed_right = placed_wrong = 0
    for name, fs in ref2["facesets"].items():
        if name not in ref1["facesets"]:
            continue
        new = {k for k, _ in fs["faces"]} - {k for k, _ in ref1["facesets"][name]["faces"]}
        for k in new:
            if ident[lab[k]] == majority[name]:
                placed_right += 1
            else:
                placed_wrong += 1
    assert placed_right >= 10 and placed_wrong == 0


def test_dedup_report(tmp_path, engine):
    from PIL import Image

    from facesets.embed.embedder import embed_source

    src = tmp_path / "src"
    copy_photos(src, ["deepface/p01/img1.jpg", "deepface/p03/img8.jpg"])
    shutil.copy2(src / "deepface/p01/img1.jpg", src / "byte_copy.jpg")
    Image.open(src / "deepface/p03/img8.jpg").save(src / "recompressed.jpg", quality=70)  # same shot, new bytes
    embed_source(src, tmp_path / "store", "d", test_config(), lambda: engine, progress=False)
    FaceCache.load(tmp_path / "store").save(tmp_path / "faces.npz")
    rep = dedup.run(tmp_path / "faces.npz", 0.95)
    assert (tmp_path / "faces.duplicates.json").is_file()
    assert [sorted(g["paths"]) for g in rep["byte_identical"]] == [["d/byte_copy.jpg", "d/deepface/p01/img1.jpg"]]
    assert len(rep["visual"]) == 1
    assert sorted(p for _, p in rep["visual"][0]["faces"]) == ["d/deepface/p03/img8.jpg", "d/recompressed.jpg"]


def test_enrich_without_landmark_models_estimates_pose(cache_file, tmp_path, engine):
    stats = enrich.run(cache_file, tmp_path / "enrich.npz", lambda: engine)
    side = enrich.load(tmp_path / "enrich.npz")
    n = len(FaceCache.load(cache_file))
    assert stats["by_method"] == {"kps5": n}
    assert side["pose"].shape == (n, 3) and np.isfinite(side["pose"]).all()
    assert "landmark_2d_106" not in side
    assert np.median(np.abs(side["pose"][:, 1])) < 25  # most of these photos face the camera


def test_rerunning_refine_and_cluster_on_one_cache_is_byte_identical(cache_file, tmp_path):
    """Re-running on an unchanged cache once appended the too-small faces again on every run."""
    for stage, run, name in (("refine", lambda out: refine.run(cache_file, out, refine_params()), "refine_manifest.json"),
                             ("cluster", lambda out: cluster_stage.run(cache_file, out, 0.55, 0.5), "manifest.json")):
        out = tmp_path / stage
        texts = []
        for _ in range(3):
            run(out)
            texts.append((out / name).read_bytes())
        assert texts[0] == texts[1] == texts[2], stage
    man = refine.run(cache_file, tmp_path / "refine", refine_params())
    assert man["removed"]["too_small"], "the test needs too-small clusters to exercise the re-pooling"
    assert man["stats"]["accounted"]
    assert sorted(refine.manifest_keys(man)) == sorted(FaceCache.load(cache_file).face_keys())


def test_audit_catches_a_face_listed_twice(refined, cache_file):
    from facesets.curation.audit import faces_accounted

    out, manifest = refined
    cache = FaceCache.load(cache_file)
    assert faces_accounted(cache, manifest, None) == []
    planted = {**manifest, "removed": {**manifest["removed"],
                                       "too_small": manifest["removed"]["too_small"] + manifest["removed"]["too_small"][:1]}}
    problems = faces_accounted(cache, planted, None)
    dup = manifest["removed"]["too_small"][0]["faces"][0][0]
    assert any(dup in p and "listed 2 times" in p for p in problems), problems
