"""Shared by the stand-alone workers (stdlib only, so any interpreter runs them): atomic JSON and the
resumable partial-results files (one JSON file rewritten per flush for the curation workers; `Partial`, an
append-only JSON-lines file, for the face worker, whose results carry embeddings)."""
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


class Partial:
    """Finished items of an interrupted run, for a resume: a header line with the queue's settings, then one
    JSON line per item ({"id", "item", "result"}), appended and fsynced at every flush, so a flush costs only
    the new results. A kill can tear the last line: it is dropped on load."""

    def __init__(self, path, settings):
        self.path, self.settings = path, settings

    def load(self, items):
        """id -> result for the items queued again unchanged (same settings, same item); the file is rewritten
        to exactly those lines so later appends start on a clean line."""
        queued = {it["id"]: it for it in items}
        kept = []
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
            try:
                header = json.loads(lines[0])
            except ValueError:
                header = {}
            if header.get("settings") == self.settings:
                for line in lines[1:]:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        break  # the torn end of a killed flush
                    if queued.get(rec["id"]) == rec["item"]:
                        kept.append(rec)
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps({"settings": self.settings}) + "\n")
            fh.writelines(json.dumps(rec) + "\n" for rec in kept)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        return {rec["id"]: rec["result"] for rec in kept}

    def append(self, pairs):
        if not pairs:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(json.dumps({"id": it["id"], "item": it, "result": res}) + "\n" for it, res in pairs)
            fh.flush()
            os.fsync(fh.fileno())

    def remove(self):
        if os.path.exists(self.path):
            os.remove(self.path)
