#!/usr/bin/env python
"""Stand-alone multi-face audit worker: re-detect every crop of a queue and record its faces.

    python multiface_worker.py QUEUE.json RESULTS.json

Needs only numpy, opencv, onnxruntime and insightface, so any interpreter with those runs it (e.g. a
Windows DirectML venv driven from WSL: paths in the queue are already mapped for that interpreter).
Resumable: finished items are flushed to RESULTS.json.partial every 50 crops and skipped on restart.
"""
import os
import sys
import time

from worker_io import atomic_json as _atomic_json
from worker_io import load_queue


def main(queue_path, results_path):
    import cv2
    import numpy as np
    from insightface.app import FaceAnalysis

    queue, s, done, partial = load_queue(queue_path, results_path)
    app = FaceAnalysis(name=s["pack"], root=os.path.expanduser(s.get("root", "~/.insightface")),
                       providers=s["providers"], allowed_modules=["detection"])
    app.prepare(ctx_id=0 if s["providers"][0] != "CPUExecutionProvider" else -1,
                det_thresh=s["det_thresh"], det_size=(s["det_size"], s["det_size"]))
    todo = [it for it in queue["items"] if it["id"] not in done]
    t0 = time.time()
    for n, it in enumerate(todo, 1):
        data = np.fromfile(it["path"], dtype=np.uint8) if os.path.exists(it["path"]) else None
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
        if img is None:
            done[it["id"]] = {"error": "unreadable", "faces": []}
        else:
            faces = app.get(img)
            done[it["id"]] = {"faces": [{"det_score": round(float(f.det_score), 4),
                                         "short": round(float(min(f.bbox[2] - f.bbox[0], f.bbox[3] - f.bbox[1])), 1)}
                                        for f in faces]}
        if n % 50 == 0:
            _atomic_json(partial, {"settings": s, "results": done})
            print(f"multiface: {n}/{len(todo)} ({n / (time.time() - t0):.1f} img/s)", file=sys.stderr, flush=True)
    out = {"worker": "multiface", "python": sys.executable, "settings": s, "results": done}
    _atomic_json(partial, {"settings": s, "results": done})
    _atomic_json(results_path, out)
    os.remove(partial)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
