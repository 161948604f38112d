"""export-swap and verify-fsz on the real photos with the real model pack."""
import json
import shutil
import zipfile

import cv2
import numpy as np
import pytest
from conftest import FACES, copy_photos, needs_shared, test_config
from PIL import Image, ImageFilter

from facesets.embed.cache import FaceCache
from facesets.export.exporter import export_bundles, export_crops
from facesets.export.fsz import write_fsz
from facesets.export.verify import verify
from facesets.identities import cluster_stage, refine

pytestmark = needs_shared
CHECKS = [[640, 0.5], [320, 0.5], [640, 0.3]]
MULTI = ("photoprism/_multi/", "/_group/", "deepface/p04/img54.jpg")


def _identities(manifest):
    return {n: [k for k, _ in fs["faces"]] for n, fs in manifest["facesets"].items()}


@pytest.fixture(scope="module")
def exported(shared_store, tmp_path_factory, engine):
    store, _ = shared_store
    tmp = tmp_path_factory.mktemp("export")
    cache_path = tmp / "faces.npz"
    cache = FaceCache.load(store)
    cache.save(cache_path)
    params = {**test_config()["refine"], "min_faces": 3}
    man = refine.run(cache_path, tmp / "refined", params)
    raw = cluster_stage.run(cache_path, tmp / "raw", 0.55, 0.5)
    ex = dict(test_config()["export"], candidates=True)
    out = tmp / "swap"
    index = export_crops(cache_path, _identities(man), out, ex, CHECKS, lambda: engine,
                         singletons=[k for k, _ in raw["singletons"]])
    manifest = export_bundles(out, ex["top_n"])
    return cache_path, out, index, manifest


def test_every_bundle_passes_verify(exported, engine):
    _, out, _, manifest = exported
    bundles = list(out.rglob("*.fsz"))
    assert len(bundles) == 2 * sum(1 for f in manifest["facesets"] if f["n_members"])
    assert verify([out], engine, CHECKS) == []
    for b in bundles:
        with zipfile.ZipFile(b) as zf:
            names = zf.namelist()
            assert names and all(n.endswith(".png") and "/" not in n for n in names)
            img = cv2.imdecode(np.frombuffer(zf.read(names[0]), np.uint8), cv2.IMREAD_UNCHANGED)
            assert img.shape == (512, 512, 3) and img.dtype == np.uint8


def test_multi_person_photos_give_only_the_matching_face(exported, engine):
    cache_path, out, index, _ = exported
    cache = FaceCache.load(cache_path)
    emb = dict(zip(cache.face_keys(), cache.embeddings))
    by_photo = {}
    for k, p in zip(cache.face_keys(), cache.face_path.tolist()):
        by_photo.setdefault(p, []).append(k)
    checked = 0
    for name, fs in index["facesets"].items():
        for m in fs["members"]:
            if not any(s in m["path"] for s in MULTI) or len(by_photo[m["path"]]) < 2:
                continue
            crop = cv2.imread(str(out / m["crop"]))
            det = engine.detect(crop)
            assert len(det) == 1, m
            got = engine.embed(crop, det.kps)[0]
            got /= np.linalg.norm(got)
            sims = {k: float(got @ emb[k]) for k in by_photo[m["path"]]}
            assert max(sims, key=sims.get) == m["key"], (m["path"], sims)  # the crop shows its own face
            checked += 1
    assert checked >= 3


def test_manifests_and_exclusions_are_reported(exported):
    _, out, index, manifest = exported
    assert manifest["params"]["top_n"] == 30 and manifest["stats"]["facesets"] == len(index["facesets"])
    for f in manifest["facesets"]:
        per = json.loads((out / f["name"] / "manifest.json").read_text())
        ranks = [m["rank"] for m in per["members"]]
        assert ranks == list(range(1, len(ranks) + 1))
        comps = [m["composite"] for m in per["members"]]
        assert comps == sorted(comps, reverse=True)  # top-N is ordered by the composite score
        for m in per["members"]:
            assert set(m["quality"]) == {"frontality", "det_score", "landmark_symmetry", "face_size", "sharpness"}
            assert all(0 <= v <= 1 for v in m["quality"].values())
        for e in per["excluded"]:
            assert e["stage"] and e["reason"]
    stages = {e["stage"] for fs in index["facesets"].values() for e in fs["excluded"]}
    assert "crop" in stages  # at least one crop failed the one-face check and was left out, with a reason


