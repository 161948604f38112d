#!/usr/bin/env python
"""Embed-stage benchmark: facesets' embed_source against the plain per-image insightface loop.

A library of large photos (12 MP JPEGs, 4000x3000 or 3000x4000, quality 92, half of them with an EXIF
rotation tag) is generated once from the shared labelled face photos (upscaled, most placed on a larger
canvas), then both paths run on it in the same process, alternating for --rounds rounds:

  plain     for each file: cv2.imread (full size, EXIF orientation applied) + FaceAnalysis.get
  facesets  facesets.embed.embedder.embed_source into a fresh store (reduced-scale JPEG decode, workers that
            read, hash, decode, detect and embed side by side)

Model loading is excluded from both timings (each engine is built and warmed up first); each path's
fastest round counts, as the machine may be shared. Faces are matched per image by bbox IoU > 0.5; the
report gives images/s of each path, the speed ratio, faces found by each, faces lost (plain found them,
facesets did not) and extra, with their detection scores, and the cosine similarity of matched
embeddings. As a yardstick for that agreement it also runs the plain loop against itself on the same
photos shifted by 2 pixels (--no-floor skips it): the plain loop's own jitter. Absolute times depend on
the machine and its load; the ratio is what counts.

    python benchmarks/bench_embed.py                 # 60 photos, 2 rounds, jitter reference
    python benchmarks/bench_embed.py --quick         # 6 photos, 1 round: a smoke test
    python benchmarks/bench_embed.py --n 120 --json out.json --check

--engine-threads / --plain-threads are experiments: they rebuild the onnxruntime sessions with N
intra-op threads and no spin-waiting (the facesets engine already uses embed.ort_threads, default 1).

The photos and models are read from the shared folders ($FACESETS_SHARED, default ../shared beside the
repository) and never copied into the repository; the generated library lives under --workdir (default:
a folder in the system temp directory) and is reused by later runs.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESETS_SHARED") or REPO.parent / "shared")  # /work/shared beside the repo
DEFAULT_PACK = str(SHARED / "models" / "facepack-sc128")
DEFAULT_DATA = str(SHARED / "data" / "faces")
GEN_VERSION = 1           # bump when the generated images change
LONG, SHORT = 4000, 3000  # 12 MP
SOURCE = "bench"

TARGET_RATIO = 3.0
TARGET_COS = 0.99


def add_common_args(ap, workdir: str, pool: bool = False) -> None:
    """--workdir, --pack, --data and --json, the same in every benchmark (and --pool for those that reuse
    this benchmark's generated photos)."""
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), workdir),
                    help="where generated data and runs go (default: %(default)s)")
    if pool:
        ap.add_argument("--pool", default=os.path.join(tempfile.gettempdir(), "facesets-bench-embed"),
                        help="where the generated photos are kept (default: bench_embed's workdir, shared with it)")
    ap.add_argument("--pack", default=os.environ.get("FACESETS_PACK") or DEFAULT_PACK,
                    help="model pack folder (default: $FACESETS_PACK or %(default)s)")
    ap.add_argument("--data", default=os.environ.get("FACESETS_DATA") or DEFAULT_DATA,
                    help="labelled source photos (default: $FACESETS_DATA or %(default)s)")
    ap.add_argument("--json", help="also write the figures to this JSON file")


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
    """One 12 MP JPEG: the photo scaled onto a canvas with a soft background (and optional grain)."""
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
    tag = {1: 6, 3: 8, 5: 3}.get(i % 6, 1)  # the odd-numbered images carry a rotation tag
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

Face = tuple  # (bbox x1 y1 x2 y2 in full-size upright pixels, embedding, det_score)


