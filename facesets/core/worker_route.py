"""The pipeline side of the stand-alone face worker (scripts/face_worker.py): where a profile names a worker
interpreter (config workers.python), the model-running part of embed, enrich, the crop checks and verify-fsz
runs there -- e.g. a Windows venv with onnxruntime-directml driven from WSL -- and nothing else does.

A stage lists its work, decides what needs the model and keeps its stores, thresholds and manifests; it hands
the worker a queue (`<work dir>/queue.json`: the task, the settings the worker needs, and the items with
their paths as the worker's interpreter sees them, through workers.path_map) and reads back
`results.json` (a result per item id). The worker's output lines go to the stage's log. Without
workers.python a stage runs in process exactly as before: no extra process, no extra copy of any photo.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from facesets.core import atomic, messages
from facesets.core.errors import WorkerError

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "face_worker.py"
PREFIX = "face_worker: "
READY = "face_worker: ready"
CANNOT_START = "face_worker: cannot start: "
SAVED = re.compile(r"^face_worker: saved (\d+)/")
WORK_DIR = ".workers"  # <folder>/.workers/<task>/: a stage's queue, results, partial results and staged files


def map_path(path: str | Path, path_map: list[list[str]]) -> str:
    """A path as the worker's interpreter sees it: the first matching [from, to] prefix of workers.path_map
    replaced (a Windows target gets backslashes)."""
    s = os.path.abspath(path)
    for src, dst in path_map:
        if s.startswith(src):
            rest = s[len(src):]
            if "\\" in dst:  # a Windows target: its separators too
                rest = rest.replace("/", "\\")
            return dst + rest
    return s


def providers_of(cfg: dict) -> list[str]:
    """The providers the worker asks for: workers.providers, else model.providers."""
    return list(cfg["workers"]["providers"] or cfg["model"]["providers"])


class Route:
    """One stage's way to the worker: its task, the interpreter and path map, and a work folder (queue,
    results, partial results, staged files: `<folder>/.workers/<task>/`) beside the stage's output in the
    results tree, so that the worker reaches it through the same path map."""

    def __init__(self, cfg: dict, task: str, folder: str | Path):
        self.cfg, self.task, self.work_dir = cfg, task, Path(folder) / WORK_DIR / task
        self.python = cfg["workers"]["python"]
        self.path_map = cfg["workers"]["path_map"]

    def map(self, path: str | Path) -> str:
        return map_path(path, self.path_map)

    def pack_folder(self) -> Path:
        from facesets.core import models

        return models.locate(self.cfg["model"]["pack"], self.cfg["model"]["root"])

    def settings(self, modules, threads: int = 0, **extra) -> dict:
        """What every task's worker needs: the model (its folder mapped), providers and how often to save."""
        m = self.cfg["model"]
        return {"pack": self.map(self.pack_folder()), "providers": providers_of(self.cfg), "det_size": m["det_size"],
                "det_thresh": m["det_thresh"], "modules": list(modules), "threads": int(threads),
                "flush_every": min(50, int(self.cfg["embed"]["flush_every"])), **extra}

    def run(self, items: list[dict], settings: dict, clean: bool = True, **extra) -> dict[str, dict]:
        """The worker's result for every item (by id). Raises WorkerError (one line) when the interpreter or
        its provider cannot start, or the worker dies; its partial results stay for the re-run. `clean`:
        remove the work folder afterwards (a stage with staged files calls clean() once it took them)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        queue, results = self.work_dir / "queue.json", self.work_dir / "results.json"
        atomic.write_json(queue, {"task": self.task, "settings": settings, "items": items, **extra}, indent=None)
        results.unlink(missing_ok=True)
        log.info("%s: %d items to the worker (%s)", self.task, len(items), self.python)
        self._spawn([self.map(SCRIPT), self.map(queue), self.map(results)], len(items))
        out = atomic.read_json(results)["results"]
        results.unlink()
        queue.unlink()
        if clean:
            self.clean()
        return out

    def clean(self) -> None:
        """Remove the work folder (and `.workers/` when nothing else is left in it)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.work_dir.parent.rmdir()

    def check(self, photo: str | Path) -> None:
        """`facesets worker-check`: one photo through the worker's embed path; prints its lines."""
        m = self.cfg["model"]
        self._spawn([self.map(SCRIPT), "--check", self.map(photo), "--pack", self.map(self.pack_folder()),
                     "--providers", ",".join(providers_of(self.cfg)), "--det-size", str(m["det_size"]),
                     "--det-thresh", str(m["det_thresh"])], 1, echo=True)

    def _spawn(self, args: list[str], total: int, echo: bool = False) -> None:
        try:
            proc = subprocess.Popen([self.python, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise WorkerError(messages.WORKER_NOT_FOUND.format(python=self.python, reason=exc.strerror or exc)) from None
        ready, cannot, last, saved = False, None, "", 0
        try:
            for line in proc.stdout:
                line = line.rstrip()
                if not line:
                    continue
                if line.startswith(READY):
                    ready = True
                # the worker's own lines go to the log; a start failure and whatever came before the model was
                # ready (tracebacks, insightface's chatter) end up in the one-line error instead, if it fails
                own = line.startswith(PREFIX) and not line.startswith(CANNOT_START)
                log.log(logging.INFO if (own or ready) and not echo else logging.DEBUG, "%s worker: %s", self.task, line)
                if echo and ready:
                    print(line, flush=True)
                last = line
                if line.startswith(CANNOT_START):
                    cannot = line[len(CANNOT_START):]
                elif SAVED.match(line):
                    saved = int(SAVED.match(line).group(1))
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted here (Ctrl-C, a kill of the job): stop the worker too
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if rc == 0:
            return
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        if cannot or not (ready or saved):
            what = cannot or (f"{last} ({how})" if last else how)
            raise WorkerError(messages.WORKER_CANNOT_START.format(python=self.python, task=self.task, what=what))
        raise WorkerError(messages.WORKER_DIED.format(task=self.task, python=self.python, done=saved, total=total,
                                                      what=how))


def route(cfg: dict, task: str, folder: str | Path) -> Route | None:
    """The stage's route to the worker where a profile names a worker interpreter; None: run in process."""
    return Route(cfg, task, folder) if cfg["workers"]["python"] else None