def test_blurred_copy_ranks_below_its_sharp_original(tmp_path, engine):
    from facesets.embed.embedder import embed_source

    src = tmp_path / "src"
    rels = [f"deepface/p01/{n}" for n in ("img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg")]
    copy_photos(src, rels)
    Image.open(src / rels[0]).filter(ImageFilter.GaussianBlur(6)).save(src / "blurred.jpg", quality=95)
    embed_source(src, tmp_path / "store", "b", test_config(), lambda: engine, progress=False)
    cache = FaceCache.load(tmp_path / "store")
    cache.save(tmp_path / "faces.npz")
    keys = dict(zip(cache.face_path.tolist(), cache.face_keys()))
    sharp, blurred = keys["b/" + rels[0]], keys["b/blurred.jpg"]
    ex = dict(test_config()["export"], burst_similarity=0.999)  # keep both so both are ranked
    index = export_crops(tmp_path / "faces.npz", {"faceset_001": list(keys.values())}, tmp_path / "out", ex,
                         CHECKS, lambda: engine)
    members = {m["key"]: m for m in index["facesets"]["faceset_001"]["members"]}
    assert members[sharp]["quality"]["sharpness"] > members[blurred]["quality"]["sharpness"]
    order = [m["key"] for m in index["facesets"]["faceset_001"]["members"]]
    assert order.index(sharp) < order.index(blurred)
    # at the default near-duplicate threshold the two are one shot and the sharp one is kept
    index = export_crops(tmp_path / "faces.npz", {"faceset_001": list(keys.values())}, tmp_path / "out2",
                         test_config()["export"], CHECKS, lambda: engine)
    fs = index["facesets"]["faceset_001"]
    assert sharp in {m["key"] for m in fs["members"]}
    dup = [e for e in fs["excluded"] if e["key"] == blurred]
    assert dup and dup[0]["stage"] == "near_duplicate" and ("b/" + rels[0]) in dup[0]["reason"]


def test_changed_top_n_rewrites_only_top_bundles(exported, tmp_path):
    _, out, _, _ = exported
    work = tmp_path / "swap"
    shutil.copytree(out, work, copy_function=shutil.copy2)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    export_bundles(work, 2)
    after = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    pngs = [p for p in before if p.suffix == ".png"]
    assert pngs and all(after[p] == before[p] for p in pngs)
    alls = [p for p in before if p.name.endswith("_all.fsz")]
    assert alls and all(after[p] == before[p] for p in alls)
    assert not [p for p in after if p.name.endswith("_top30.fsz")]  # old top bundles replaced
    tops = [p for p in after if p.name.endswith("_top2.fsz")]
    assert tops
    for t in tops:
        with zipfile.ZipFile(t) as zf:
            assert len(zf.namelist()) <= 2


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def test_verify_reports_each_violation(tmp_path, engine, exported):
    _, out, index, _ = exported
    good_png = next(out.rglob("*.png")).read_bytes()
    good = cv2.imdecode(np.frombuffer(good_png, np.uint8), cv2.IMREAD_COLOR)
    two = np.concatenate([cv2.resize(good, (256, 512)), cv2.resize(good, (256, 512))], axis=1)
    rgba = cv2.cvtColor(good, cv2.COLOR_BGR2BGRA)
    blank = np.zeros((512, 512, 3), np.uint8)
    bad = tmp_path / "bad.fsz"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("ok.png", good_png)
        zf.writestr("sub/", b"")
        zf.writestr("sub/inner.png", good_png)
        zf.writestr("UPPER.PNG", good_png)
        zf.writestr("photo.jpg", b"jpg")
        zf.writestr("empty.png", b"")
        zf.writestr("../escape.png", good_png)
        zf.writestr("two.png", _png(two))
        zf.writestr("rgba.png", _png(rgba))
        zf.writestr("small.png", _png(cv2.resize(good, (256, 256))))
        zf.writestr("noface.png", _png(blank))
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "ok.png")
    rows = verify([bad], engine, CHECKS)
    problems = {r["member"]: r["problem"] for r in rows}
    assert "ok.png" not in problems
    for member, word in [("sub/", "directory"), ("sub/inner.png", "top level"), ("UPPER.PNG", "lower-case"),
                         ("photo.jpg", "lower-case"), ("empty.png", "empty"), ("../escape.png", "unsafe"),
                         ("two.png", "2 faces"), ("rgba.png", "RGBA"), ("small.png", "256x256"),
                         ("noface.png", "0 faces"), ("link.png", "symlink")]:
        assert word in problems.get(member, ""), (member, problems.get(member))
    not_zip = tmp_path / "notzip.fsz"
    not_zip.write_text("hello")
    assert "not a zip" in verify([not_zip], engine, CHECKS)[0]["problem"]


