"""Anti-aliased alignment: a face's embedding does not depend on the resolution of the photo it is in."""
import cv2
import numpy as np
from conftest import FACES, labels, needs_shared

from facesets.core.engine import aligned_face

pytestmark = needs_shared

BIG_FACE = 400  # px: faces this wide are shrunk > 3x into the 112 px crop, where plain bilinear aliases


def _unit(engine, crops):
    f = np.asarray(engine.rec.get_feat(crops), np.float32).reshape(len(crops), -1)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def test_big_faces_embed_alike_at_full_and_quarter_size(engine):
    """Full-size photo vs the same photo area-reduced 4x: the anti-aliased crop agrees, bilinear does not."""
    from insightface.utils import face_align

    ours, plain = [], []
    for row in labels():
        if int(row["faces_detected"]) == 0:
            continue
        img = cv2.imread(str(FACES / row["path"]))
        if img is None:
            continue
        det = engine.detect(img)
        wide = (det.bboxes[:, 2] - det.bboxes[:, 0]) >= BIG_FACE
        if not wide.any():
            continue
        small = cv2.resize(img, (img.shape[1] // 4, img.shape[0] // 4), interpolation=cv2.INTER_AREA)
        f = small.shape[1] / img.shape[1]
        for k in det.kps[wide]:
            ks = (k + 0.5) * f - 0.5  # pixel centres, not corners, scale
            a, b = _unit(engine, [aligned_face(img, k, 112), aligned_face(small, ks, 112)])
            ours.append(float(a @ b))
            a, b = _unit(engine, [face_align.norm_crop(img, k), face_align.norm_crop(small, ks)])
            plain.append(float(a @ b))
    assert len(ours) >= 10, "the shared photos should hold at least 10 faces wider than 400 px"
    ours, plain = np.array(ours), np.array(plain)
    # measured on the shared photos: ours min 0.997 mean 0.999; insightface's norm_crop min 0.938 mean 0.980
    assert ours.mean() >= 0.995 and ours.min() >= 0.99
    assert ours.mean() > plain.mean() and ours.min() > plain.min()


def test_small_faces_align_exactly_as_insightface(engine):
    """No supersampling where the crop does not shrink the face: the crop equals norm_crop's."""
    from insightface.utils import face_align

    img = cv2.imread(str(FACES / "deepface/p01/img10.jpg"))
    small = cv2.resize(img, (img.shape[1] // 3, img.shape[0] // 3), interpolation=cv2.INTER_AREA)
    det = engine.detect(small)
    assert len(det) == 1
    assert np.array_equal(aligned_face(small, det.kps[0], 112), face_align.norm_crop(small, det.kps[0]))