def run_plain(app, files: list[Path], root: Path, shift: int = 0) -> dict:
    """The baseline: full-size cv2.imread + FaceAnalysis.get, one image after the other.

    `shift` > 0 drops that many top rows and left columns first (boxes are shifted back): the plain
    loop against itself on an imperceptibly different picture, i.e. its own jitter.
    """
    out: dict[str, list[Face]] = {}
    t_read = t_get = 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    for f in files:
        a = time.perf_counter()
        img = cv2.imread(str(f))
        if shift:
            img = np.ascontiguousarray(img[shift:, shift:])
        b = time.perf_counter()
        faces = app.get(img)
        c = time.perf_counter()
        t_read += b - a
        t_get += c - b
        out[f.relative_to(root).as_posix()] = [
            (np.asarray(fc.bbox, np.float32) + shift, np.asarray(fc.embedding, np.float32), float(fc.det_score))
            for fc in faces
        ]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "faces": out, "t_decode": t_read, "t_infer": t_get}


def run_reference(app, files: list[Path], root: Path) -> dict:
    """The plain loop's full-size decode and detections, embedded with facesets' anti-aliased alignment.

    What facesets would give with no reduced decode at all: comparing facesets with it isolates what the
    reduced decode costs, free of the aliasing that makes the plain loop disagree with itself.
    """
    from facesets.core.engine import aligned_face

    rec = app.models["recognition"]
    out: dict[str, list[Face]] = {}
    for f in files:
        img = cv2.imread(str(f))
        bboxes, kpss = app.det_model.detect(img, max_num=0)
        crops = [aligned_face(img, k, rec.input_size[0]) for k in kpss] if len(bboxes) else []
        feats = np.asarray(rec.get_feat(crops), np.float32).reshape(len(crops), -1) if crops else []
        out[f.relative_to(root).as_posix()] = [(b[:4].astype(np.float32), e, float(b[4])) for b, e in zip(bboxes, feats)]
    return {"faces": out}


