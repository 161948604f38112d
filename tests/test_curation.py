"""Curation passes on an export built from the real photos plus synthesized cases:
plans, apply, undo byte for byte, idempotence, threshold changes."""
import hashlib
import json
import shutil
import subprocess
import sys
import venv

import cv2
import numpy as np
import pytest
from conftest import PACK, copy_photos, needs_shared, test_config
from PIL import Image, ImageEnhance

from facesets.curation import corpus, crc_ledger
from facesets.curation import plans as P
from facesets.curation.corpus import inventory
from facesets.curation.workers import read_results, stage
from facesets.embed.cache import FaceCache
from facesets.export.exporter import export_bundles, export_crops

pytestmark = needs_shared
CHECKS = [[640, 0.5], [320, 0.5], [640, 0.3]]
CUR = test_config()["curation"]


def _tree_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".curation" not in p.parts}


@pytest.fixture(scope="module")
def world(tmp_path_factory, engine):
    """An export of p01 (with burst shots), p03 split in two facesets, p04, p06 + synthesized crops."""
    from facesets.embed.embedder import embed_source

    tmp = tmp_path_factory.mktemp("curation")
    src = tmp / "src"
    p01 = [f"deepface/p01/{n}" for n in ("img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg", "img7.jpg")]
    p03 = [f"deepface/p03/{n}" for n in ("img47.jpg", "img48.jpg", "img49.jpg", "img50.jpg", "img51.jpg", "img8.jpg")]
    p04 = ["deepface/p04/img12.jpg", "deepface/p04/img3.jpg", "deepface/p04/img53.jpg", "deepface/p04/img55.jpg"]
    p06 = ["deepface/p06/img13.jpg", "deepface/p06/img14.jpg", "deepface/p06/img15.jpg", "deepface/p06/img57.jpg"]
    copy_photos(src, p01 + p03 + p04 + p06)
    burst = Image.open(src / p01[0])
    ImageEnhance.Brightness(burst).enhance(1.04).save(src / "burst_a.jpg", quality=90)
    w, h = burst.size
    burst.crop((w // 25, h // 25, w, h)).save(src / "burst_b.jpg", quality=90)
    embed_source(src, tmp / "store", "lib", test_config(), lambda: engine, progress=False)
    cache_path = tmp / "faces.npz"
    FaceCache.load(tmp / "store").save(cache_path)
    cache = FaceCache.load(cache_path)
    key_of = dict(zip(cache.face_path.tolist(), cache.face_keys()))
    ident = {
        "faceset_001": [key_of["lib/" + p] for p in p01] + [key_of["lib/burst_a.jpg"], key_of["lib/burst_b.jpg"]],
        "faceset_002": [key_of["lib/" + p] for p in p03[:4]],
        "faceset_003": [key_of["lib/" + p] for p in p04],
        "faceset_004": [key_of["lib/" + p] for p in p06],
        "faceset_005": [key_of["lib/" + p] for p in p03[4:]],  # the same person as 002: to be merged
    }
    ex = dict(test_config()["export"], burst_similarity=1.0)  # keep the bursts for the curation pass
    export = tmp / "export"
    export_crops(cache_path, ident, export, ex, CHECKS, lambda: engine)
    export_bundles(export, 30)
    # synthesized: the same PNG bytes in two families, and a crop holding two faces
    a = next((export / "faceset_003/faces").glob("*.png"))
    shutil.copy2(a, export / "faceset_004/faces" / a.name)
    one = cv2.imread(str(next((export / "faceset_001/faces").glob("*.png"))))
    two = cv2.imread(str(next((export / "faceset_003/faces").glob("*.png"))))
    pair = np.concatenate([cv2.resize(one, (256, 512)), cv2.resize(two, (256, 512))], axis=1)
    cv2.imwrite(str(export / "faceset_004/faces/zz_two_faces.png"), pair)
    return {"tmp": tmp, "cache": cache_path, "export": export, "key_of": key_of, "copied": a.name, "p01": p01,
            "engine": engine}


MULTIFACE = {"det_size": 640, "det_thresh": 0.3}


def _audit(world, folder, cfg, store, engine_factory=None, path_map=()):
    """The multi-face audit of the world's export into `folder`: (results file's content, queue)."""
    from facesets.curation.multiface import audit

    folder.mkdir(parents=True, exist_ok=True)
    q, r = folder / "mq.json", folder / "mr.json"
    stage(world["export"], q, MULTIFACE, [])
    audit(q, r, cfg, store, engine_factory or (lambda: world["engine"]), threads=2)
    return json.loads(r.read_text()), json.loads(q.read_text())


def _multiface_results(world):
    """Every crop detected afresh, in process (an empty detection store)."""
    from facesets.export.verdicts import open_store

    r = world["tmp"] / "multiface" / "mr.json"
    if not r.exists():
        _audit(world, r.parent, test_config(), open_store(world["tmp"] / "multiface" / "det.sqlite", str(PACK)))
    return read_results(r)


def _all_plans(world, neardup=0.95, occlusion_scores=None):
    inv = inventory(world["export"])
    cache = FaceCache.load(world["cache"])
    out = [P.plan_occlusion(inv, occlusion_scores, CUR["occlusion"])]
    out.append(P.plan_consolidate(inv, P.prior_state(inv, out), cache, CUR["consolidate"]))
    out.append(P.plan_bytedup(inv, P.prior_state(inv, out), world["export"], CUR["bytedup"]))
    out.append(P.plan_neardup(inv, P.prior_state(inv, out), cache, dict(CUR["neardup"], similarity=neardup)))
    out.append(P.plan_multiface(inv, P.prior_state(inv, out), _multiface_results(world), CUR["multiface"]))
    return out


def test_each_pass_plans_exactly_the_expected_changes(world):
    plans = {p["pass"]: p for p in _all_plans(world)}
    assert plans["occlusion"]["changes"] == [] and plans["occlusion"]["skipped"]
    merges = [(c["faceset"], c["into"]) for c in plans["consolidate"]["changes"]]
    assert merges == [("faceset_005", "faceset_002")]  # split identity re-joined into the larger part
    byte = [(c["faceset"], c["crop"]) for c in plans["bytedup"]["changes"]]
    assert byte == [("faceset_004", world["copied"])]  # the copy in the other family goes; 003 keeps its own
    near = plans["neardup"]["changes"]
    assert {c["faceset"] for c in near} == {"faceset_001"} and len(near) >= 1
    burst_names = {f"{world['key_of'][p].split(':')[0][:16]}_0.png" for p in ("lib/burst_a.jpg", "lib/burst_b.jpg",
                                                                             "lib/" + world["p01"][0])}
    dropped = {c["crop"] for c in near}
    assert dropped < burst_names and len(dropped) == 2  # of three shots of one moment, the best stays
    assert all(c["evidence"]["similarity"] >= 0.95 for c in near)
    multi = [(c["faceset"], c["crop"], c["evidence"]["face_count"]) for c in plans["multiface"]["changes"]]
    assert multi == [("faceset_004", "zz_two_faces.png", 2)]


def test_plans_are_pure(world):
    a = json.dumps(_all_plans(world), sort_keys=True)
    b = json.dumps(_all_plans(world), sort_keys=True)
    assert a == b


def test_apply_undo_reapply(world, tmp_path, engine):
    from facesets.export.verify import verify

    corp = tmp_path / "corpus"
    assert corpus.mirror(world["export"], corp) > 0  # the export linked in, no plan applied yet
    pristine = _tree_hashes(corp)
    plans = _all_plans(world)
    stats = corpus.apply(world["export"], corp, plans)
    assert stats["counts"]["merged"] == 1 and stats["counts"]["dropped"] == 4
    assert (corp / "_merged/faceset_005").is_dir() and not (corp / "faceset_005").exists()
    assert (corp / "faceset_004/faces/_dropped/zz_two_faces.png").is_file()
    assert (corp / "faceset_004/faces/_dropped" / world["copied"]).is_file()
    m = json.loads((corp / "manifest.json").read_text())
    assert [x["name"] for x in m["merged"]] == ["faceset_005"] and m["merged"][0]["into"] == "faceset_002"
    assert m["dropped"]["faceset_004"] == {"bytedup": 1, "multiface": 1}
    assert m["provenance"][-1]["after"]["active_facesets"] == 4
    # the survivor's bundle now holds the absorbed crops too
    import zipfile
    with zipfile.ZipFile(corp / "faceset_002/faceset_002_all.fsz") as zf:
        assert len(zf.namelist()) == 6
    assert verify([corp], engine, CHECKS) == []
    # a second apply is a no-op
    again = corpus.apply(world["export"], corp, plans)
    assert again["operations"] == 0 and again["rezipped"] == []
    # undo restores the tree byte for byte
    corpus.undo(corp)
    assert _tree_hashes(corp) == pristine
    # and the plans can be applied again after an undo
    assert corpus.apply(world["export"], corp, plans)["counts"] == stats["counts"]


def test_raising_neardup_threshold_returns_crops(world, tmp_path):
    corp = tmp_path / "corpus"
    corpus.apply(world["export"], corp, _all_plans(world, neardup=0.95))
    dropped_before = {p.name for p in corp.glob("faceset_001/faces/_dropped/*.png")}
    bundles = {p: p.stat().st_mtime_ns for p in corp.rglob("*.fsz")}
    plans = _all_plans(world, neardup=0.99)
    near = plans[3]["changes"]
    stats = corpus.apply(world["export"], corp, plans)
    dropped_after = {p.name for p in corp.glob("faceset_001/faces/_dropped/*.png")}
    returned = dropped_before - dropped_after
    assert returned and {c["crop"] for c in near} == dropped_after
    assert all((corp / "faceset_001/faces" / n).is_file() for n in returned)
    changed = {str(p.relative_to(corp)) for p, t in bundles.items() if p.stat().st_mtime_ns != t}
    assert changed == set(stats["rezipped"]) and changed <= {"faceset_001/faceset_001_all.fsz",
                                                             "faceset_001/faceset_001_top30.fsz"}
    assert changed  # only the affected faceset's bundles were re-zipped


def test_occlusion_decisions_with_injected_scores(world):
    inv = inventory(world["export"])
    scores = {}
    for f, crops in inv.facesets.items():
        for i, c in enumerate(crops):
            s = {"mask": 0.05, "sunglasses": 0.05, "neutral": 0.9}
            if f == "faceset_003":
                s = {"mask": 0.9, "sunglasses": 0.02, "neutral": 0.08}  # the whole faceset wears masks
            elif f == "faceset_001" and i == 0:
                s = {"mask": 0.1, "sunglasses": 0.75, "neutral": 0.15}  # one crop with sunglasses
            elif f == "faceset_001" and i == 1:
                s = {"mask": 0.2, "sunglasses": 0.65, "neutral": 0.15}  # below the 0.7 image threshold
            scores[f"{f}/faces/{c.name}"] = s
    plan = P.plan_occlusion(inv, scores, CUR["occlusion"])
    quarantined = [(c["faceset"], c["to"]) for c in plan["changes"] if c["action"] == "quarantine"]
    dropped = [(c["faceset"], c["crop"]) for c in plan["changes"] if c["action"] == "drop"]
    assert quarantined == [("faceset_003", "_masked")]
    assert dropped == [("faceset_001", inv.facesets["faceset_001"][0].name)]
    # 40 % dominance: 2 of 5 crops with sunglasses quarantines, 1 of 5 only drops
    crops = inv.facesets["faceset_002"]
    for i, c in enumerate(crops):
        scores[f"faceset_002/faces/{c.name}"] = {"mask": 0, "sunglasses": 0.9 if i < 2 else 0.0, "neutral": 0.1}
    plan = P.plan_occlusion(inv, scores, CUR["occlusion"])
    assert ("faceset_002", "_masked") in [(c["faceset"], c.get("to")) for c in plan["changes"]]
    assert len(crops) == 4  # 2 / 4 = 50 % >= 40 %


def test_multiface_audit_reads_what_the_checks_stored(world, tmp_path):
    """The audit's setting (640, 0.3) is one of verify.checks: once a verify has filled the detection store, the
    audit detects only the crops no bundle holds (the synthesized two-face crop, added to faces/ after the
    bundles were written), and gives the same answers as detecting every crop afresh."""
    from facesets.core.recorded import pixels_digest
    from facesets.core.workitems import read_png
    from facesets.export.verdicts import StoredEngine, open_store
    from facesets.export.verify import verify

    store = open_store(tmp_path / "det.sqlite", str(PACK))
    assert verify([world["export"]], StoredEngine(lambda: world["engine"], store), CHECKS) == []
    crops = sorted(world["export"].glob("faceset_*/faces/*.png"))
    unknown = [c.name for c in crops if store.get(pixels_digest(read_png(str(c))), 640, 0.3) is None]
    assert unknown == ["zz_two_faces.png"]

    res, queue = _audit(world, tmp_path / "a", test_config(), open_store(tmp_path / "det.sqlite", str(PACK)))
    assert len(queue["items"]) == len(crops)
    assert res["detections"] == {"detector_runs": 1, "detections_reused": len(crops) - 1}
    assert res["results"] == _multiface_results(world)
    again, _ = _audit(world, tmp_path / "b", test_config(), open_store(tmp_path / "det.sqlite", str(PACK)))
    assert again["python"] is None and again["detections"]["detector_runs"] == 0


def test_second_interpreter_and_path_mapping(world, tmp_path):
    """The GPU-worker mechanism: the crops the store does not hold are detected by the face worker under
    another interpreter (a separate venv without facesets) through a non-identity path map; its detections
    land in the store, so the next audit runs nothing."""
    import site

    from facesets.export.verdicts import open_store

    env_dir = tmp_path / "worker-venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    sp = next((env_dir / "lib").glob("python3*/site-packages"))
    (sp / "facesets_parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")  # numpy/insightface only
    mapped = tmp_path / "mnt_e"
    mapped.symlink_to(world["tmp"])
    cfg = test_config(workers={"python": str(py), "path_map": [[str(world["tmp"]) + "/", str(mapped) + "/"]]})

    def no_engine():
        raise AssertionError("the worker route built an engine in the pipeline's interpreter")

    store = tmp_path / "det.sqlite"
    res, queue = _audit(world, world["tmp"] / "via-worker", cfg, open_store(store, str(PACK)), no_engine)
    assert res["python"] == str(py) and set(res["results"]) == {it["id"] for it in queue["items"]}
    assert res["detections"]["detector_runs"] == len(queue["items"])
    assert res["results"] == _multiface_results(world)  # same answers as the pipeline's own interpreter
    again, _ = _audit(world, tmp_path / "again", cfg, open_store(store, str(PACK)), no_engine)
    assert again["python"] is None and again["detections"]["detector_runs"] == 0
    assert again["results"] == res["results"]


def test_windows_path_mapping():
    from facesets.curation.workers import map_path

    assert map_path("/mnt/e/photos/x/a.png", [["/mnt/e/", "E:\\"]]) == "E:\\photos\\x\\a.png"
    assert map_path("/data/a.png", [["/mnt/e/", "E:\\"]]) == "/data/a.png"


def test_clip_worker_real_open_clip_random_weights(world, tmp_path):
    """The real open_clip loading and scoring path with a randomly initialised model (no weights offline)."""
    pytest.importorskip("torch", reason="torch is not installed (the optional `clip` extra)")
    import open_clip  # noqa: F401  -- with torch present, open_clip must be importable too

    q, r = tmp_path / "q.json", tmp_path / "r.json"
    settings = dict({k: CUR["occlusion"][k] for k in ("prompts", "batch_size")}, model="ViT-B-32", pretrained=None)
    stage(world["export"], q, settings, [])
    subprocess.run([sys.executable, "scripts/clip_worker.py", str(q), str(r)], check=True,
                   cwd=str(__import__("conftest").REPO))
    res = json.loads(r.read_text())["results"]
    items = json.loads(q.read_text())["items"]
    assert set(res) == {it["id"] for it in items}
    for v in res.values():
        assert set(v) == {"mask", "sunglasses", "neutral"} and abs(sum(v.values()) - 1) < 1e-3
    plan = P.plan_occlusion(inventory(world["export"]), res, CUR["occlusion"])
    assert plan["pass"] == "occlusion" and "skipped" not in plan


# ---------------------------------------------------------------- the CRC ledger behind the re-zip decision
def _count_png_reads(monkeypatch) -> list:
    reads = []
    real = crc_ledger._crc32
    monkeypatch.setattr(crc_ledger, "_crc32", lambda p: reads.append(p) or real(p))
    return reads


def _fresh_files_count_as_settled(monkeypatch):
    # every PNG here was written a moment ago, which the ledger would otherwise not trust yet
    monkeypatch.setattr(crc_ledger, "RACY_NS", 0)


def test_noop_reapply_reads_no_png(world, tmp_path, monkeypatch):
    _fresh_files_count_as_settled(monkeypatch)
    corp = tmp_path / "corpus"
    plans = _all_plans(world)
    first = corpus.apply(world["export"], corp, plans)
    assert first["png_reads"] > 0
    reads = _count_png_reads(monkeypatch)
    again = corpus.apply(world["export"], corp, plans)
    assert again["operations"] == 0 and again["rezipped"] == []
    assert reads == [] and again["png_reads"] == 0


def test_files_changed_just_before_their_read_are_read_again(world, tmp_path, monkeypatch):
    # a rewrite within the same timestamp tick could keep the stat: such files must not be trusted yet
    monkeypatch.setattr(crc_ledger, "RACY_NS", 3600 * 10**9)  # every file here changed less than that ago
    corp = tmp_path / "corpus"
    corpus.apply(world["export"], corp, [])
    reads = _count_png_reads(monkeypatch)
    assert corpus.apply(world["export"], corp, [])["rezipped"] == []
    assert len(reads) == sum(len(c) for c in inventory(world["export"]).facesets.values())


def _member_bytes(bundle, crop_name):
    import zipfile

    with zipfile.ZipFile(bundle) as zf:
        return next(zf.read(n) for n in zf.namelist() if n.endswith(crop_name))


@pytest.mark.parametrize("how", ["in place, mtime restored", "renamed over, mtime restored"])
def test_member_changed_without_new_size_or_mtime_is_rezipped(world, tmp_path, monkeypatch, how):
    _fresh_files_count_as_settled(monkeypatch)
    export = tmp_path / "export"
    shutil.copytree(world["export"], export)  # the corpus hard-links the export: edit a private copy
    corp = tmp_path / "corpus"
    corpus.apply(export, corp, [])
    png = min((corp / "faceset_003/faces").glob("*.png"))
    st = png.stat()
    data = bytearray(png.read_bytes())
    data[len(data) // 2] ^= 0xFF
    if how.startswith("in place"):
        with open(png, "r+b") as fh:
            fh.write(data)
    else:
        tmp = png.with_name("new.tmp")
        tmp.write_bytes(data)
        tmp.replace(png)
    import os
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (png.stat().st_size, png.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    stats = corpus.apply(export, corp, [])
    assert set(stats["rezipped"]) == {"faceset_003/faceset_003_top30.fsz", "faceset_003/faceset_003_all.fsz"}
    assert stats["png_reads"] >= 1
    for b in stats["rezipped"]:
        assert _member_bytes(corp / b, png.name) == bytes(data)
    assert corpus.apply(export, corp, [])["rezipped"] == []


def test_stale_or_broken_ledger_costs_reads_not_decisions(world, tmp_path, monkeypatch):
    """A kill between a re-zip and the ledger write leaves the older ledger behind."""
    _fresh_files_count_as_settled(monkeypatch)
    export = tmp_path / "export"
    shutil.copytree(world["export"], export)
    corp = tmp_path / "corpus"
    corpus.apply(export, corp, [])
    ledger = corp / crc_ledger.CURATION / crc_ledger.PNG_LEDGER
    older = ledger.read_bytes()
    png = min((corp / "faceset_001/faces").glob("*.png"))
    png.write_bytes(png.read_bytes() + b"\0")  # changed: its bundles are re-zipped ...
    assert len(corpus.apply(export, corp, [])["rezipped"]) == 2
    ledger.write_bytes(older)  # ... and the ledger that said so is lost
    stats = corpus.apply(export, corp, [])
    assert stats["rezipped"] == [] and stats["png_reads"] == 1
    ledger.write_text("{not json")
    stats = corpus.apply(export, corp, [])
    assert stats["rezipped"] == [] and stats["png_reads"] == sum(len(c) for c in inventory(export).facesets.values())


def test_a_crop_the_export_renders_again_reaches_the_corpus_and_its_bundles(world, tmp_path, monkeypatch):
    """E.g. after an out_size change the export rewrites crops under the same names: the corpus must not
    keep its hard links to the old ones, and the old one is kept as a backup, not deleted."""
    import os

    _fresh_files_count_as_settled(monkeypatch)
    export = tmp_path / "export"
    shutil.copytree(world["export"], export)
    corp = tmp_path / "corpus"
    corpus.apply(export, corp, [])
    src = min((export / "faceset_002/faces").glob("*.png"))
    old = src.read_bytes()
    new = bytes(old[:-1]) + bytes([old[-1] ^ 0xFF])
    tmp = src.with_name(src.name + ".tmp")
    tmp.write_bytes(new)
    tmp.replace(src)  # how the export writes: a new file renamed over the old
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    stats = corpus.apply(export, corp, [])
    assert (corp / "faceset_002/faces" / src.name).read_bytes() == new
    assert set(stats["rezipped"]) == {"faceset_002/faceset_002_top30.fsz", "faceset_002/faceset_002_all.fsz"}
    for b in stats["rezipped"]:
        assert _member_bytes(corp / b, src.name) == new
    backups = [p for p in (corp / corpus.CURATION / "backups").rglob(src.name)]
    assert [p.read_bytes() for p in backups] == [old]
    again = corpus.apply(export, corp, [])
    assert again["operations"] == 0 and again["rezipped"] == []
