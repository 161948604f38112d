"""The partial-face gate: faces cut by the photo's edge become no crop; whole faces near the edge still do."""
import csv

import cv2
import numpy as np
import pytest

from conftest import FACES, needs_shared, test_config
from facesets.embed.cache import FaceCache
from facesets.export.exporter import select
from facesets.export.partial import partial_reason, visible_fraction

pytestmark = needs_shared


def test_partial_reason_geometry():
    kps = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    assert partial_reason(np.array([10, 10, 90, 100]), kps, 200, 200, 0.9) is None
    assert "keypoints outside" in partial_reason(np.array([10, 10, 90, 100]), kps, 60, 200, 0.9)
    assert visible_fraction(np.array([-40, 0, 60, 100]), 200, 200) == pytest.approx(0.6)
    assert "inside the photo" in partial_reason(np.array([-40, 0, 60, 100]), kps, 200, 200, 0.9)
    assert partial_reason(np.array([-40, 0, 60, 100]), kps, 0, 0, 0.9) is None  # size unknown: not judged


@pytest.fixture(scope="module")
def cut_cache(tmp_path_factory, engine):
    """Per photo: the whole photo, the photo cut 2 px past the face (whole face at the edge), and the photo
    cut through the face at 30 % and 50 % of its width."""
    from facesets.embed.embedder import embed_source

    src = tmp_path_factory.mktemp("cut") / "src"
    src.mkdir()
    with open(FACES / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["faces_detected"] == "1" and r["identity"] == "deepface/p01"][:4]
    for n, r in enumerate(rows):
        img = cv2.imread(str(FACES / r["path"]))
        det = engine.detect(img)
        x1, _, x2, _ = det.bboxes[0]
        cv2.imwrite(str(src / f"{n}_whole.jpg"), img)
        cv2.imwrite(str(src / f"{n}_edge.jpg"), img[:, : int(min(img.shape[1], x2 + 2))])
        for f in (0.3, 0.5):
            cv2.imwrite(str(src / f"{n}_cut{int(f * 100)}.jpg"), img[:, : int(x1 + f * (x2 - x1))])
    store = src.parent / "store"
    embed_source(src, store, "s", test_config(), lambda: engine, progress=False)
    return FaceCache.load(store)


def test_cut_faces_are_excluded_and_whole_faces_near_the_edge_pass(cut_cache):
    cache = cut_cache
    p = {**test_config()["export"], "outlier_threshold": 2.0, "min_face_short": 0, "burst_similarity": 1.01}
    idx = list(range(len(cache)))
    kept, excluded = select(cache, idx, np.zeros(len(cache)), p)
    kind = {str(cache.face_path[i]).split("/")[-1].split("_")[1].split(".")[0] for i in kept}
    assert kind <= {"whole", "edge"}
    kept_paths = {str(cache.face_path[i]) for i in kept}
    for i in idx:
        path = str(cache.face_path[i])
        if "_whole" in path or "_edge" in path:
            assert path in kept_paths, f"a whole face was gated: {path}"
    partial = [e for e in excluded if e["stage"] == "partial"]
    cut_faces = [i for i in idx if "_cut" in str(cache.face_path[i])]
    assert cut_faces, "the detector found none of the cut faces: the test needs some"
    assert len(partial) == len(cut_faces), (len(partial), len(cut_faces), excluded)
    assert all("edge" in e["reason"] or "inside the photo" in e["reason"] for e in partial)
