"""Shared by the stand-alone workers (stdlib only, so any interpreter runs them): atomic JSON and the
resumable partial-results file."""
import json
import os


def atomic_json(path, obj):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_queue(queue_path, results_path):
    """(queue, settings, finished results): results of an interrupted run with the same settings resume."""
    with open(queue_path, encoding="utf-8") as fh:
        queue = json.load(fh)
    settings = queue["settings"]
    done = {}
    partial = results_path + ".partial"
    if os.path.exists(partial):
        with open(partial, encoding="utf-8") as fh:
            old = json.load(fh)
        if old.get("settings") == settings:
            done = old["results"]
    return queue, settings, done, partial
