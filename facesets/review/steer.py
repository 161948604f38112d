"""The decisions the export and the curation plans apply: `hide` (export_crops), `keep` (the passes that drop
crops), `same` and `different` (consolidation).

A plan stays pure: the same export, thresholds and decisions give the same plan. What a decision stopped is
not dropped from the plan but listed under `vetoed` with the decision that stopped it, so the review page and
the report can show it (and undo it); what a decision could not do is listed under `decisions.unapplied`.
"""
from __future__ import annotations

import logging

from facesets.curation.state import Desired, Inventory
from facesets.review.decisions import unapplied

log = logging.getLogger(__name__)


def _warn(bad: list[dict]) -> None:
    for b in bad:
        log.warning("decision not applied: %s: %s", b["decision"], b["reason"])


def hide(meta: dict[str, dict], identities: dict, hidden: list[str]) -> dict | None:
    """Mark the hidden identities in the export's meta (no bundles; the corpus puts them under _hidden/);
    returns what crops.json records of it (None without a hide decision)."""
    if not hidden:
        return None
    bad = []
    for name in hidden:
        if name in identities:
            meta.setdefault(name, {})["hidden"] = True
        else:
            bad.append(unapplied(f"hide {name}", f"{name} does not exist (any more)"))
    _warn(bad)
    return {"decisions": {"hide": sorted(hidden), "unapplied": bad}}


def _stats(changes: list[dict]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for c in changes:
        kinds[c["action"]] = kinds.get(c["action"], 0) + 1
    return kinds


def veto_kept(plan: dict, inv: Inventory, keep: list[str]) -> dict:
    """A drop of a crop the person keeps is vetoed (no curation pass may drop it)."""
    if not keep:
        return plan
    keys = {(c.faceset, c.name): c.key for crops in inv.facesets.values() for c in crops}
    kept = set(keep)
    changes, vetoed = [], []
    for ch in plan["changes"]:
        if ch["action"] == "drop" and keys.get((ch["faceset"], ch["crop"])) in kept:
            vetoed.append(dict(ch, key=keys[(ch["faceset"], ch["crop"])], vetoed_by="keep"))
        else:
            changes.append(ch)
    present = set(keys.values())
    bad = [unapplied(f"keep {k}", "no crop of this face in the export (left out at refine or export?)")
           for k in sorted(kept - present)]
    if plan["pass"] == "occlusion":  # the first pass says it once for all of them
        _warn(bad)
    return dict(plan, changes=changes, stats=_stats(changes), vetoed=vetoed,
                decisions={"keep": len(kept), "vetoed": len(vetoed), "unapplied": bad})


class _Sets:
    """Union-find over faceset names."""

    def __init__(self, names):
        self.parent = {n: n for n in names}

    def find(self, n: str) -> str:
        while self.parent[n] != n:
            self.parent[n] = self.parent[self.parent[n]]
            n = self.parent[n]
        return n

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(b)] = self.find(a)

    def members(self, n: str) -> list[str]:
        root = self.find(n)
        return [m for m in self.parent if self.find(m) == root]


def _same_groups(same: list[list[str]], inv: Inventory, live: set[str], sets: _Sets) -> tuple[set[str], list[dict]]:
    """Join each `same` group's active facesets; returns the facesets the person chose to merge into."""
    chosen, bad = set(), []
    for group in same:
        here = [f for f in group if f in live]
        for f in group:
            if f not in live:
                why = "does not exist (any more)" if f not in inv.facesets else "is not active (quarantined or hidden)"
                bad.append(unapplied(f"same {' '.join(group)}", f"{f} {why}"))
        for f in here[1:]:
            sets.union(here[0], f)
        if len(here) > 1:
            chosen.add(here[0])
    return chosen, bad


def _auto_groups(plan: dict, sets: _Sets, apart: set[frozenset], size: dict[str, int]) -> list[dict]:
    """Join the thresholds' groups, except where that would merge two facesets the person called different;
    returns the merges that were vetoed."""
    vetoed, groups = [], {}
    for ch in plan["changes"]:
        groups.setdefault(tuple(ch["evidence"]["group"]), []).append(ch)
    for group, changes in groups.items():
        into = {ch["faceset"]: ch for ch in changes}
        order = sorted((f for f in group if f in sets.parent), key=lambda f: (-size[f], f))
        roots: list[str] = []
        for f in order:
            home = next((r for r in roots if not any(frozenset((a, b)) in apart for a in sets.members(r)
                                                     for b in sets.members(f))), None)
            if home is None:
                roots.append(f)
            elif sets.find(home) != sets.find(f):
                sets.union(home, f)
        vetoed += [dict(ch, vetoed_by="different") for f, ch in into.items()
                   if f in sets.parent and ch["into"] in sets.parent and sets.find(f) != sets.find(ch["into"])]
    return vetoed


def consolidate(plan: dict, inv: Inventory, prior: Desired, same: list[list[str]], different: list[list[str]]) -> dict:
    """The consolidation plan with the person's `same` groups merged into their first faceset and no merge of
    two facesets (or of their merged groups) the person called `different`."""
    if not same and not different:
        return plan
    live = {f for f in inv.facesets if prior.location[f] == ""}
    size = {f: len(prior.active(inv, f)) for f in live}
    sets = _Sets(sorted(live))
    chosen, bad = _same_groups(same, inv, live, sets)
    apart = {frozenset(p) for p in different}
    bad += [unapplied(f"different {a} {b}", f"{f} does not exist (any more)")
            for a, b in different for f in (a, b) if f not in inv.facesets]
    vetoed = _auto_groups(plan, sets, apart, size)
    auto = {ch["faceset"]: ch for ch in plan["changes"]}
    person = {f: g[0] for g in same for f in g}
    changes = []
    for root in sorted({sets.find(f) for f in live}):
        members = sets.members(root)
        if len(members) < 2:
            continue
        survivor = min(members, key=lambda f: (f not in chosen, -size[f], f))
        for f in sorted(m for m in members if m != survivor):
            if person.get(f) == survivor:
                changes.append({"action": "merge", "faceset": f, "into": survivor, "decision": "same",
                                "reason": f"same person as {survivor} (the person's decision)",
                                "evidence": {"group": sorted(members)}})
            else:
                base = auto.get(f, {"reason": f"same identity as {survivor}", "evidence": {}})
                changes.append(dict(base, action="merge", faceset=f, into=survivor,
                                    evidence=dict(base["evidence"], group=sorted(members))))
    _warn(bad)
    return dict(plan, changes=changes, stats=_stats(changes), vetoed=vetoed,
                decisions={"same": len(same), "different": len(different), "unapplied": bad})


def steer(plan: dict, inv: Inventory, prior: Desired, d: dict) -> dict:
    """The plan with the decisions of its pass applied (`d`: the pass's part of the decisions)."""
    if plan["pass"] == "consolidate":
        return consolidate(plan, inv, prior, d.get("same", []), d.get("different", []))
    return veto_kept(plan, inv, d.get("keep", []))
