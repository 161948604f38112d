"""audit: check the invariants that say nothing was lost.

- every face of the cache is accounted for (a faceset, a refine removal with its stage, a raw person or
  singleton), every file is face / noface / alias or a skip with its reason;
- every exported crop is still in the corpus (active, in faces/_dropped/, or in a quarantine);
- every bundle of the corpus passes verify-fsz;
- every journal entry not yet undone can be reversed (undo is simulated on the file listing).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from facesets.core import atomic
from facesets.curation.journal import Journal
from facesets.curation.state import QUARANTINES, inventory
from facesets.embed.cache import FaceCache
from facesets.identities.refine import manifest_keys


def faces_accounted(cache: FaceCache, refine_manifest: dict | None, raw_manifest: dict | None) -> list[str]:
    problems = []
    for e in cache.files:
        if e["status"] == "skipped" and not e.get("reason"):
            problems.append(f"file {e['source']}/{e['path']}: skipped without a reason")
        elif e["status"] not in ("face", "noface", "alias", "skipped"):
            problems.append(f"file {e['source']}/{e['path']}: unknown status {e['status']}")
    keys = set(cache.face_keys())
    for label, man in (("refine", refine_manifest), ("raw", raw_manifest)):
        if man is None:
            continue
        if label == "refine":
            listed = manifest_keys(man)
        else:
            listed = [k for faces in man["persons"].values() for k, _ in faces] + [k for k, _ in man["singletons"]]
        problems += [f"face {k}: not accounted for by {label}" for k in sorted(keys - set(listed))]
        problems += [f"face {k}: listed {n} times by {label} (each face belongs in exactly one place)"
                     for k, n in sorted(Counter(listed).items()) if n > 1]
        problems += [f"face {k}: listed by {label} but not in the cache" for k in sorted(set(listed) - keys)]
    return problems


def crops_accounted(export_dir: Path, corpus: Path) -> list[str]:
    problems = []
    inv = inventory(export_dir)
    for f, crops in inv.facesets.items():
        homes = [corpus / f] + [corpus / q / f for q in QUARANTINES]
        home = next((h for h in homes if h.is_dir()), None)
        if home is None:
            problems.append(f"faceset {f}: missing from the corpus")
            continue
        for c in crops:
            if not (home / "faces" / c.name).exists() and not (home / "faces" / "_dropped" / c.name).exists():
                problems.append(f"crop {f}/{c.name}: neither active nor in _dropped/")
    return problems


def journal_reversible(corpus: Path) -> list[str]:
    entries = Journal(corpus).entries()
    undone = {r for e in entries if e.get("op") == "undo" for r in e["runs"]}
    todo = [e for e in entries if e.get("kind") == "apply" and e.get("run") not in undone]
    exists = {str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file()}
    present = lambda rel: rel in exists or any(x.startswith(rel + "/") for x in exists)  # noqa: E731

    def move_tree(src: str, dst: str) -> None:
        for x in [x for x in exists if x == src or x.startswith(src + "/")]:
            exists.discard(x)
            exists.add(dst + x[len(src):])

    problems = []
    for e in reversed(todo):
        if e["op"] == "move":
            if present(e["dst"]) and not present(e["src"]):
                move_tree(e["dst"], e["src"])
            elif not present(e["src"]):
                problems.append(f"journal run {e['run']}: cannot undo move {e['src']} -> {e['dst']}: both missing")
        elif e["op"] == "backup":
            if present(e["backup"]):
                exists.discard(e["path"])
                move_tree(e["backup"], e["path"])
            elif not present(e["path"]):  # neither the backup nor the original: undo cannot restore it
                problems.append(f"journal run {e['run']}: {e['path']} and its backup {e['backup']} are both missing")
        elif e["op"] == "create":
            exists.discard(e["path"])
    return problems


def audit(cache_path=None, refine_path=None, raw_path=None, export_dir=None, corpus=None, engine=None,
          checks=None, size: int = 512, threads: int = 1) -> list[str]:
    problems: list[str] = []
    if cache_path:
        cache = FaceCache.load(cache_path)
        refine = atomic.read_json(refine_path) if refine_path else None
        raw = atomic.read_json(raw_path) if raw_path else None
        problems += faces_accounted(cache, refine, raw)
    if corpus:
        corpus = Path(corpus)
        if export_dir is None:
            export_dir = corpus.parent / "export"
        if Path(export_dir).is_dir():
            problems += crops_accounted(Path(export_dir), corpus)
        problems += journal_reversible(corpus)
        if engine is not None:
            from facesets.export.verify import verify

            problems += [f"bundle {r['bundle']} {r['member']}: {r['problem']}"
                         for r in verify([corpus], engine, checks, size, allow_empty=True, threads=threads)]
    return problems
