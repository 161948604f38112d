"""The content-addressed detection store: at most one detector run per (PNG, setting, detector); safe under
kill -9 and concurrent processes; a changed pack or setting never reuses a verdict."""
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np

from conftest import REPO
from facesets.core.engine import Detections
from facesets.export.verdicts import DetectionStore


class CountingEngine:
    def __init__(self):
        self.calls = []

    def detect(self, img, det_size=640, det_thresh=0.5):
        self.calls.append((det_size, det_thresh))
        n = 1 if det_thresh >= 0.5 else 2
        return Detections(np.tile(np.array([[1.5, 2.25, 30.125, 40.0]], np.float32), (n, 1)),
                          np.full(n, 0.87654321, np.float32), np.ones((n, 5, 2), np.float32) * 7.5)


def test_one_run_per_png_and_setting(tmp_path):
    eng, store = CountingEngine(), DetectionStore(tmp_path / "d.sqlite", "packA")
    img = np.zeros((8, 8, 3), np.uint8)
    for _ in range(3):
        for size, thresh in ((640, 0.5), (320, 0.5), (640, 0.3)):
            det = store.detect(eng, "sha1", lambda: img, size, thresh)
            assert len(det) == (1 if thresh >= 0.5 else 2)
    assert len(eng.calls) == 3 and store.stats() == {"detector_runs": 3, "detections_reused": 6}
    again = store.get("sha1", 640, 0.5)
    assert again.bboxes.tolist() == [[1.5, 2.25, 30.125, 40.0]] and again.scores[0] == np.float32(0.87654321)
    # a new process (a later job) reuses them too
    later = DetectionStore(tmp_path / "d.sqlite", "packA")
    later.detect(eng, "sha1", lambda: img, 640, 0.5)
    assert len(eng.calls) == 3


def test_changed_pack_or_setting_never_reuses(tmp_path):
    eng = CountingEngine()
    a = DetectionStore(tmp_path / "d.sqlite", "packA")
    a.detect(eng, "sha1", lambda: None, 640, 0.5)
    assert a.get("sha1", 640, 0.4) is None and a.get("sha1", 480, 0.5) is None and a.get("sha2", 640, 0.5) is None
    b = DetectionStore(tmp_path / "d.sqlite", "packB")  # another detector (or engine revision)
    assert b.get("sha1", 640, 0.5) is None
    b.detect(eng, "sha1", lambda: None, 640, 0.5)
    assert len(eng.calls) == 2


