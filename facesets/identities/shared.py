"""Shared pieces of the identity stages: face keys, centroids, stable numbering, ledgers, folders."""
from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path

import numpy as np

from facesets import __version__
from facesets.core import atomic
from facesets.core.links import safe_dst_name, sync_folder
from facesets.embed.cache import FaceCache

log = logging.getLogger(__name__)
LEDGER = ".ledger.json"  # the last manifest, kept outside Snakemake's outputs so numbering survives reruns


def key_index(cache: FaceCache) -> dict[str, int]:
    return {k: i for i, k in enumerate(cache.face_keys())}


def centroid(emb: np.ndarray) -> np.ndarray:
    c = emb.mean(axis=0)
    return c / max(float(np.linalg.norm(c)), 1e-12)


def centroids(emb: np.ndarray, groups: list[list[int]]) -> np.ndarray:
    if not groups:
        return np.zeros((0, emb.shape[1]), np.float32)
    return np.stack([centroid(emb[g]) for g in groups]).astype(np.float32)


def number_groups(groups: list[list[str]], previous: dict[str, list[str]], prefix: str, next_number: int,
                  width: int = 3) -> tuple[dict[str, list[str]], int]:
    """Name groups of face keys, keeping the previous run's number wherever a group overlaps one.

    Greedy by overlap size: each previous number goes to at most one group; groups that overlap no
    previous group get fresh numbers after the highest ever used (numbers are never reused).
    New groups are numbered largest first, so a fresh run is numbered by size.
    """
    owner = {k: name for name, keys in previous.items() for k in keys}
    pairs = []
    for gi, g in enumerate(groups):
        counts: dict[str, int] = {}
        for k in g:
            if k in owner:
                counts[owner[k]] = counts.get(owner[k], 0) + 1
        pairs += [(n, gi, name) for name, n in counts.items()]
    pairs.sort(key=lambda t: (-t[0], t[1], t[2]))
    named: dict[str, list[str]] = {}
    used_groups: set[int] = set()
    for n, gi, name in pairs:
        if gi in used_groups or name in named:
            continue
        named[name] = groups[gi]
        used_groups.add(gi)
    rest = sorted((gi for gi in range(len(groups)) if gi not in used_groups), key=lambda gi: (-len(groups[gi]), min(groups[gi])))
    for gi in rest:
        named[f"{prefix}_{next_number:0{width}d}"] = groups[gi]
        next_number += 1
    return dict(sorted(named.items())), next_number


def fold_in(emb: np.ndarray, groups: dict[str, list[int]], new: list[int], threshold: float
            ) -> tuple[dict[str, list[int]], list[int]]:
    """Assign each new face to the nearest group centroid within `threshold` (cosine distance).
    Centroids are those of the existing members: additions never move each other."""
    names = [n for n, g in groups.items() if g]
    if not names or not new:
        return {n: [] for n in groups}, list(new)
    cents = centroids(emb, [groups[n] for n in names])
    dist = 1.0 - emb[new] @ cents.T
    best = dist.argmin(axis=1)
    added: dict[str, list[int]] = {n: [] for n in groups}
    left = []
    for face, b, d in zip(new, best, dist[np.arange(len(new)), best]):
        if d <= threshold:
            added[names[b]].append(face)
        else:
            left.append(face)
    return added, left


def header(kind: str, cache_path: str, params: dict) -> dict:
    return {"kind": kind, "version": 1, "tool": f"facesets {__version__}",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cache": str(cache_path), "params": params}


def read_ledger(out_dir: Path, kind: str | None = None) -> dict | None:
    """The stage's previous manifest in `out_dir`; None when there is none, it is unreadable, or it is
    of another `kind` than asked for."""
    p = out_dir / LEDGER
    if not p.is_file():
        return None
    try:
        ledger = atomic.read_json(p)
    except (OSError, ValueError):
        log.warning("ignoring unreadable ledger %s", p)
        return None
    return None if kind is not None and ledger.get("kind") != kind else ledger


def _content(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in ("created", "mode")}


def write_manifest(out_dir: Path, name: str, manifest: dict, previous: dict | None = None,
                   ledger: dict | None = None) -> Path:
    """Write the manifest and the ledger (`ledger`, else the manifest itself: refine's ledger holds its
    facesets before the person's decisions). A re-run that reached the same content as `previous` (only its
    time and how it got there differ) keeps the previous bytes, so an unchanged input is an unchanged file."""
    path = out_dir / name
    if previous is not None and _content(previous) == _content(manifest):
        manifest = previous
    atomic.write_json(path, manifest)
    atomic.write_json(out_dir / LEDGER, manifest if ledger is None else ledger)
    return path


def face_entries(cache: FaceCache, idx: list[int]) -> list[list[str]]:
    keys = cache.face_keys()
    return [[keys[i], str(cache.face_path[i])] for i in idx]


def materialize(out_dir: Path, groups: dict[str, list[list[str]]], cache: FaceCache, mode: str,
                extra: dict[str, list[str]] | None = None, prefix: str = "") -> dict[str, dict]:
    """One folder per group holding every photo (and every alias location) of its faces.
    Folders of groups that no longer exist (`prefix_*`) are emptied of our links and removed."""
    aliases = cache.aliases_of()
    report = {}
    if prefix and out_dir.is_dir():
        for d in out_dir.glob(f"{prefix}_*"):
            if d.is_dir() and d.name not in groups:
                sync_folder(d, {}, mode)
                try:
                    d.rmdir()
                except OSError:
                    log.warning("left %s in place: it holds files this tool did not put there", d)
    folders = {name: [p for _, p in faces] for name, faces in groups.items()}
    folders.update(extra or {})
    for name, paths in folders.items():
        wanted = {}
        for p in dict.fromkeys(paths):
            for loc in [p, *aliases.get(p, [])]:
                src = cache.abs_path(loc)
                wanted[safe_dst_name(src)] = src
        report[name] = sync_folder(out_dir / name, wanted, mode)
    return report
