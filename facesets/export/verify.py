"""verify-fsz: check bundles against roop-unleashed's contract (docs: roop-fsz-contract).

Flat zip; only lower-case .png members at the top level; non-empty; 8-bit 3-channel (no alpha)
`size` x `size`; exactly one face when re-detected at every configured (det_size, threshold). Then, with
`consistency` on, every bundle's members against each other (facesets.export.consistency): rows of kind
"consistency" name a member far from the rest.
"""
from __future__ import annotations

import hashlib
import logging
import struct
import threading
from concurrent.futures import Future
from contextlib import closing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facesets.core import atomic
from facesets.core.analysis import in_order
from facesets.core.recorded import pixels_digest
from facesets.core.workitems import decode, png_image
from facesets.export import consistency
from facesets.export.crops import one_face_problem
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
    """The one-face check of each member in this process, as it is read (from several threads), and with `embed`
    its roop-style embedding for the consistency check (both kept in `store`)."""

    def __init__(self, engine, checks, store=None, embed: bool = False):
        self.engine, self.checks, self.store, self.embed, self.once = engine, checks, store, embed, _Once()

    def _verdict(self, data: bytes) -> tuple[str | None, np.ndarray | None]:
        img = png_image(data)
        if img is None:
            return "undecodable PNG", None
        problem = one_face_problem(self.engine, img, self.checks)
        emb = consistency.roop_embedding(self.engine, img, self.store) if self.embed and problem is None else None
        return problem, emb

    def check(self, row: dict, data: bytes) -> None:
        row["problem"], row["_emb"] = self.once.get(data, lambda sha: self._verdict(data))

    def finish(self) -> None:
        pass


class WorkerMembers:
    """The one-face checks in the profile's worker interpreter. A member whose detections (and, with `embed`,
    embedding) are all in the detection store is settled here; each other distinct member (by content) is
    written once to the stage's work folder, the worker runs the same checks on it, what it ran is stored, and
    the rows are filled in from its verdicts."""

    def __init__(self, worker, checks, store=None, embed: bool = False):
        self.worker, self.checks, self.store, self.embed = worker, checks, store, embed
        self.known = store_only(store) if store is not None else None
        self.staged = worker.work_dir / "staged"
        self.rows: dict[str, list[dict]] = {}
        self.extra: dict[str, dict] = {}  # per staged member: its stored keypoints or detections
        self.once, self._lock = _Once(), threading.Lock()

    def _settle(self, sha: str, data: bytes):
        """(problem, embedding) from the store; else the member is staged for the worker (UNSETTLED), with the
        face's stored keypoints at roop's setting when only its embedding is missing (no detection then)."""
        img = png_image(data)
        if img is None:
            return "undecodable PNG", None
        extra: dict = {}
        if self.known is not None:
            problem = settled(one_face_problem, self.known, img, self.checks)
            if problem is not UNSETTLED and (problem is not None or not self.embed):
                return problem, None
            digest = pixels_digest(img)
            if problem is not UNSETTLED:
                emb = self.store.get_embedding(digest)
                if emb is not None:
                    return None, emb
                det = self.store.get(digest, *consistency.ROOP_SETTING)
                if det is not None and len(det) != 1:
                    return None, None  # no single face where roop looks: nothing to compare
                if det is not None:
                    extra["kps"] = det.kps[0].tolist()
            if "kps" not in extra:  # what the store holds goes along: the worker detects only the rest
                known = self.store.known([digest], [*self.checks, consistency.ROOP_SETTING])
                extra.update({"known": known} if known else {})
        atomic.write_bytes(self.staged / f"{sha}.png", data)
        self.extra[sha] = extra
        return UNSETTLED

    def check(self, row: dict, data: bytes) -> None:
        sha, verdict = self.once.get(data, lambda sha: (sha, self._settle(sha, data)))
        if verdict is not UNSETTLED:
            row["problem"], row["_emb"] = verdict
            return
        with self._lock:
            self.rows.setdefault(sha, []).append(row)

    def finish(self) -> None:
        if not self.rows:
            return
        items = [{"id": sha, "path": self.worker.map(self.staged / f"{sha}.png"), **self.extra.get(sha, {})}
                 for sha in sorted(self.rows)]
        settings = self.worker.settings(("detection", "recognition") if self.embed else ("detection",),
                                        checks=self.checks, embed=self.embed)
        results = self.worker.run(items, settings, clean=False)
        if self.store is not None:
            self.store.put_recorded([d for r in results.values() for d in r.get("detections", [])])
        for sha, rows in self.rows.items():
            r = results[sha]
            emb = decode(r.get("embedding"))
            if emb is not None and self.store is not None and self.store.recognizer:
                self.store.put_embedding(r["digest"], emb)
            for row in rows:
                row["problem"], row["_emb"] = r.get("problem") or r.get("error"), emb
        self.worker.clean()


def verify(paths: list[str | Path], engine, checks: list[list[float]], size: int = 512,
           max_member_bytes: int = 64 << 20, progress: bool = False, allow_empty: bool = False,
           worker=None, store=None, threads: int = 1, floor: float | None = None) -> list[dict]:
    """One row per violation: bundle, member ('' for the whole file), problem, kind ("contract", or
    "consistency" for a member whose roop embedding is under `floor` against the rest of its bundle; None: no
    consistency check). `worker` (a facesets.core.worker_route.Route): the checks run in the profile's worker
    interpreter, which fill `store` (the detection store). `threads` bundles are read and checked at once; the
    rows do not depend on it."""
    embed = floor is not None
    members = (WorkerMembers(worker, checks, store, embed) if worker is not None
               else LocalMembers(engine, checks, store, embed))
    per_bundle: list[list[dict]] = []
    bundles = find_bundles(paths)
    if not bundles and not allow_empty:
        per_bundle.append([{"bundle": " ".join(map(str, paths)), "member": "", "problem": "no .fsz bundle found"}])
    limit = min(max_member_bytes, max_png_bytes(size))
    with closing(in_order(lambda b: _bundle_rows(b, size, limit, members), bundles, threads, 2 * max(1, threads))) as done:
        for bundle_rows in tqdm(done, total=len(bundles), desc="verify-fsz", unit="fsz", disable=not progress):
            per_bundle.append(bundle_rows)
    members.finish()
    rows = []
    for bundle_rows in per_bundle:
        rows += [dict(r, kind="contract") for r in bundle_rows if r["problem"]]
        if embed:
            rows += _inconsistent(bundle_rows, floor)
    for r in rows:
        r.pop("_emb", None)
    return rows


def _inconsistent(bundle_rows: list[dict], floor: float) -> list[dict]:
    ok = [r for r in bundle_rows if not r["problem"] and r.get("_emb") is not None]
    flags = consistency.flagged([r["member"] for r in ok], [r["_emb"] for r in ok], floor)
    return [{"bundle": ok[0]["bundle"], "member": m, "problem": consistency.problem(c, len(ok) - 1, floor),
             "kind": "consistency", "cosine": round(c, 4)} for m, c in flags]


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
