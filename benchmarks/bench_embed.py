#!/usr/bin/env python
"""Embed-stage benchmark: facesets' embed_source against the plain per-image insightface loop.

A library of large photos (12 MP JPEGs, 4000x3000 or 3000x4000, quality 92, some with an EXIF
orientation tag) is generated once from the shared labelled face photos, then both paths run on it in
the same process, one after the other (and again, alternating, with --rounds > 1):

  plain     for each file: cv2.imread (full size, EXIF orientation applied) + FaceAnalysis.get
  facesets  facesets.embed.embed_source into a fresh store (reduced JPEG decode, read-ahead threads)

Model loading is excluded from both timings (each engine is built and warmed up first). Faces are
matched per image by bbox IoU > 0.5; the report gives images/s of each path, the speed ratio, faces
found by each, faces lost (plain found them, facesets did not) and extra, and the cosine similarity
of matched embeddings. Absolute times depend on the machine and its load; the ratio is what counts.

    python benchmarks/bench_embed.py                 # 60 images
    python benchmarks/bench_embed.py --quick         # 6 images: a smoke test
    python benchmarks/bench_embed.py --n 120 --rounds 2 --check

The photos and models are read from the shared folders and never copied into the repository; the
generated library lives under --workdir (default: a folder in the system temp directory).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

DEFAULT_PACK = "/work/shared/models/facepack-sc128"
DEFAULT_DATA = "/work/shared/data/faces"
GEN_VERSION = 1           # bump when the generated images change
LONG, SHORT = 4000, 3000  # 12 MP
SOURCE = "bench"

TARGET_RATIO = 3.0
TARGET_COS = 0.99


# --------------------------------------------------------------------------- library generation

def _source_photos(data: Path) -> list[Path]:
    """Photos with at least one face per labels.csv, in a fixed order, identity photos first."""
    labels = data / "labels.csv"
    if not labels.is_file():
        sys.exit(f"bench_embed: {labels} not found (the shared photo folder is needed)")
    rows = list(csv.DictReader(labels.open(encoding="utf-8")))
    rows = [r for r in rows if int(r["faces_detected"] or 0) >= 1 and (data / r["path"]).is_file()]
    rows.sort(key=lambda r: (r["case"] != "identity", r["path"]))
    if not rows:
        sys.exit(f"bench_embed: no photo with a face listed in {labels}")
    return [data / r["path"] for r in rows]


def _exif_bytes(orientation: int, i: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "facesets-bench"
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = f"2021:0{1 + i % 9}:1{i % 10} 12:00:{i % 60:02d}"
    return exif.tobytes()


# stored pixels = upright image transformed by the inverse of what the viewer applies for the tag
_STORE_FOR_TAG = {
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
}


def _make_image(src: Path, i: int, quality: int, noise: float) -> bytes:
    """One 12 MP JPEG: the photo upscaled onto a canvas with a soft background and mild sensor noise."""
    from PIL import Image

    rng = np.random.default_rng(1000 + i)
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError(f"cannot read {src}")
    h, w = img.shape[:2]
    cw, ch = (LONG, SHORT) if w >= h else (SHORT, LONG)
    # every third image fills the frame; the others sit on a larger canvas (60-95% of it)
    fill = 1.0 if i % 3 == 0 else float(rng.uniform(0.6, 0.95))
    s = min(cw / w, ch / h) * fill
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    interp = cv2.INTER_LANCZOS4 if i % 2 else cv2.INTER_CUBIC
    photo = cv2.resize(img, (nw, nh), interpolation=interp)
    # background: the photo itself reduced to a few pixels and blown up (no detectable faces)
    tiny = cv2.resize(img, (8, 6) if cw > ch else (6, 8), interpolation=cv2.INTER_AREA)
    canvas = cv2.resize(tiny, (cw, ch), interpolation=cv2.INTER_CUBIC)
    x0 = int(rng.integers(0, cw - nw + 1))
    y0 = int(rng.integers(0, ch - nh + 1))
    canvas[y0:y0 + nh, x0:x0 + nw] = photo
    if noise > 0:  # sensor-like noise: full-resolution detail that a plain downscale aliases
        grain = rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
        canvas = np.clip(canvas.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    tag = (1, 6, 1, 8, 1, 3)[i % 6] if i % 2 else 1  # a third of the images carry a rotation tag
    stored = _STORE_FOR_TAG[tag](canvas) if tag != 1 else canvas
    rgb = cv2.cvtColor(stored, cv2.COLOR_BGR2RGB)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, exif=_exif_bytes(tag, i))
    return buf.getvalue()


def build_library(workdir: Path, data: Path, n: int, quality: int, noise: float) -> Path:
    """Generate missing images into workdir/pool and hard-link the first n into workdir/lib-<n>."""
    tag = f"v{GEN_VERSION}-q{quality}" + (f"-noise{noise:g}" if noise > 0 else "")
    pool = workdir / f"pool-{tag}"
    lib = workdir / f"lib-{tag}-n{n}"
    pool.mkdir(parents=True, exist_ok=True)
    names = [f"img_{i:04d}.jpg" for i in range(n)]
    missing = [i for i, nm in enumerate(names) if not (pool / nm).is_file()]
    if missing:
        photos = _source_photos(data)
        t0 = time.perf_counter()
        print(f"generating {len(missing)} 12 MP JPEGs in {pool} ...", flush=True)
        for k, i in enumerate(missing):
            blob = _make_image(photos[i % len(photos)], i, quality, noise)
            tmp = pool / (names[i] + ".tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, pool / names[i])
            if (k + 1) % 10 == 0:
                print(f"  {k + 1}/{len(missing)}", flush=True)
        print(f"  done in {time.perf_counter() - t0:.1f}s", flush=True)
    if lib.is_dir() and sorted(p.name for p in lib.iterdir()) == names:
        return lib
    shutil.rmtree(lib, ignore_errors=True)
    lib.mkdir(parents=True)
    for nm in names:
        try:
            os.link(pool / nm, lib / nm)
        except OSError:
            shutil.copy2(pool / nm, lib / nm)
    return lib


def warm_page_cache(files: list[Path]) -> int:
    total = 0
    for f in files:
        total += len(f.read_bytes())
    return total


# --------------------------------------------------------------------------- the two paths

def run_plain(app, files: list[Path], root: Path) -> dict:
    """The baseline: full-size cv2.imread + FaceAnalysis.get, one image after the other."""
    out: dict[str, list] = {}
    t_read = t_get = 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    for f in files:
        a = time.perf_counter()
        img = cv2.imread(str(f))
        b = time.perf_counter()
        faces = app.get(img)
        c = time.perf_counter()
        t_read += b - a
        t_get += c - b
        out[f.relative_to(root).as_posix()] = [
            (np.asarray(fc.bbox, np.float32), np.asarray(fc.embedding, np.float32)) for fc in faces
        ]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "faces": out, "t_decode": t_read, "t_infer": t_get}


class _Timers:
    """Accumulates time spent in facesets' read/decode workers and in the inference loop."""

    def __init__(self):
        self.lock = threading.Lock()
        self.read = 0.0
        self.infer = 0.0
        self.full_decodes = 0

    def add(self, key: str, dt: float) -> None:
        with self.lock:
            setattr(self, key, getattr(self, key) + dt)


