"""verify-fsz: check bundles against roop-unleashed's contract (docs: roop-fsz-contract).

Flat zip; only lower-case .png members at the top level; non-empty; 8-bit 3-channel (no alpha)
`size` x `size`; exactly one face when re-detected at every configured (det_size, threshold).
"""
from __future__ import annotations

import hashlib
import logging
import struct
from pathlib import Path

from tqdm import tqdm

from facesets.core import atomic
from facesets.core.workitems import verify_png
from facesets.export.fsz import PNG_SIG, iter_members, max_png_bytes, open_bundle

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


class LocalMembers:
    """The one-face check of each member in this process, as it is read."""

    def __init__(self, engine, checks):
        self.engine, self.checks = engine, checks

    def check(self, row: dict, data: bytes) -> None:
        row["problem"] = verify_png(self.engine, data, self.checks)

    def finish(self) -> None:
        pass


class WorkerMembers:
    """The one-face checks in the profile's worker interpreter: each distinct member (by content) is written
    once to the stage's work folder, the worker runs the same verify_png on it, and the rows are filled in
    from its verdicts."""

    def __init__(self, worker, checks):
        self.worker, self.checks = worker, checks
        self.staged = worker.work_dir / "staged"
        self.rows: dict[str, list[dict]] = {}

    def check(self, row: dict, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        if sha not in self.rows:
            atomic.write_bytes(self.staged / f"{sha}.png", data)
        self.rows.setdefault(sha, []).append(row)

    def finish(self) -> None:
        if not self.rows:
            return
        items = [{"id": sha, "path": self.worker.map(self.staged / f"{sha}.png")} for sha in self.rows]
        results = self.worker.run(items, self.worker.settings(("detection",), checks=self.checks), clean=False)
        for sha, rows in self.rows.items():
            for row in rows:
                row["problem"] = results[sha].get("problem") or results[sha].get("error")
        self.worker.clean()


def verify(paths: list[str | Path], engine, checks: list[list[float]], size: int = 512,
           max_member_bytes: int = 64 << 20, progress: bool = False, allow_empty: bool = False,
           worker=None) -> list[dict]:
    """One row per violation: bundle, member ('' for the whole file), problem. `worker` (a
    facesets.core.worker_route.Route): the one-face checks run in the profile's worker interpreter."""
    members = WorkerMembers(worker, checks) if worker is not None else LocalMembers(engine, checks)
    rows = []
    bundles = find_bundles(paths)
    if not bundles and not allow_empty:
        rows.append({"bundle": " ".join(map(str, paths)), "member": "", "problem": "no .fsz bundle found"})
    for bundle in tqdm(bundles, desc="verify-fsz", unit="fsz", disable=not progress):
        if not bundle.is_file():
            rows.append({"bundle": str(bundle), "member": "", "problem": "missing"})
            continue
        zf, problem = open_bundle(bundle)
        if problem:
            rows.append({"bundle": str(bundle), "member": "", "problem": problem})
            continue
        # one member in memory at a time, never more than a legitimate size x size PNG can take
        n_members = 0
        with zf:
            for m in iter_members(zf, min(max_member_bytes, max_png_bytes(size))):
                n_members += 1
                row = {"bundle": str(bundle), "member": m.name, "problem": m.problem or png_header_problem(m.data, size)}
                if row["problem"] is None:
                    members.check(row, m.data)  # fills row["problem"] now, or once the worker has run
                rows.append(row)
        if not n_members:
            rows.append({"bundle": str(bundle), "member": "", "problem": "empty bundle (no PNG)"})
    members.finish()
    return [r for r in rows if r["problem"]]


def table(rows: list[dict]) -> str:
    if not rows:
        return "verify-fsz: every bundle passes"
    w1 = max(len(r["bundle"]) for r in rows)
    w2 = max(len(r["member"]) for r in rows + [{"member": "member"}])
    lines = [f"{'bundle':<{w1}}  {'member':<{w2}}  problem", "-" * (w1 + w2 + 12)]
    lines += [f"{r['bundle']:<{w1}}  {r['member']:<{w2}}  {r['problem']}" for r in rows]
    return "\n".join(lines)