def test_verify_cli_exit_code(tmp_path, exported):
    from conftest import PACK

    from facesets.cli import main

    _, out, _, _ = exported
    assert main(["verify-fsz", str(out), "--model-pack", str(PACK), "--quiet"]) == 0
    bad = tmp_path / "bad.fsz"
    write_fsz(bad, [("a.png", next(out.rglob("*.png")))])
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("notes.txt", "x")
    assert main(["verify-fsz", str(bad), "--model-pack", str(PACK), "--quiet"]) == 1


# ---------------------------------------------------------------- reduced-scale decode of the source photos
# stored pixels for each EXIF orientation: the inverse of the turn a viewer applies
_STORED = {1: lambda a: a, 2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
           4: lambda a: cv2.flip(a, 0), 5: cv2.transpose, 6: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
           7: lambda a: cv2.flip(cv2.transpose(a), -1), 8: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE)}


def _jpeg(upright: np.ndarray, orientation: int) -> bytes:
    import io

    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    rgb = cv2.cvtColor(_STORED[orientation](upright), cv2.COLOR_BGR2RGB)
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_libjpeg_padding_lands_where_each_orientation_turns_it():
    from facesets.export.decode import _upright_offset

    pw, ph = 1, 3  # right and bottom of the stored image
    expected = {1: (0, 0), 2: (pw, 0), 3: (pw, ph), 4: (0, ph), 5: (0, 0), 6: (ph, 0), 7: (ph, pw), 8: (0, pw)}
    assert {o: _upright_offset(o, (pw, ph)) for o in expected} == expected


@pytest.mark.parametrize("orientation", range(1, 9))
def test_reduced_decode_crop_matches_full_decode(orientation, engine):
    from facesets.export.crops import dct_reduction, render, roop_frame
    from facesets.export.decode import decode_for_crops

    photo = cv2.imread(str(FACES / "deepface/p01/img4.jpg"))  # one face, frame ~1700 px
    upright = np.ascontiguousarray(photo[:1723, :2493])  # no side a multiple of the 8 px DCT block
    box = engine.detect(upright).bboxes[0]
    assert dct_reduction([box], 0.5, 512) == 2
    data = _jpeg(upright, orientation)
    full, reduced = decode_for_crops(data, 10**9), decode_for_crops(data, 10**9, 2)
    assert full.bgr.shape == upright.shape and reduced.scale == 2
    # both stored sides are odd: libjpeg's last reduced pixel reaches 1 px past the right and the bottom
    assert reduced.offset == {1: (0, 0), 2: (1, 0), 3: (1, 1), 4: (0, 1), 5: (0, 0), 6: (1, 0), 7: (1, 1),
                              8: (0, 1)}[orientation]
    a = render(full.bgr, roop_frame(box, 0.5), 512)
    b = render(reduced.bgr, roop_frame(reduced.to_image(box), 0.5), 512)
    assert a.shape == b.shape == (512, 512, 3) and a.dtype == b.dtype == np.uint8
    assert _mad(a, b) < 2.5, orientation


