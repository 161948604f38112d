"""kill -9 in the middle of embed, resume, and compare with an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import FACES, PACK, identity_photos, needs_shared

from facesets.embed.store import FaceStore

pytestmark = needs_shared
FLUSH = 10


def _make_tree(src):
    """~90 distinct files: every identity photo, and each again with a trailing byte (new sha, same picture)."""
    for i, rel in enumerate(identity_photos()):
        data = (FACES / rel).read_bytes()
        for variant, suffix in ((0, b""), (1, b"\0")):
            if variant and i % 2:
                continue
            dst = src / f"v{variant}" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data + suffix)


def _embed_cmd(src, cache, cfg):
    return [sys.executable, "-m", "facesets", "embed", str(src), str(cache), "--model-pack", str(PACK),
            "--config", str(cfg), "--quiet", "--source-name", "lib"]


def _state(cache):
    st = FaceStore(cache).load()
    files = {k: (e["status"], e["sha256"], e.get("n_faces")) for k, e in st.files.items()}
    order = np.lexsort((st.faces["face_index"], st.faces["sha256"]))
    return files, st.faces["sha256"][order], st.faces["embedding"][order], st.faces["bbox"][order]


def test_kill_resume_equals_uninterrupted(tmp_path):
    src = tmp_path / "src"
    _make_tree(src)
    n_files = sum(1 for p in src.rglob("*") if p.is_file())
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"embed:\n  flush_every: {FLUSH}\n  io_threads: 2\n")

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_embed_cmd(src, killed, cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(FaceStore(killed).segments()) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "embed finished before it could be killed; make the tree larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    flushed = FaceStore(killed).load()
    n_flushed = len(flushed.files)
    assert 2 * FLUSH <= n_flushed < n_files
    for seg in FaceStore(killed).segments():  # no segment holds more than one flush of work
        files, _ = FaceStore.read_segment(seg)
        assert len(files) <= FLUSH

    out = subprocess.run(_embed_cmd(src, killed, cfg), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    import json
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    # only the unflushed files are redone: work lost to the kill is bounded by one flush
    assert resumed["embedded"] + resumed["reused"] == n_files - n_flushed
    assert resumed["unchanged"] == n_flushed
    assert not [p for p in killed.rglob("*.tmp")]  # a half-written segment from the kill is swept away

    clean = tmp_path / "clean"
    out = subprocess.run(_embed_cmd(src, clean, cfg), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr

    f1, s1, e1, b1 = _state(killed)
    f2, s2, e2, b2 = _state(clean)
    assert f1 == f2
    assert (s1 == s2).all()
    np.testing.assert_allclose(e1, e2, atol=1e-5)
    np.testing.assert_allclose(b1, b2, atol=1e-3)


def test_second_writer_is_refused(tmp_path):
    from facesets.embed.store import StoreLocked

    store = FaceStore(tmp_path / "c")
    with store.locked():
        proc = subprocess.run(
            [sys.executable, "-m", "facesets", "embed", str(FACES / "deepface/p09"), str(tmp_path / "c"),
             "--model-pack", str(PACK), "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert "another facesets process" in proc.stderr
    assert StoreLocked  # the exception type the CLI maps to exit 3