def run_facesets(engine, cfg: dict, root: Path, store_dir: Path) -> dict:
    from facesets import embed as fe
    from facesets import imageio
    from facesets.store import FaceStore

    shutil.rmtree(store_dir, ignore_errors=True)
    timers = _Timers()
    orig_read, orig_faces_of, orig_decode = fe._read, fe.Embedder.faces_of, imageio.decode

    def timed_read(*a, **k):
        t = time.perf_counter()
        try:
            return orig_read(*a, **k)
        finally:
            timers.add("read", time.perf_counter() - t)

    def timed_faces_of(self, r):
        t = time.perf_counter()
        try:
            return orig_faces_of(self, r)
        finally:
            timers.add("infer", time.perf_counter() - t)

    def counted_decode(data, *a, **k):
        if not k.get("long_side"):
            with timers.lock:
                timers.full_decodes += 1
        return orig_decode(data, *a, **k)

    fe._read, fe.Embedder.faces_of, imageio.decode = timed_read, timed_faces_of, counted_decode
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        stats = fe.embed_source(root, store_dir, SOURCE, cfg, lambda: engine, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        fe._read, fe.Embedder.faces_of, imageio.decode = orig_read, orig_faces_of, orig_decode

    state = FaceStore(store_dir).load()
    rows_by_sha: dict[str, list[int]] = {}
    for i, s in enumerate(state.faces["sha256"].tolist()):
        rows_by_sha.setdefault(s, []).append(i)
    out: dict[str, list] = {}
    for (src, rel), e in state.files.items():
        if src != SOURCE:
            continue
        idx = rows_by_sha.get(e.get("sha256") or "", []) if e["status"] == "face" else []
        out[rel] = [(state.faces["bbox"][i], state.faces["embedding"][i]) for i in idx]
    return {"wall": wall, "cpu": cpu, "faces": out, "stats": stats, "t_decode": timers.read, "t_infer": timers.infer,
            "full_decodes": timers.full_decodes}


def _set_session_threads(engine, threads: int) -> None:
    """Replace the engine's CPU sessions by ones with `threads` intra-op threads that do not spin-wait."""
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for model in (engine.det, engine.rec):
        model.session = onnxruntime.InferenceSession(model.model_file, sess_options=so,
                                                     providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- comparison

def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def compare(plain: dict[str, list], ours: dict[str, list]) -> dict:
    cos, lost, extra, worst = [], [], [], []
    for rel in sorted(set(plain) | set(ours)):
        p, o = plain.get(rel, []), ours.get(rel, [])
        pairs = sorted(((_iou(pb, ob), i, j) for i, (pb, _) in enumerate(p) for j, (ob, _) in enumerate(o)),
                       reverse=True)
        used_p, used_o = set(), set()
        for iou, i, j in pairs:
            if iou <= 0.5 or i in used_p or j in used_o:
                continue
            used_p.add(i)
            used_o.add(j)
            pe, oe = p[i][1], o[j][1]
            c = float(np.dot(pe, oe) / (np.linalg.norm(pe) * np.linalg.norm(oe) + 1e-12))
            cos.append(c)
            b = p[i][0]
            worst.append((c, rel, float(min(b[2] - b[0], b[3] - b[1])), iou))
        lost += [(rel, p[i][0]) for i in range(len(p)) if i not in used_p]
        extra += [(rel, o[j][0]) for j in range(len(o)) if j not in used_o]
    worst.sort()
    return {"matched": len(cos), "cos": cos, "lost": lost, "extra": extra, "worst": worst[:5],
            "plain_faces": sum(len(v) for v in plain.values()), "our_faces": sum(len(v) for v in ours.values())}


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="number of generated 12 MP photos (default 60)")
    ap.add_argument("--quick", action="store_true", help="6 photos, one round: a smoke test")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run plain and facesets this many times, alternating; the best round of each counts")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "facesets-bench-embed"),
                    help="where the generated library and the stores go (default: %(default)s)")
    ap.add_argument("--pack", default=os.environ.get("FACESETS_PACK") or DEFAULT_PACK,
                    help="model pack folder (default: $FACESETS_PACK or %s)" % DEFAULT_PACK)
    ap.add_argument("--data", default=os.environ.get("FACESETS_DATA") or DEFAULT_DATA,
                    help="labelled source photos (default: $FACESETS_DATA or %s)" % DEFAULT_DATA)
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the generated photos")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="sigma of Gaussian grain added to the generated photos (default 0: plain upscales)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config value for the facesets path, e.g. --set embed.io_threads=2")
    ap.add_argument("--engine-threads", type=int, default=0, metavar="N",
                    help="experiment: rebuild the facesets engine's onnxruntime sessions with N intra-op threads "
                         "and no spin-waiting (what FaceEngine would do given session options); 0 = as built")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--check", action="store_true",
                    help=f"exit 1 unless ratio >= {TARGET_RATIO}, min cosine >= {TARGET_COS} and no face is lost")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.rounds = min(args.n, 6), 1

    pack, data = Path(args.pack), Path(args.data)
    if not pack.is_dir():
        sys.exit(f"bench_embed: model pack folder not found: {pack} (set --pack or $FACESETS_PACK)")
    if not data.is_dir():
        sys.exit(f"bench_embed: shared photo folder not found: {data} (set --data or $FACESETS_DATA)")

    import onnxruntime
    from insightface.app import FaceAnalysis

    from facesets import config as fsconfig
    from facesets.engine import FaceEngine

    workdir = Path(args.workdir)
    lib = build_library(workdir, data, args.n, args.quality, args.noise)
    files = sorted(lib.glob("*.jpg"))
    nbytes = warm_page_cache(files)

    cfg = fsconfig.defaults()
    cfg["model"]["pack"] = str(pack.resolve())
    for kv in args.set:
        key, _, val = kv.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = json.loads(val)
    cfg = fsconfig.validate(cfg)

    print(f"library: {len(files)} JPEGs, {LONG}x{SHORT}, {nbytes / len(files) / 1e6:.2f} MB each, in {lib}")
    print(f"pack: {pack}  onnxruntime {onnxruntime.__version__}  cpus: {os.cpu_count()}")
    print(f"facesets embed config: {json.dumps(cfg['embed'], sort_keys=True)}"
          + (f"  (engine sessions: {args.engine_threads} intra-op thread(s), no spinning)" if args.engine_threads
             else ""))

    # engines are built and warmed up outside the timings
    app = FaceAnalysis(name=str(pack.resolve()), providers=["CPUExecutionProvider"],
                       allowed_modules=["detection", "recognition"])
    app.prepare(ctx_id=-1, det_thresh=cfg["model"]["det_thresh"],
                det_size=(cfg["model"]["det_size"], cfg["model"]["det_size"]))
    engine = FaceEngine.from_config(cfg)
    if args.engine_threads:
        _set_session_threads(engine, args.engine_threads)
    warm = cv2.imread(str(files[0]))
    app.get(warm)
    small = cv2.resize(warm, (warm.shape[1] // 4, warm.shape[0] // 4))
    det = engine.detect(small)
    engine.embed(small, det.kps)
    del warm, small

    plain_runs, our_runs = [], []
    for rnd in range(args.rounds):
        store_dir = workdir / f"store-{os.getpid()}"
        plain_runs.append(run_plain(app, files, lib))
        our_runs.append(run_facesets(engine, cfg, lib, store_dir))
        shutil.rmtree(store_dir, ignore_errors=True)
        if args.rounds > 1:
            print(f"round {rnd + 1}: plain {len(files) / plain_runs[-1]['wall']:.2f} img/s, "
                  f"facesets {len(files) / our_runs[-1]['wall']:.2f} img/s", flush=True)
    plain = min(plain_runs, key=lambda r: r["wall"])
    ours = min(our_runs, key=lambda r: r["wall"])
    cmp_ = compare(plain["faces"], ours["faces"])

    n = len(files)
    ips_plain, ips_ours = n / plain["wall"], n / ours["wall"]
    ratio = ips_ours / ips_plain
    cos = cmp_["cos"]
    cmin = min(cos) if cos else float("nan")
    cmean = statistics.fmean(cos) if cos else float("nan")
    ok = ratio >= TARGET_RATIO and cos and cmin >= TARGET_COS and not cmp_["lost"]

    print()
    print(f"plain loop  (cv2.imread + FaceAnalysis.get): {ips_plain:7.2f} images/s  "
          f"({plain['wall']:.2f}s, cpu {plain['cpu']:.2f}s; decode {plain['t_decode']:.2f}s, inference {plain['t_infer']:.2f}s)")
    print(f"facesets    (embed_source):                  {ips_ours:7.2f} images/s  "
          f"({ours['wall']:.2f}s, cpu {ours['cpu']:.2f}s; read+hash+decode {ours['t_decode']:.2f}s in {cfg['embed']['io_threads']} "
          f"threads, inference {ours['t_infer']:.2f}s, full-size re-decodes {ours['full_decodes']})")
    print(f"speed ratio: {ratio:.2f}x   (target >= {TARGET_RATIO:g}x)")
    print(f"faces: plain {cmp_['plain_faces']}, facesets {cmp_['our_faces']}, matched {cmp_['matched']}, "
          f"lost {len(cmp_['lost'])}, extra {len(cmp_['extra'])}")
    print(f"embedding agreement (cosine, matched faces): min {cmin:.4f}  mean {cmean:.4f}  "
          f"(target min >= {TARGET_COS})")
    for c, rel, short, iou in cmp_["worst"][:3]:
        print(f"  lowest: {c:.4f}  {rel}  face {short:.0f}px  IoU {iou:.2f}")
    for rel, b in cmp_["lost"][:10]:
        print(f"  lost:  {rel}  bbox {' '.join(f'{v:.0f}' for v in b)}")
    for rel, b in cmp_["extra"][:10]:
        print(f"  extra: {rel}  bbox {' '.join(f'{v:.0f}' for v in b)}")
    print("RESULT:", "PASS" if ok else "FAIL")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "images": n, "plain_images_per_s": ips_plain, "facesets_images_per_s": ips_ours, "ratio": ratio,
            "plain_faces": cmp_["plain_faces"], "facesets_faces": cmp_["our_faces"], "matched": cmp_["matched"],
            "lost": len(cmp_["lost"]), "extra": len(cmp_["extra"]), "cos_min": cmin, "cos_mean": cmean,
            "plain_decode_s": plain["t_decode"], "plain_infer_s": plain["t_infer"],
            "facesets_read_s": ours["t_decode"], "facesets_infer_s": ours["t_infer"],
            "full_decodes": ours["full_decodes"], "embed_config": cfg["embed"], "pass": bool(ok),
        }, indent=2))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