class _Probe:
    """Time spent in facesets' per-file read+hash+decode and in faces_of (detect, embed, re-decodes)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.local = threading.local()
        self.read = self.infer = 0.0
        self.redecodes = 0

    def add(self, key: str, dt: float) -> None:
        with self.lock:
            setattr(self, key, getattr(self, key) + dt)


def run_facesets(engine, cfg: dict, root: Path, store_dir: Path) -> dict:
    """facesets.embed.embedder.embed_source into a fresh store, with the engine built beforehand."""
    from facesets.core import imageio
    from facesets.embed import embedder as fe
    from facesets.embed.store import FaceStore

    shutil.rmtree(store_dir, ignore_errors=True)
    probe = _Probe()
    orig_read, orig_faces_of, orig_decode = fe._read, fe.Embedder.faces_of, imageio.decode

    def timed_read(*a, **k):
        t = time.perf_counter()
        try:
            return orig_read(*a, **k)
        finally:
            probe.add("read", time.perf_counter() - t)

    def timed_faces_of(self, r):
        t = time.perf_counter()
        probe.local.inside = True
        try:
            return orig_faces_of(self, r)
        finally:
            probe.local.inside = False
            probe.add("infer", time.perf_counter() - t)

    def counted_decode(*a, **k):
        if getattr(probe.local, "inside", False):  # a larger decode for small faces
            probe.add("redecodes", 1)
        return orig_decode(*a, **k)

    fe._read, fe.Embedder.faces_of, imageio.decode = timed_read, timed_faces_of, counted_decode
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        stats = fe.embed_source(root, store_dir, SOURCE, cfg, lambda: engine, progress=False)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        fe._read, fe.Embedder.faces_of, imageio.decode = orig_read, orig_faces_of, orig_decode

    state = FaceStore(store_dir).load()  # embeddings as stored (L2-normalised), keyed by sha256
    f = state.faces
    rows_by_sha: dict[str, list[int]] = {}
    for i, sha in enumerate(f["sha256"].tolist()):
        rows_by_sha.setdefault(sha, []).append(i)
    out: dict[str, list[Face]] = {}
    for (src, rel), e in state.files.items():
        if src != SOURCE:
            continue
        idx = rows_by_sha.get(e.get("sha256") or "", []) if e["status"] == "face" else []
        out[rel] = [(f["bbox"][i], f["embedding"][i], float(f["det_score"][i])) for i in idx]
    shutil.rmtree(store_dir, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "faces": out, "stats": stats, "t_decode": probe.read,
            "t_infer": probe.infer, "redecodes": probe.redecodes}


def _session_options(threads: int):
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _set_session_threads(engine, threads: int) -> None:
    """Experiment: replace the engine's CPU sessions by ones with `threads` intra-op threads, no spin-waiting
    (what FaceEngine would build if it passed SessionOptions to FaceAnalysis)."""
    import onnxruntime

    for model in (engine.det, engine.rec):
        model.session = onnxruntime.InferenceSession(model.model_file, sess_options=_session_options(threads),
                                                     providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- comparison

def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def compare(ref: dict[str, list[Face]], other: dict[str, list[Face]]) -> dict:
    """Match faces per image by bbox IoU > 0.5 (greedy, best IoU first); cosine of matched embeddings."""
    cos, lost, extra, worst = [], [], [], []
    for rel in sorted(set(ref) | set(other)):
        p, o = ref.get(rel, []), other.get(rel, [])
        pairs = sorted(((_iou(pf[0], of[0]), i, j) for i, pf in enumerate(p) for j, of in enumerate(o)),
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
        lost += [(rel, p[i][0], p[i][2]) for i in range(len(p)) if i not in used_p]
        extra += [(rel, o[j][0], o[j][2]) for j in range(len(o)) if j not in used_o]
    worst.sort()
    c = np.array(cos) if cos else np.array([np.nan])
    return {"matched": len(cos), "cos": cos, "cos_min": float(c.min()), "cos_mean": float(c.mean()),
            "below": int((c < TARGET_COS).sum()), "lost": lost, "extra": extra, "worst": worst[:5],
            "ref_faces": sum(len(v) for v in ref.values()), "other_faces": sum(len(v) for v in other.values())}


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="number of generated 12 MP photos (default 60)")
    ap.add_argument("--quick", action="store_true", help="6 photos, one round, no jitter reference: a smoke test")
    ap.add_argument("--rounds", type=int, default=2,
                    help="run plain and facesets this many times, alternating; each one's fastest round counts "
                         "(default 2)")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the jitter reference (the plain loop against itself on the photos shifted by 2 px)")
    add_common_args(ap, "facesets-bench-embed")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the generated photos")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="sigma of Gaussian grain added to the generated photos (default 0: plain upscales)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a config value for the facesets path, e.g. --set embed.io_threads=2")
    ap.add_argument("--engine-threads", type=int, default=0, metavar="N",
                    help="experiment: rebuild the facesets engine's onnxruntime sessions with N intra-op threads "
                         "and no spin-waiting; 0 = as FaceEngine builds them (default)")
    ap.add_argument("--plain-threads", type=int, default=0, metavar="N",
                    help="experiment: give the plain loop's FaceAnalysis sessions N intra-op threads, no "
                         "spin-waiting; 0 = insightface's defaults (default)")
    ap.add_argument("--check", action="store_true",
                    help=f"exit 1 unless ratio >= {TARGET_RATIO}, min cosine >= {TARGET_COS} and no face is lost")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.no_floor = min(args.n, 6), 1, True

    pack, data = Path(args.pack), Path(args.data)
    if not pack.is_dir():
        sys.exit(f"bench_embed: model pack folder not found: {pack} (set --pack, $FACESETS_PACK or $FACESETS_SHARED)")
    if not (data / "labels.csv").is_file():
        sys.exit(f"bench_embed: shared photo folder not found: {data} (set --data, $FACESETS_DATA or "
                 "$FACESETS_SHARED)")

    import onnxruntime
    from insightface.app import FaceAnalysis

    from facesets.core import config as fsconfig
    from facesets.core.engine import FaceEngine

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
    print(f"pack: {pack}  onnxruntime {onnxruntime.__version__}  cpus: {os.cpu_count()}  "
          f"load average: {os.getloadavg()[0]:.1f}")
    print(f"facesets embed config: {json.dumps(cfg['embed'], sort_keys=True)}")
    if args.engine_threads or args.plain_threads:
        print(f"EXPERIMENT: onnxruntime sessions rebuilt: facesets {args.engine_threads or 'default'}, "
              f"plain {args.plain_threads or 'default'} intra-op thread(s)")

    # both engines are built and warmed up outside the timings
    extra = {"sess_options": _session_options(args.plain_threads)} if args.plain_threads else {}
    app = FaceAnalysis(name=str(pack.resolve()), providers=["CPUExecutionProvider"],
                       allowed_modules=["detection", "recognition"], **extra)
    app.prepare(ctx_id=-1, det_thresh=cfg["model"]["det_thresh"],
                det_size=(cfg["model"]["det_size"], cfg["model"]["det_size"]))
    engine = FaceEngine.from_config(cfg, threads=cfg["embed"]["ort_threads"])  # as the pipeline builds it
    if args.engine_threads:
        _set_session_threads(engine, args.engine_threads)
    warm = cv2.imread(str(files[0]))
    app.get(warm)
    small = cv2.resize(warm, (warm.shape[1] // 4, warm.shape[0] // 4))
    engine.embed(small, engine.detect(small).kps)
    del warm, small

    plain_runs, our_runs = [], []
    store_dir = workdir / f"store-{os.getpid()}"
    for rnd in range(args.rounds):
        plain_runs.append(run_plain(app, files, lib))
        our_runs.append(run_facesets(engine, cfg, lib, store_dir))
        if args.rounds > 1:
            print(f"round {rnd + 1}: plain {len(files) / plain_runs[-1]['wall']:.2f} images/s, "
                  f"facesets {len(files) / our_runs[-1]['wall']:.2f} images/s, "
                  f"ratio {plain_runs[-1]['wall'] / our_runs[-1]['wall']:.2f}x", flush=True)
    plain = min(plain_runs, key=lambda r: r["wall"])
    ours = min(our_runs, key=lambda r: r["wall"])
    cmp_ = compare(plain["faces"], ours["faces"])
    floor = None if args.no_floor else compare(plain["faces"], run_plain(app, files, lib, shift=2)["faces"])
    clean = None if args.no_floor else run_reference(app, files, lib)["faces"]
    vs_clean = None if clean is None else compare(clean, ours["faces"])
    plain_vs_clean = None if clean is None else compare(clean, plain["faces"])

    n = len(files)
    ips_plain, ips_ours = n / plain["wall"], n / ours["wall"]
    ratio = ips_ours / ips_plain
    ok = ratio >= TARGET_RATIO and cmp_["matched"] > 0 and cmp_["cos_min"] >= TARGET_COS and not cmp_["lost"]

    print()
    print(f"plain loop  (cv2.imread + FaceAnalysis.get): {ips_plain:7.2f} images/s  ({plain['wall']:.2f}s, "
          f"cpu {plain['cpu']:.2f}s; decode {plain['t_decode']:.2f}s + inference {plain['t_infer']:.2f}s)")
    print(f"facesets    (embed_source):                  {ips_ours:7.2f} images/s  ({ours['wall']:.2f}s, "
          f"cpu {ours['cpu']:.2f}s; summed over {cfg['embed']['io_threads']} workers: read+hash+decode "
          f"{ours['t_decode']:.2f}s, detect+embed {ours['t_infer']:.2f}s incl. {ours['redecodes']} larger "
          f"decode(s) for small faces or borderline detections)")
    print(f"speed ratio: {ratio:.2f}x   (target >= {TARGET_RATIO:g}x; fastest of {args.rounds} alternating round(s))")
    print(f"faces: plain {cmp_['ref_faces']}, facesets {cmp_['other_faces']}, matched {cmp_['matched']}, "
          f"lost {len(cmp_['lost'])}, extra {len(cmp_['extra'])}")
    print(f"embedding agreement (cosine, matched faces): min {cmp_['cos_min']:.4f}  mean {cmp_['cos_mean']:.4f}  "
          f"below {TARGET_COS}: {cmp_['below']}/{cmp_['matched']}  (target min >= {TARGET_COS})")
    for c, rel, short, iou in cmp_["worst"][:3]:
        print(f"  lowest: {c:.4f}  {rel}  face {short:.0f}px  IoU {iou:.2f}")
    for rel, b, score in cmp_["lost"][:10]:
        print(f"  lost:  {rel}  bbox {' '.join(f'{v:.0f}' for v in b)}  plain det_score {score:.3f}")
    for rel, b, score in cmp_["extra"][:10]:
        print(f"  extra: {rel}  bbox {' '.join(f'{v:.0f}' for v in b)}  facesets det_score {score:.3f}")
    if floor:
        print(f"jitter reference, plain loop vs itself on the photos shifted by 2 px: cosine min "
              f"{floor['cos_min']:.4f} mean {floor['cos_mean']:.4f}, below {TARGET_COS}: "
              f"{floor['below']}/{floor['matched']}, lost {len(floor['lost'])}, extra {len(floor['extra'])}")
        closer = cmp_["cos_mean"] >= floor["cos_mean"] and cmp_["cos_min"] >= floor["cos_min"]
        print(f"  facesets agrees with the plain loop {'at least as closely as' if closer else 'less closely than'} "
              f"the plain loop agrees with itself (min/mean {cmp_['cos_min']:.4f}/{cmp_['cos_mean']:.4f} vs "
              f"{floor['cos_min']:.4f}/{floor['cos_mean']:.4f})")
    if vs_clean:
        print(f"full-size anti-aliased reference (the plain loop's decode and detections, facesets' alignment): "
              f"facesets agrees at cosine min {vs_clean['cos_min']:.4f} mean {vs_clean['cos_mean']:.4f}, below "
              f"{TARGET_COS}: {vs_clean['below']}/{vs_clean['matched']}, lost {len(vs_clean['lost'])}; the plain loop "
              f"at min {plain_vs_clean['cos_min']:.4f} mean {plain_vs_clean['cos_mean']:.4f}")
        for c, rel, short, iou in vs_clean["worst"][:3]:
            print(f"  lowest: {c:.4f}  {rel}  face {short:.0f}px  IoU {iou:.2f}")
    print("RESULT:", "PASS" if ok else "FAIL", "(against the plain loop, as the target is stated)")

    if args.json:
        Path(args.json).write_text(json.dumps({
            "images": n, "plain_images_per_s": ips_plain, "facesets_images_per_s": ips_ours, "ratio": ratio,
            "rounds": [{"plain_s": p["wall"], "facesets_s": o["wall"]} for p, o in zip(plain_runs, our_runs)],
            "plain_faces": cmp_["ref_faces"], "facesets_faces": cmp_["other_faces"], "matched": cmp_["matched"],
            "lost": len(cmp_["lost"]), "extra": len(cmp_["extra"]), "cos_min": cmp_["cos_min"],
            "cos_mean": cmp_["cos_mean"], "cos_below_target": cmp_["below"],
            "plain_decode_s": plain["t_decode"], "plain_infer_s": plain["t_infer"],
            "facesets_read_s": ours["t_decode"], "facesets_infer_s": ours["t_infer"],
            "redecodes": ours["redecodes"], "embed_config": cfg["embed"],
            "engine_threads": args.engine_threads, "plain_threads": args.plain_threads,
            "jitter_reference": None if not floor else {k: floor[k] for k in ("cos_min", "cos_mean", "below",
                                                                                "matched")},
            "antialiased_reference": None if not vs_clean else {
                "facesets": {k: vs_clean[k] for k in ("cos_min", "cos_mean", "below", "matched")},
                "facesets_lost": len(vs_clean["lost"]),
                "plain": {k: plain_vs_clean[k] for k in ("cos_min", "cos_mean", "below", "matched")}},
            "pass": bool(ok),
        }, indent=2))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
