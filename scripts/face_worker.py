#!/usr/bin/env python
"""Stand-alone face-model worker: the model part of embed, enrich, the crop checks and verify-fsz.

    python face_worker.py QUEUE.json RESULTS.json
    python face_worker.py --check PHOTO --pack PACK_FOLDER [--providers DmlExecutionProvider,CPUExecutionProvider]

The pipeline runs it with the interpreter a profile names (config workers.python, e.g. a Windows venv with
onnxruntime-directml driven from WSL); the queue's paths are already mapped for that interpreter
(workers.path_map). It needs numpy, opencv-python, pillow, onnxruntime (or onnxruntime-directml /
onnxruntime-gpu) and insightface, and no facesets install: the face code (facesets/core/analysis.py,
engine.py, imageio.py, workitems.py, recorded.py, facesets/export/crops.py, consistency.py) is imported from
the source tree this script lives in, found from the script's own path, so both sides run the very same code.

Each item is worked on once; one that fails is recorded with the reason and the run goes on. Finished items
are appended to RESULTS.json.partial at least every 50 items, and a re-run with the same queue resumes from
there. An interpreter or provider that cannot start prints one line, "face_worker: cannot start: ...", and
exits with status 3. --check runs one photo through the embed path and prints the provider it got.
"""
import json
import os
import signal
import sys
import threading
import time
from contextlib import closing

from worker_io import Partial, atomic_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the source tree, as this interpreter sees it
PREFIX = "face_worker:"
CANNOT_START = 3
FAULT_ENV = "FACESETS_WORKER_FAULT"  # tests: "kill:N" SIGKILLs this process after its N-th item
NEEDS = (("numpy", "numpy"), ("cv2", "opencv-python"), ("PIL", "pillow"),
         ("onnxruntime", "onnxruntime-directml (DirectML), onnxruntime-gpu (CUDA) or onnxruntime"),
         ("insightface", "insightface"))
PROVIDER_BUILDS = {"DmlExecutionProvider": "onnxruntime-directml", "CUDAExecutionProvider": "onnxruntime-gpu",
                   "TensorrtExecutionProvider": "onnxruntime-gpu", "OpenVINOExecutionProvider": "onnxruntime-openvino"}


def say(msg):
    print(f"{PREFIX} {msg}", file=sys.stderr, flush=True)


def cannot_start(what):
    say(f"cannot start: {what}")
    sys.exit(CANNOT_START)


class EngineFailed(Exception):
    """The model could not load, or not on the provider asked for: a start failure, never an item's."""


