"""The face store's flush costs O(new work): older segments are never rewritten."""
import numpy as np

from facesets.embed.store import FaceStore


def _batch(start: int, n_files: int, faces_per_file: int = 2, dim: int = 512):
    files, shas = [], []
    for i in range(start, start + n_files):
        sha = f"{i:064x}"
        shas += [sha] * faces_per_file
        files.append({"source": "s", "path": f"p/{i}.jpg", "sha256": sha, "status": "face", "sig": "x",
                      "size": 1, "mtime_ns": 1, "n_faces": faces_per_file})
    n = len(shas)
    rng = np.random.default_rng(start)
    faces = {"sha256": np.array(shas, dtype="U64"), "face_index": np.tile(np.arange(faces_per_file), n_files).astype(np.int32),
             "bbox": rng.random((n, 4), np.float32), "kps": rng.random((n, 5, 2), np.float32),
             "det_score": rng.random(n, np.float32), "face_short": rng.random(n, np.float32),
             "blur": rng.random(n, np.float32), "emb_norm": rng.random(n, np.float32),
             "embedding": rng.random((n, dim), np.float32)}
    return files, faces


def test_flush_writes_only_the_new_segment(tmp_path):
    store = FaceStore(tmp_path / "c")
    for b in range(40):  # 40 flushes of 50 files = 2,000 files / 4,000 faces already stored
        store.append(*_batch(b * 50, 50))
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in store.segments()}
    new = store.append(*_batch(10_000, 50))
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in store.segments()}
    assert {p: v for p, v in after.items() if p != new} == before  # nothing old touched
    first_size = min(v[1] for v in before.values())
    assert after[new][1] < 1.2 * first_size  # the flush is the size of its own 50 files, not of the store
    state = store.load()
    assert len(state.files) == 2050 and len(state.faces["sha256"]) == 4100


def test_latest_entry_wins_and_removed_disappears(tmp_path):
    store = FaceStore(tmp_path / "c")
    files, faces = _batch(0, 3)
    store.append(files, faces)
    files2, faces2 = _batch(0, 1)
    faces2["embedding"][:] = 7.0  # same content re-embedded later
    store.append(files2, faces2)
    store.append([{"source": "s", "path": "p/2.jpg", "status": "removed"}])
    st = store.load()
    assert set(p for _, p in st.files) == {"p/0.jpg", "p/1.jpg"}
    rows = st.faces["sha256"] == f"{0:064x}"
    assert rows.sum() == 2 and (st.faces["embedding"][rows] == 7.0).all()
    assert (st.faces["sha256"] != f"{2:064x}").all()
    store.compact()
    assert len(store.segments()) == 1
    again = store.load()
    assert again.files == st.files and (again.faces["embedding"] == st.faces["embedding"]).all()