def test_export_with_reduced_decode_matches_full_decode(tmp_path, engine, monkeypatch):
    from facesets.embed.embedder import embed_source
    from facesets.export import decode as fx
    from facesets.export.crops import dct_reduction

    src = tmp_path / "src"
    copy_photos(src, ["deepface/p01/img1.jpg", "deepface/p03/img49.jpg", "deepface/p04/img3.jpg",
                      "deepface/p04/img54.jpg"])  # frames >= 2x, >= 4x the crop; a small bystander in img54
    turned = cv2.imread(str(FACES / "deepface/p01/img7.jpg"))[:2045, :1361]
    (src / "turned.jpg").write_bytes(_jpeg(np.ascontiguousarray(turned), 6))
    embed_source(src, tmp_path / "store", "r", test_config(), lambda: engine, progress=False)
    FaceCache.load(tmp_path / "store").save(tmp_path / "faces.npz")
    cache = FaceCache.load(tmp_path / "faces.npz")
    ex = dict(test_config()["export"], outlier_threshold=2.0, min_face_short=0, burst_similarity=1.01)
    by_photo = {}
    for i, p in enumerate(cache.face_path.tolist()):
        by_photo.setdefault(p, []).append(cache.faces["bbox"][i])
    # each crop's own frame decides its reduction; a photo is decoded once per distinct reduction
    reductions = {p: {dct_reduction([x], ex["pad_ratio"], ex["out_size"]) for x in b} for p, b in by_photo.items()}
    assert {2, 4} <= set().union(*reductions.values()) and min(reductions["r/turned.jpg"]) > 1
    assert {1, 2} <= reductions["r/deepface/p04/img54.jpg"]  # the bystander's crop from the full decode
    ident = {"faceset_001": cache.face_keys()}
    decoded_at = {False: [], True: []}
    real = fx._decode_reduced
    out = {}
    for mode in (False, True):
        monkeypatch.setattr(fx, "_decode_reduced", lambda d, m, r, mode=mode: decoded_at[mode].append(r) or real(d, m, r))
        out[mode] = export_crops(tmp_path / "faces.npz", ident, tmp_path / f"out-{mode}", ex, CHECKS, lambda: engine,
                                 reduced_decode=mode)
    assert decoded_at[False] == [] and sorted(decoded_at[True]) == sorted(r for rs in reductions.values() for r in rs if r > 1)
    full, reduced = (out[m]["facesets"]["faceset_001"] for m in (False, True))
    assert [m["key"] for m in reduced["members"]] == [m["key"] for m in full["members"]]
    assert len(full["members"]) >= 5
    for m in full["members"]:
        a = cv2.imread(str(tmp_path / "out-False" / m["crop"]), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "out-True" / m["crop"]), cv2.IMREAD_UNCHANGED)
        assert a.shape == b.shape == (512, 512, 3) and a.dtype == b.dtype == np.uint8
        assert _mad(a, b) < 4.0, (m["path"], _mad(a, b))  # a 1 px shift of the same crop costs about 3.5
    export_bundles(tmp_path / "out-True", 30)
    assert verify([tmp_path / "out-True"], engine, CHECKS) == []


def test_a_crop_does_not_depend_on_the_other_crops_rendered_with_it(tmp_path, engine):
    """The big face of a photo with a small bystander renders to the same bytes alone or with the bystander."""
    from facesets.embed.embedder import embed_source
    from facesets.export.crops import dct_reduction

    src = tmp_path / "src"
    copy_photos(src, ["deepface/p04/img54.jpg"])
    embed_source(src, tmp_path / "store", "r", test_config(), lambda: engine, progress=False)
    FaceCache.load(tmp_path / "store").save(tmp_path / "faces.npz")
    cache = FaceCache.load(tmp_path / "faces.npz")
    ex = dict(test_config()["export"], outlier_threshold=2.0, min_face_short=0, burst_similarity=1.01)
    keys = cache.face_keys()
    red = [dct_reduction([b], ex["pad_ratio"], ex["out_size"]) for b in cache.faces["bbox"]]
    big = keys[int(np.argmax(red))]
    assert max(red) > 1 and min(red) == 1  # the case: one crop could be reduced, another cannot
    crops = {}
    for run, members in (("alone", [big]), ("together", keys)):
        out = export_crops(tmp_path / "faces.npz", {"faceset_001": members}, tmp_path / run, ex, [], lambda: engine)
        m = next(m for m in out["facesets"]["faceset_001"]["members"] if m["key"] == big)
        crops[run] = (tmp_path / run / m["crop"]).read_bytes()
    assert crops["alone"] == crops["together"]


