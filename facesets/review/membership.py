"""The membership decisions, applied by refine: `remove`, `assign` and `different` (plus `anchors`, which keep
faceset numbers across a fresh results folder).

refine keeps two things apart: its ledger holds the facesets as the thresholds made them, and its manifest is
that ledger with the person's decisions laid over it (`overlay`). So a decision never feeds back into the
clustering it corrects: taking it out of the file gives back exactly the manifest there was before it, and a
new photo folds into the facesets the same way whatever was decided. A removed face is listed under
`removed.decision` (every face stays accounted for once); an assigned face is marked so that export trusts it
(the person's word outranks the export's identity gate).
"""
from __future__ import annotations

import copy
import logging

import numpy as np

from facesets.review.decisions import unapplied

log = logging.getLogger(__name__)
REMOVED = "decision"  # the refine manifest's removed.<stage> of faces the person took out


def _placements(m: dict) -> dict[str, tuple[str, str]]:
    """face key -> (where, which): ("faceset", name), ("quality"|"outlier"|"decision", ""), ("too_small", "")."""
    where = {}
    for name, fs in m["facesets"].items():
        for k, _ in fs["faces"]:
            where[k] = ("faceset", name)
    for stage in ("quality", "outlier", REMOVED):
        for k, *_ in m["removed"].get(stage, []):
            where[k] = (stage, "")
    for g in m["removed"]["too_small"]:
        for k, _ in g["faces"]:
            where[k] = ("too_small", "")
    return where


def _moves(m: dict, part: dict) -> tuple[dict[str, tuple[str, str]], list[dict]]:
    """Where each decided face goes: ("faceset", name) or (REMOVED, faceset it left); and what cannot apply."""
    where, facesets = _placements(m), m["facesets"]
    moves: dict[str, tuple[str, str]] = {}
    bad = []
    for name, keys in sorted(part.get("remove", {}).items()):
        for k in keys:
            if name not in facesets:
                bad.append(unapplied(f"remove {k} from {name}", f"{name} does not exist (any more)"))
            elif k not in where:
                bad.append(unapplied(f"remove {k} from {name}", "no such face in the cache (its photo is gone?)"))
            elif where[k] == ("faceset", name):
                moves[k] = (REMOVED, name)
    for k, name in sorted(part.get("assign", {}).items()):
        if name not in facesets:
            bad.append(unapplied(f"assign {k} to {name}", f"{name} does not exist (any more)"))
        elif k not in where:
            bad.append(unapplied(f"assign {k} to {name}", "no such face in the cache (its photo is gone?)"))
        elif where[k] != ("faceset", name):
            moves[k] = ("faceset", name)
    return moves, bad


def overlay(manifest: dict, part: dict) -> dict:
    """The refine manifest with the person's `remove` and `assign` applied (the input is not changed). With no
    such decision it is the manifest itself, byte for byte."""
    if not part.get("remove") and not part.get("assign"):
        return manifest
    m = copy.deepcopy(manifest)
    moves, bad = _moves(m, part)
    path: dict[str, str] = {}
    for fs in m["facesets"].values():
        path.update((k, p) for k, p in fs["faces"] if k in moves)
        fs["faces"] = [e for e in fs["faces"] if e[0] not in moves]
    for stage in ("quality", "outlier"):
        path.update((e[0], e[1]) for e in m["removed"][stage] if e[0] in moves)
        m["removed"][stage] = [e for e in m["removed"][stage] if e[0] not in moves]
    small = []
    for g in m["removed"]["too_small"]:
        path.update((k, p) for k, p in g["faces"] if k in moves)
        faces = [e for e in g["faces"] if e[0] not in moves]
        if faces:
            small.append({"faces": faces, "n_images": len({p for _, p in faces})})
    m["removed"]["too_small"] = small
    m["removed"][REMOVED] = []
    assigned: dict[str, list[str]] = {}
    for k, name in sorted(part.get("assign", {}).items()):
        if name in m["facesets"] and (k in moves or any(e[0] == k for e in m["facesets"][name]["faces"])):
            assigned.setdefault(name, []).append(k)
    for k, (kind, name) in sorted(moves.items()):
        if kind == "faceset":
            m["facesets"][name]["faces"].append([k, path[k]])
        else:
            m["removed"][REMOVED].append([k, path[k], f"not {name}: removed by the person's decision"])
    _recount(m, assigned)
    m["decisions"] = {"removed": len(m["removed"][REMOVED]), "assigned": sum(map(len, assigned.values())),
                      "unapplied": bad}
    for b in bad:
        log.warning("decision not applied: %s: %s", b["decision"], b["reason"])
    return m


