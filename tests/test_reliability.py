"""Odd situations: sources that change under us, a second writer, zip bombs, malformed config."""
import subprocess
import sys
import zipfile

import pytest
from conftest import FACES, PACK, copy_photos, needs_shared, test_config

from facesets.core import config
from facesets.curation import corpus
from facesets.embed.cache import FaceCache
from facesets.export.fsz import read_members

CHECKS = [[640, 0.5], [320, 0.5], [640, 0.3]]


@needs_shared
def test_source_changed_or_gone_between_embed_and_export(tmp_path, engine):
    from facesets.embed.embedder import embed_source
    from facesets.export.exporter import export_bundles, export_crops
    from facesets.export.verify import verify

    src = tmp_path / "src"
    rels = [f"deepface/p01/{n}" for n in ("img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg")]
    copy_photos(src, rels)
    (src / "zz_alias.jpg").write_bytes((src / rels[2]).read_bytes())  # same bytes as img4 elsewhere
    embed_source(src, tmp_path / "store", "s", test_config(), lambda: engine, progress=False)
    FaceCache.load(tmp_path / "store").save(tmp_path / "faces.npz")
    keys = FaceCache.load(tmp_path / "faces.npz").face_keys()
    (src / rels[0]).write_bytes((FACES / "deepface/p03/img8.jpg").read_bytes())  # changed on disk
    (src / rels[1]).unlink()                                                     # gone
    (src / rels[2]).unlink()                                                     # gone, but its alias is there
    index = export_crops(tmp_path / "faces.npz", {"faceset_001": keys}, tmp_path / "out", test_config()["export"],
                         CHECKS, lambda: engine)
    fs = index["facesets"]["faceset_001"]
    reasons = {e["path"]: e["reason"] for e in fs["excluded"]}
    assert reasons["s/" + rels[0]] == "source changed since embed"
    assert reasons["s/" + rels[1]].startswith("source unreadable")
    assert {m["path"] for m in fs["members"]} == {"s/" + rels[2], "s/" + rels[3]}  # read from the alias
    export_bundles(tmp_path / "out", 30)
    assert verify([tmp_path / "out"], engine, CHECKS) == []


def test_second_curation_writer_is_refused(tmp_path):
    (tmp_path / "export").mkdir()
    corp = tmp_path / "corpus"
    with corpus.locked(corp.resolve() if corp.exists() else corp):
        out = subprocess.run([sys.executable, "-m", "facesets", "undo", str(corp)], capture_output=True, text=True,
                             timeout=60)
    assert out.returncode == 3 and "another facesets process" in out.stderr


def test_zip_bomb_and_unsafe_members_are_not_read(tmp_path):
    bomb = tmp_path / "bomb.fsz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", b"\0" * (8 << 20))  # 8 MB of zeros in a few KB
        zf.writestr("/etc/passwd.png", b"x")
        zf.writestr("../../up.png", b"x")
    members, problem = read_members(bomb, max_member_bytes=64 << 20)
    by = {m.name: m for m in members}
    assert problem is None
    assert "zip bomb" in by["a.png"].problem and by["a.png"].data is None
    assert "unsafe path" in by["/etc/passwd.png"].problem and "unsafe path" in by["../../up.png"].problem
    assert not (tmp_path / "up.png").exists()


@pytest.mark.parametrize("bad, key", [
    ({"cluster": {"threshold": 2.5}}, "cluster.threshold"),
    ({"refine": {"min_faces": "many"}}, "refine.min_faces"),
    ({"export": {"top_n": 0}}, "export.top_n"),
    ({"curation": {"neardup": {"similarity": 1.5}}}, "curation.neardup.similarity"),
    ({"exprot": {}}, "exprot"),
])
def test_malformed_config_names_the_key(bad, key):
    with pytest.raises(config.ConfigError) as err:
        config.validate(bad)
    assert key.split(".")[-1] in str(err.value) and key.split(".")[0] in str(err.value)


@needs_shared
def test_cli_refuses_bad_config_before_any_work(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("refine:\n  merge_threshold: 3.0\n")
    out = subprocess.run([sys.executable, "-m", "facesets", "embed", str(FACES / "deepface/p09"), str(tmp_path / "c"),
                          "--model-pack", str(PACK), "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "refine.merge_threshold" in out.stderr
    assert not (tmp_path / "c").exists()