def test_threads_change_nothing_but_speed(exported, tmp_path, engine):
    """export_crops and verify with 1 and with 3 threads: the same crops (byte for byte), the same crops.json,
    ledger and verdicts -- and the detector, shared by the threads, stays one engine."""
    cache_path, out, index, _ = exported
    idents = {n: [m["key"] for m in fs["members"]] + [e["key"] for e in fs["excluded"]]
              for n, fs in index["facesets"].items()}
    ex = test_config()["export"]
    runs = {}
    for threads in (1, 3):
        dest = tmp_path / f"t{threads}"
        made = export_crops(cache_path, idents, dest, ex, CHECKS, lambda: engine, threads=threads)
        made.pop("created")
        pngs = {str(p.relative_to(dest)): p.read_bytes() for p in sorted(dest.rglob("*.png"))}
        ledger = (dest / ".crops_ledger.json").read_bytes()
        export_bundles(dest, ex["top_n"])
        runs[threads] = (made, pngs, ledger, verify([dest], engine, CHECKS, threads=threads))
    assert runs[1][1] and runs[1][0]["facesets"]
    assert runs[1] == runs[3]
    bad = tmp_path / "t3" / "bad.fsz"
    write_fsz(bad, [("a.png", next((tmp_path / "t3").rglob("*.png"))), ("b.png", next((tmp_path / "t3").rglob("*.png")))])
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("notes.txt", "x")
    assert [r["member"] for r in verify([tmp_path / "t3"], engine, CHECKS, threads=3)] == ["notes.txt"]


def test_consistency_check_catches_a_planted_stranger(exported, tmp_path, engine):
    """Four crops of one person and one of another in a 5-crop bundle: the stranger is the one member flagged;
    the same four with a fifth of their own pass. Every bundle of the shared photos passes too."""
    from conftest import PACK

    from facesets.export.verdicts import StoredEngine, open_store

    _, out, index, _ = exported
    store = open_store(tmp_path / "det.sqlite", str(PACK))
    stored = StoredEngine(lambda: engine, store)
    assert verify([out], stored, CHECKS, floor=0.35) == []  # every shared bundle, consistency included
    big = sorted((fs for fs in index["facesets"].values() if len(fs["members"]) >= 5), key=lambda fs: -len(fs["members"]))
    person, other = big[0]["members"], big[1]["members"]
    planted = tmp_path / "planted.fsz"
    write_fsz(planted, [(f"{i}.png", out / m["crop"]) for i, m in enumerate(person[:4])] + [("4.png", out / other[0]["crop"])])
    rows = verify([planted], stored, CHECKS, floor=0.35)
    assert [(r["member"], r["kind"]) for r in rows] == [("4.png", "consistency")], rows
    assert "inconsistent: cosine" in rows[0]["problem"] and rows[0]["cosine"] < 0.35
    clean = tmp_path / "clean.fsz"
    write_fsz(clean, [(f"{i}.png", out / m["crop"]) for i, m in enumerate(person[:5])])
    assert verify([clean], stored, CHECKS, floor=0.35) == []
    assert verify([planted], stored, CHECKS) == []  # floor None: no consistency check


def test_verify_cli_reports_inconsistency_by_mode(exported, tmp_path):
    """verify.consistency warn: listed in the JSON, exit 0; fail: exit 1; off: not checked."""
    from conftest import PACK

    from facesets.cli import main

    _, out, index, _ = exported
    big = sorted((fs for fs in index["facesets"].values() if len(fs["members"]) >= 4), key=lambda fs: -len(fs["members"]))
    planted = tmp_path / "planted.fsz"
    write_fsz(planted, [(f"{i}.png", out / m["crop"]) for i, m in enumerate(big[0]["members"][:4])]
              + [("4.png", out / big[1]["members"][0]["crop"])])
    results = {}
    for mode in ("warn", "fail", "off"):
        js = tmp_path / f"{mode}.json"
        rc = main(["verify-fsz", str(planted), "--model-pack", str(PACK), "--quiet", "--json", str(js),
                   "--settings", json.dumps({"verify": {"consistency": mode}})])
        results[mode] = (rc, [r["member"] for r in json.loads(js.read_text())["inconsistent"]])
    assert results == {"warn": (0, ["4.png"]), "fail": (1, ["4.png"]), "off": (0, [])}