WRITER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import numpy as np
    from facesets.core.engine import Detections
    from facesets.export.verdicts import DetectionStore
    store = DetectionStore(sys.argv[1], "packA")
    det = Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.zeros((1, 5, 2), np.float32))
    for i in range(int(sys.argv[2])):
        store.put(f"{{sys.argv[3]}}{{i}}", 640, 0.5, det)
        if sys.argv[4] == "kill" and i == 150:
            os.kill(os.getpid(), signal.SIGKILL)
    """)


def test_kill_minus_9_leaves_a_valid_store(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    db = tmp_path / "d.sqlite"
    out = subprocess.run([sys.executable, str(script), str(db), "1000", "k", "kill"])
    assert out.returncode != 0
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = DetectionStore(db, "packA")
    assert all(store.get(f"k{i}", 640, 0.5) is not None for i in range(150))  # each put is its own transaction
    store.put("after", 640, 0.5, store.get("k0", 640, 0.5))  # and it takes writes again


def test_two_processes_at_once(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    db = tmp_path / "d.sqlite"
    DetectionStore(db, "packA")
    procs = [subprocess.Popen([sys.executable, str(script), str(db), "300", p, "no"]) for p in ("a", "b")]
    reader = DetectionStore(db, "packA")
    seen = 0
    while any(p.poll() is None for p in procs):
        seen = max(seen, sum(reader.get(f"a{i}", 640, 0.5) is not None for i in range(0, 300, 30)))
    assert [p.wait() for p in procs] == [0, 0]
    assert all(reader.get(f"{p}{i}", 640, 0.5) is not None for p in "ab" for i in range(300))


def test_stored_engine_builds_the_engine_only_on_a_miss(tmp_path):
    from facesets.export.verdicts import StoredEngine

    eng, built = CountingEngine(), []

    def factory():
        built.append(1)
        return eng

    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    first = StoredEngine(factory, DetectionStore(tmp_path / "d.sqlite", "packA"))
    for _ in range(2):
        for size, thresh in ((640, 0.5), (320, 0.5), (640, 0.3)):
            first.detect(crop, det_size=size, det_thresh=thresh)
    assert len(eng.calls) == 3 and built == [1]
    # a later process with every verdict stored never builds an engine; the same pixels (a PNG read back) hit
    def no_engine():
        raise AssertionError("the engine was built although every verdict is stored")

    later = StoredEngine(no_engine, DetectionStore(tmp_path / "d.sqlite", "packA"))
    assert len(later.detect(crop.copy(), det_size=640, det_thresh=0.3)) == 2
    other = crop.copy()
    other[0, 0, 0] ^= 1  # one pixel differs: another crop
    assert DetectionStore(tmp_path / "d.sqlite", "packA").get("x", 640, 0.5) is None
    StoredEngine(factory, later.store).detect(other, det_size=640, det_thresh=0.5)
    assert len(eng.calls) == 4


def test_embeddings_are_kept_per_recognizer_and_recorded_detections_fill_the_store(tmp_path):
    """The consistency check's embeddings: bit-exact back, never reused across recognizers; a worker's recorded
    detections (facesets.core.recorded.Recorder) land under the key the pipeline side computes, and a crop
    asked for twice at one setting is detected once."""
    from facesets.core.recorded import Recorder, pixels_digest
    from facesets.export.verdicts import StoredEngine

    emb = np.array([0.1, -2.5, 3.0e-8], np.float32)
    a = DetectionStore(tmp_path / "d.sqlite", "det", "recA")
    a.put_embedding("sha1", emb)
    assert np.array_equal(a.get_embedding("sha1"), emb) and a.get_embedding("sha2") is None
    assert DetectionStore(tmp_path / "d.sqlite", "det", "recB").get_embedding("sha1") is None
    eng, img = CountingEngine(), np.full((8, 8, 3), 9, np.uint8)
    rec = Recorder(eng)
    for _ in range(2):
        rec.detect(img, det_size=640, det_thresh=0.5)
    assert len(eng.calls) == 1 and len(rec.records) == 1 and rec.records[0]["digest"] == pixels_digest(img)
    a.put_recorded(rec.records)
    assert a.stats()["detector_runs"] == 1
    StoredEngine(lambda: eng, a).detect(img, det_size=640, det_thresh=0.5)  # found: the engine is not asked again
    assert len(eng.calls) == 1


def test_two_threads_missing_one_detection_run_it_once(tmp_path):
    import threading
    import time

    class Slow(CountingEngine):
        def detect(self, img, det_size=640, det_thresh=0.5):
            time.sleep(0.2)
            return super().detect(img, det_size, det_thresh)

    eng, store = Slow(), DetectionStore(tmp_path / "d.sqlite", "packA")
    out = []
    threads = [threading.Thread(target=lambda: out.append(store.detect(eng, "sha1", lambda: None, 640, 0.5)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(eng.calls) == 1 and len(out) == 4 and store.stats() == {"detector_runs": 1, "detections_reused": 3}
    store.close()


def test_an_embedding_is_not_reused_under_another_detector(tmp_path):
    a = DetectionStore(tmp_path / "d.sqlite", "detA", "rec")
    a.put_embedding("sha1", np.ones(4, np.float32))
    assert DetectionStore(tmp_path / "d.sqlite", "detB", "rec").get_embedding("sha1") is None
    assert DetectionStore(tmp_path / "d.sqlite", "detA", "rec").get_embedding("sha1") is not None


class _InProcessWorker:
    """Stands in for a worker route: runs the face worker's own task code (facesets.core.workitems) here, with an
    engine that counts what it detects."""

    def __init__(self, work_dir, engine):
        self.work_dir, self.engine, self.queues = work_dir, engine, []

    def map(self, path):
        return str(path)

    def settings(self, modules, **extra):
        return {"modules": list(modules), **extra}

    def run(self, items, settings, clean=True):
        from facesets.core import workitems

        self.queues.append(items)
        task = workitems.task_of("verify", settings, self.engine, {})
        return {it["id"]: task.work(it) for it in items}

    def clean(self):
        pass


def test_the_worker_detects_only_what_the_store_lacks(tmp_path, engine):
    """A member whose detection at one setting is stored goes to the worker with it, and the worker runs the
    other settings only; once all are stored (and the embedding), the worker is not started."""
    import cv2
    from conftest import FACES

    from facesets.export.fsz import write_fsz
    from facesets.export.verdicts import StoredEngine
    from facesets.export.verify import verify

    if not FACES.is_dir():
        import pytest
        pytest.skip("../shared is absent")
    img = cv2.imread(str(next(FACES.glob("deepface/p01/img1.jpg"))))
    det = engine.detect(img)
    x1, y1, x2, y2 = det.bboxes[0]
    side = int(max(x2 - x1, y2 - y1) * 2)
    cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
    crop = cv2.resize(img[max(cy - side // 2, 0):cy + side // 2, max(cx - side // 2, 0):cx + side // 2], (512, 512))
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), crop)
    bundle = tmp_path / "b.fsz"
    write_fsz(bundle, [("a.png", png)])
    checks = [[640, 0.5], [320, 0.5], [640, 0.3]]
    store = DetectionStore(tmp_path / "d.sqlite", "det", "rec")
    StoredEngine(lambda: engine, store).detect(cv2.imread(str(png)), det_size=640, det_thresh=0.5)

    class Counting:
        calls = []

        def __getattr__(self, name):
            return getattr(engine, name)

        def detect(self, im, det_size=640, det_thresh=0.5):
            self.calls.append((det_size, det_thresh))
            return engine.detect(im, det_size=det_size, det_thresh=det_thresh)

    counting = Counting()
    worker = _InProcessWorker(tmp_path / "w", counting)
    assert verify([bundle], None, checks, worker=worker, store=store, floor=0.35) == []
    assert sorted(counting.calls) == [(320, 0.5), (640, 0.3)]  # (640, 0.5) came from the store
    assert store.stats()["detector_runs"] == 1 + 2  # the one stored first, then what the worker ran
    from facesets.core.recorded import pixels_digest
    assert store.get_embedding(pixels_digest(cv2.imread(str(png)))) is not None  # the consistency embedding too
    again = _InProcessWorker(tmp_path / "w2", counting)
    assert verify([bundle], None, checks, worker=again, store=store, floor=0.35) == []
    assert again.queues == [] and len(counting.calls) == 2  # everything stored: no worker at all