def prepare(s):
    """Before any work: the Python, and where each package is (only looked up here: numpy / opencv / Pillow are
    imported with the face code, onnxruntime and insightface -- the slow ones -- with the model in a background
    thread while the first photos are read); one line and exit status 3 when any is missing."""
    if sys.version_info < (3, 9):
        cannot_start(f"Python {sys.version.split()[0]} is too old (3.9 or newer is needed)")
    import importlib.util
    import logging

    for module, package in NEEDS:
        if importlib.util.find_spec(module) is None:
            cannot_start(f"{module} is not importable (No module named '{module}'): pip install {package}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format=f"{PREFIX} %(levelname)s %(message)s")
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    return [p for p in s["providers"] if p != "CPUExecutionProvider"]


def face_code():
    """The face code and its numpy / opencv / Pillow (every image plugin too), imported in this thread before
    the model's imports start in another: two threads initialising one C extension can trip over each other."""
    try:
        from PIL import Image

        from facesets.core import workitems

        Image.init()
    except ImportError as exc:
        cannot_start(f"the face code in {REPO} did not import: {type(exc).__name__}: {exc}")
    return workitems


class LazyEngine:
    """The face engine, loading in a background thread while the first photos are read, hashed and decoded
    (as the in-process path builds it on first need); a model call waits for it. Says `ready: ...` with the
    interpreter and the providers the model runs on."""

    def __init__(self, s, wanted):
        self._done, self._engine, self._error, self.providers = threading.Event(), None, None, []
        threading.Thread(target=self._load, args=(s, wanted), daemon=True).start()

    def _load(self, s, wanted):
        try:
            import onnxruntime

            available = onnxruntime.get_available_providers()
            if wanted and not set(wanted) & set(available):
                builds = sorted({PROVIDER_BUILDS.get(p, "the onnxruntime build with it") for p in wanted})
                raise EngineFailed(f"{', '.join(wanted)} is not available in onnxruntime {onnxruntime.__version__} "
                                   f"(it has {', '.join(available)}): pip install {' or '.join(builds)} in this "
                                   "environment")
            from facesets.core import workitems

            engine = workitems.engine_of(s)
            got = engine.det.session.get_providers()
            if wanted and not set(wanted) & set(got):
                raise EngineFailed(f"{', '.join(wanted)} did not start (the model runs on {', '.join(got)})")
            self._engine, self.providers = engine, got
            say(f"ready: python {sys.executable} (Python {sys.version.split()[0]}); onnxruntime "
                f"{onnxruntime.__version__}; providers {', '.join(got)}; pack {s['pack']}")
        except EngineFailed as exc:
            self._error = exc
        except Exception as exc:  # noqa: BLE001 -- any reason the model cannot load is a start failure
            self._error = EngineFailed(f"the face model did not load from {s['pack']}: {type(exc).__name__}: {exc}")
        finally:
            self._done.set()

    def get(self):
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._engine

    def __getattr__(self, name):  # det_thresh, detect, embed, analyze, ...: once the model is there
        return getattr(self.get(), name)


def _kill_after():
    kind, _, n = os.environ.get(FAULT_ENV, "").partition(":")
    return int(n) if kind == "kill" and n else None


def _safe(task):
    def work(item):
        try:
            return task.work(item)
        except EngineFailed:
            raise
        except Exception as exc:  # noqa: BLE001 -- one item that fails is recorded, the run goes on
            return {"error": f"{type(exc).__name__}: {exc}"}
    return work


def main(queue_path, results_path):
    with open(queue_path, encoding="utf-8") as fh:
        queue = json.load(fh)
    s, t0 = queue["settings"], time.time()
    wanted = prepare(s)
    workitems = face_code()  # numpy, opencv, Pillow: here, before the model's imports start beside them
    engine = LazyEngine(s, wanted)
    try:
        done, todo = run(workitems, engine, queue, results_path)
        engine.get()  # a model that cannot load fails the run even when no item needed it
    except EngineFailed as exc:
        cannot_start(str(exc))
    atomic_json(results_path, {"worker": "face", "task": queue["task"], "python": sys.executable,
                               "providers": engine.providers, "results": done})
    Partial(results_path + ".partial", s).remove()
    say(f"finished {len(todo)} items ({len(done) - len(todo)} resumed) in {time.time() - t0:.1f} s")


def run(workitems, engine, queue, results_path):
    """Work on the queue's items not finished by an interrupted run, saving every flush_every (<= 50)."""
    from facesets.core.analysis import in_order

    s, items = queue["settings"], queue["items"]
    task = workitems.task_of(queue["task"], s, engine, queue)
    partial = Partial(results_path + ".partial", s)
    done = partial.load(items)
    for it in items:  # replayed in queue order, as if just worked on
        res = done.get(it["id"])
        if res is not None and task.reusable(res):
            task.took(res)
        else:
            done.pop(it["id"], None)
    if done:
        say(f"resumed {len(done)} of {len(items)} items from partial results")
    todo = [it for it in items if it["id"] not in done]
    flush_every = max(1, min(50, int(s.get("flush_every", 50))))
    kill_after, pending, t0 = _kill_after(), [], time.time()
    with closing(in_order(_safe(task), todo, task.threads, max(2, 2 * task.threads))) as results:
        for n, (it, res) in enumerate(zip(todo, results), 1):
            task.took(res)
            done[it["id"]] = res
            pending.append((it, res))
            if len(pending) >= flush_every:
                partial.append(pending)
                pending = []
                say(f"saved {len(done)}/{len(items)} ({n / max(time.time() - t0, 1e-9):.1f} items/s)")
            if n == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    partial.append(pending)
    return done, todo


def check(argv):
    """One photo through the embed path: the provider it got, the faces found and the time."""
    import argparse

    ap = argparse.ArgumentParser(prog="face_worker.py --check")
    ap.add_argument("--check", required=True, metavar="PHOTO")
    ap.add_argument("--pack", required=True, metavar="PACK_FOLDER")
    ap.add_argument("--providers", default="CPUExecutionProvider")
    ap.add_argument("--det-size", type=int, default=640)
    ap.add_argument("--det-thresh", type=float, default=0.5)
    a = ap.parse_args(argv)
    s = {"pack": a.pack, "providers": a.providers.split(","), "det_size": a.det_size, "det_thresh": a.det_thresh,
         "modules": ["detection", "recognition"], "threads": 0,
         "embed": {"decode_long_side": 800, "rec_min_face": 112, "det_recheck_margin": 0.03,
                   "max_image_pixels": 250_000_000, "io_threads": 1}}
    wanted = prepare(s)
    workitems = face_code()
    engine = LazyEngine(s, wanted)
    try:
        engine.get()
    except EngineFailed as exc:
        cannot_start(str(exc))
    providers = engine.providers
    t0 = time.time()
    res = _safe(workitems.task_of("embed", s, engine, {}))({"id": a.check, "path": a.check})
    ms = (time.time() - t0) * 1000
    why = res.get("error") or res.get("skip")
    if why:  # the interpreter and provider work; this photo is what cannot be used
        say(f"check {a.check}: not analysed ({why}); providers {', '.join(providers)}")
        return 0
    scores = workitems.decode(res["rows"]["det_score"]).tolist()
    say(f"check {a.check}: {len(scores)} faces (det_score {', '.join(f'{x:.2f}' for x in scores) or '-'}), "
        f"sha256 {res['sha256'][:16]}, {ms:.0f} ms; providers {', '.join(providers)}")
    return 0


if __name__ == "__main__":
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(encoding="utf-8", errors="backslashreplace")  # a Windows console's code page
    if "--check" in sys.argv[1:]:
        sys.exit(check(sys.argv[1:]))
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