def _recount(m: dict, assigned: dict[str, list[str]]) -> None:
    for name, fs in m["facesets"].items():
        fs["n_faces"] = len(fs["faces"])
        fs["n_images"] = len({p for _, p in fs["faces"]})
        if assigned.get(name):
            fs["assigned"] = assigned[name]
    s = m["stats"]
    placed = sum(fs["n_faces"] for fs in m["facesets"].values())
    s.update(faces_in_facesets=placed, quality_removed_total=len(m["removed"]["quality"]),
             outliers_removed_total=len(m["removed"]["outlier"]),
             too_small_faces_total=sum(len(g["faces"]) for g in m["removed"]["too_small"]),
             decision_removed_total=len(m["removed"][REMOVED]))
    s["accounted"] = placed + s["quality_removed_total"] + s["outliers_removed_total"] + \
        s["too_small_faces_total"] + s["decision_removed_total"] == s["faces"]


# ---------------------------------------------------------------- numbers and "different" in the clustering
def previous_groups(previous: dict | None, anchors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Face keys per faceset number that a re-clustering should keep its number for: the last run's facesets,
    and where there is no last run (a fresh results folder) the anchors the review page wrote."""
    groups = {n: list(keys) for n, keys in (anchors or {}).items()}
    if previous:
        groups.update({n: [k for k, _ in fs["faces"]] for n, fs in previous["facesets"].items()})
    return groups


def apart(owner: dict[int, str], different: list[list[str]]):
    """The splitter refine's centroid merge applies to each merged group (a list of initial clusters, lists of
    face indices): clusters that belong (by most of their faces) to two facesets the person called different
    end up in different groups; None when there is nothing to keep apart."""
    pairs = {frozenset(p) for p in different if len(p) == 2}
    if not pairs:
        return None

    def cluster_owner(c: list[int]) -> str | None:
        votes: dict[str, int] = {}
        for i in c:
            if i in owner:
                votes[owner[i]] = votes.get(owner[i], 0) + 1
        return min(votes, key=lambda n: (-votes[n], n)) if votes else None

    def split(emb: np.ndarray, clusters: list[list[int]]) -> list[list[list[int]]]:
        owners = [cluster_owner(c) for c in clusters]
        if not any(frozenset((a, b)) in pairs for a in owners for b in owners if a and b and a != b):
            return [clusters]
        groups: list[list[int]] = []  # indices into clusters, owned ones first (largest first)
        for ci in sorted((i for i, o in enumerate(owners) if o), key=lambda i: (-len(clusters[i]), i)):
            home = next((g for g in groups if all(frozenset((owners[ci], owners[j])) not in pairs for j in g)), None)
            (home.append(ci) if home is not None else groups.append([ci]))
        cents = np.stack([_centroid(emb, [i for j in g for i in clusters[j]]) for g in groups])
        for ci in (i for i, o in enumerate(owners) if not o):  # the rest join the nearest group
            groups[int(np.argmax(cents @ _centroid(emb, clusters[ci])))].append(ci)
        return [[clusters[j] for j in g] for g in groups]

    return split


def _centroid(emb: np.ndarray, idx: list[int]) -> np.ndarray:
    c = emb[idx].mean(axis=0)
    return c / max(float(np.linalg.norm(c)), 1e-12)


def next_number(groups: dict[str, list[str]]) -> int:
    """The first faceset number after every number `groups` names (numbers are never reused)."""
    nums = [int(n.split("_")[1]) for n in groups if n.split("_")[1:2] and n.split("_")[1].isdigit()]
    return max(nums, default=0) + 1
