"""verify-fsz: check bundles against roop-unleashed's contract (docs: roop-fsz-contract).

Flat zip; only lower-case .png members at the top level; non-empty; 8-bit 3-channel (no alpha)
`size` x `size`; exactly one face when re-detected at every configured (det_size, threshold).
"""
from __future__ import annotations

import hashlib
import logging
import struct
import threading
from concurrent.futures import Future
from contextlib import closing
from pathlib import Path

from tqdm import tqdm

from facesets.core import atomic
from facesets.core.analysis import in_order
from facesets.core.workitems import verify_png
from facesets.export.fsz import PNG_SIG, iter_members, max_png_bytes, open_bundle
from facesets.export.verdicts import UNSETTLED, settled, store_only

log = logging.getLogger(__name__)
SKIP_DIRS = {"_dropped", "_masked", "_merged", "_thin", "_candidates"}


def find_bundles(paths: list[str | Path], include_quarantine: bool = False) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                parts = f.relative_to(p).parts[:-1]
                hidden = any(x.startswith(".") for x in parts)  # .curation backups are not shipped
                if f.suffix.lower() == ".fsz" and not hidden and (include_quarantine or not SKIP_DIRS & set(parts)):
                    out.append(f)
        else:
            out.append(p)
    return out


def png_header_problem(data: bytes, size: int) -> str | None:
    if not data.startswith(PNG_SIG) or data[12:16] != b"IHDR":
        return "not a PNG"
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    if depth != 8:
        return f"{depth}-bit (must be 8-bit)"
    if ctype != 2:
        kind = {0: "grayscale", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}.get(ctype, f"color type {ctype}")
        return f"{kind} (must be 3-channel RGB)"
    if (w, h) != (size, size):
        return f"{w}x{h} (must be {size}x{size})"
    return None


class _Once:
    """A verdict per distinct member content, computed by the first thread that meets it (a crop is in its
    faceset's top and all bundles, and in both the export and the corpus): the others wait for it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._done: dict[str, Future] = {}

    def get(self, data: bytes, compute):
        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            fut, mine = self._done.get(sha), False
            if fut is None:
                fut, mine = self._done.setdefault(sha, Future()), True
        if mine:
            try:
                fut.set_result(compute(sha))
            except BaseException as exc:
                fut.set_exception(exc)
        return fut.result()


class LocalMembers:
    """The one-face check of each member in this process, as it is read (from several threads)."""

    def __init__(self, engine, checks):
        self.engine, self.checks, self.once = engine, checks, _Once()

    def check(self, row: dict, data: bytes) -> None:
        row["problem"] = self.once.get(data, lambda sha: verify_png(self.engine, data, self.checks))

    def finish(self) -> None:
        pass


class WorkerMembers:
    """The one-face checks in the profile's worker interpreter. A member whose detections are all in the
    detection store is settled here; each other distinct member (by content) is written once to the stage's
    work folder, the worker runs the same verify_png on it, its detections are stored, and the rows are filled
    in from its verdicts."""

    def __init__(self, worker, checks, store=None):
        self.worker, self.checks, self.store = worker, checks, store
        self.known = store_only(store) if store is not None else None
        self.staged = worker.work_dir / "staged"
        self.rows: dict[str, list[dict]] = {}
        self.once, self._lock = _Once(), threading.Lock()

    def _settle(self, sha: str, data: bytes):
        if self.known is not None:
            problem = settled(verify_png, self.known, data, self.checks)
            if problem is not UNSETTLED:
                return problem
        atomic.write_bytes(self.staged / f"{sha}.png", data)
        return UNSETTLED

    def check(self, row: dict, data: bytes) -> None:
        problem = self.once.get(data, lambda sha: (sha, self._settle(sha, data)))
        if problem[1] is not UNSETTLED:
            row["problem"] = problem[1]
            return
        with self._lock:
            self.rows.setdefault(problem[0], []).append(row)

    def finish(self) -> None:
        if not self.rows:
            return
        items = [{"id": sha, "path": self.worker.map(self.staged / f"{sha}.png")} for sha in sorted(self.rows)]
        results = self.worker.run(items, self.worker.settings(("detection",), checks=self.checks), clean=False)
        if self.store is not None:
            self.store.put_recorded([d for r in results.values() for d in r.get("detections", [])])
        for sha, rows in self.rows.items():
            for row in rows:
                row["problem"] = results[sha].get("problem") or results[sha].get("error")
        self.worker.clean()


def verify(paths: list[str | Path], engine, checks: list[list[float]], size: int = 512,
           max_member_bytes: int = 64 << 20, progress: bool = False, allow_empty: bool = False,
           worker=None, store=None, threads: int = 1) -> list[dict]:
    """One row per violation: bundle, member ('' for the whole file), problem. `worker` (a
    facesets.core.worker_route.Route): the one-face checks run in the profile's worker interpreter, which fill
    `store` (the detection store). `threads` bundles are read and checked at once; the rows do not depend on it."""
    members = WorkerMembers(worker, checks, store) if worker is not None else LocalMembers(engine, checks)
    rows = []
    bundles = find_bundles(paths)
    if not bundles and not allow_empty:
        rows.append({"bundle": " ".join(map(str, paths)), "member": "", "problem": "no .fsz bundle found"})
    limit = min(max_member_bytes, max_png_bytes(size))
    with closing(in_order(lambda b: _bundle_rows(b, size, limit, members), bundles, threads, 2 * max(1, threads))) as done:
        for bundle_rows in tqdm(done, total=len(bundles), desc="verify-fsz", unit="fsz", disable=not progress):
            rows += bundle_rows
    members.finish()
    return [r for r in rows if r["problem"]]


def _bundle_rows(bundle: Path, size: int, limit: int, members) -> list[dict]:
    if not bundle.is_file():
        return [{"bundle": str(bundle), "member": "", "problem": "missing"}]
    zf, problem = open_bundle(bundle)
    if problem:
        return [{"bundle": str(bundle), "member": "", "problem": problem}]
    rows = []
    with zf:  # one member in memory at a time, never more than a legitimate size x size PNG can take
        for m in iter_members(zf, limit):
            row = {"bundle": str(bundle), "member": m.name, "problem": m.problem or png_header_problem(m.data, size)}
            if row["problem"] is None:
                members.check(row, m.data)  # fills row["problem"] now, or once the worker has run
            rows.append(row)
    if not rows:
        rows.append({"bundle": str(bundle), "member": "", "problem": "empty bundle (no PNG)"})
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return "verify-fsz: every bundle passes"
    w1 = max(len(r["bundle"]) for r in rows)
    w2 = max(len(r["member"]) for r in rows + [{"member": "member"}])
    lines = [f"{'bundle':<{w1}}  {'member':<{w2}}  problem", "-" * (w1 + w2 + 12)]
    lines += [f"{r['bundle']:<{w1}}  {r['member']:<{w2}}  {r['problem']}" for r in rows]
    return "\n".join(lines)
