"""What the review page and the report show, read from a results folder as plain values (no HTML).

- `people`: one card per exported faceset (best crop, name or number, crop count, status), the people not
  named yet first, then by size. It reads two manifests only (export and corpus), so 2,000 facesets cost
  milliseconds; the report and the review page both use it.
- `faceset`: one faceset's crops in rank order with the composite and its terms, and what the person decided
  about each.
- `pending`: what the next apply would change (the curation plans), each item with the decision that would
  keep or veto it.
- `unapplied`: every decision a stage could not apply, with the reason the stage gave.
Every function tolerates missing or unreadable files (a results folder the pipeline has not finished).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facesets.core import atomic
from facesets.core.layout import Layout
from facesets.review.decisions import empty

STATUSES = ("active", "masked", "merged", "thin", "hidden")
PLANS = ("occlusion", "consolidate", "bytedup", "neardup", "multiface")


def read(path: Path):
    try:
        return atomic.read_json(path)
    except (OSError, ValueError):
        return None


@dataclass
class Person:
    faceset: str
    name: str | None            # the person's name for it (the decisions file's, else the export's label)
    crops: int
    status: str                 # active / masked / merged / thin / hidden
    best: str | None            # the rank-1 crop, relative to the export folder
    into: str | None = None     # merged into
    pending: list[str] = field(default_factory=list)  # decided, not applied yet

    @property
    def title(self) -> str:
        return self.name or self.faceset


def _status(corpus: dict) -> dict[str, tuple[str, str | None]]:
    out = {}
    for q in ("masked", "merged", "thin", "hidden"):
        for x in corpus.get(q, []):
            out[x["name"]] = (q, x.get("into"))
    return out


def _pending(f: dict, d: dict, status: str, merged_into: dict[str, str]) -> list[str]:
    name, out = f["name"], []
    if d["names"].get(name) and d["names"][name] != f.get("label"):
        out.append(f"name {d['names'][name]!r}")
    if name not in d["names"] and f.get("label") and not f.get("meta", {}).get("bundle_prefix"):
        out.append("name removed")
    if (name in d["hide"]) != (status == "hidden"):
        out.append("hide" if name in d["hide"] else "show again")
    if name in merged_into and status != "merged":
        out.append(f"merge into {merged_into[name]}")
    return out


def people(layout: Layout, decisions: dict | None = None) -> list[Person]:
    """Every exported faceset as a card: the ones without a name first, then the largest first."""
    d = decisions or empty()
    export = read(layout.export_manifest) or {}
    status = _status(read(layout.corpus_manifest) or {})
    merged_into = {f: g[0] for g in d["same"] for f in g[1:]}
    out = []
    for f in export.get("facesets", []):
        st, into = status.get(f["name"], ("active", None))
        best = f.get("best")
        out.append(Person(f["name"], d["names"].get(f["name"]) or f.get("label"), f.get("n_members", 0), st,
                          best, into, _pending(f, d, st, merged_into)))
    return sorted(out, key=lambda p: (p.name is not None, -p.crops, p.faceset))


def faceset(layout: Layout, name: str, decisions: dict | None = None) -> dict | None:
    """One faceset's crops in rank order (composite and terms), with the person's decisions on each."""
    d = decisions or empty()
    per = read(layout.export / name / "manifest.json")
    if per is None:
        return None
    removed, kept = set(d["remove"].get(name, [])), set(d["keep"])
    assigned = {k for k, f in d["assign"].items() if f == name}
    crops = [{"key": m["key"], "crop": m["crop"], "rank": m.get("rank", i + 1), "path": m["path"],
              "composite": m["composite"], "quality": m["quality"], "top": m["key"] in set(per.get("in_top", [])),
              "removed": m["key"] in removed, "kept": m["key"] in kept, "assigned": m["key"] in assigned}
             for i, m in enumerate(per.get("members", []))]
    members = {c["key"] for c in crops}
    return {"faceset": name, "label": per.get("label"), "name": d["names"].get(name) or per.get("label"),
            "bundles": list(per.get("bundles", {}).values()), "crops": crops,
            "excluded": per.get("excluded", []), "hidden": name in d["hide"],
            "removed_pending": sorted(removed & members), "removed": sorted(removed),
            "same": next((g for g in d["same"] if name in g), None),
            "different": sorted(next(iter(set(p) - {name})) for p in d["different"] if name in p)}


def _crop_key(inv_keys: dict, faceset: str, crop: str | None) -> str | None:
    return inv_keys.get((faceset, crop)) if crop else None


def pending(layout: Layout, decisions: dict | None = None) -> list[dict]:
    """Every change the plans propose (and every one a decision vetoed), plan by plan, with its thumbnails,
    reason, evidence, and the decision that would keep (veto) it or undo the veto."""
    from facesets.curation.state import inventory

    d = decisions or empty()
    keys = {}
    if layout.export.is_dir():
        keys = {(c.faceset, c.name): c.key for crops in inventory(layout.export).facesets.values() for c in crops}
    out = []
    for name in PLANS:
        plan = read(layout.plans / f"{name}.json")
        if plan is None:
            continue
        items = [_item(ch, keys, d, False) for ch in plan.get("changes", [])]
        items += [_item(ch, keys, d, True) for ch in plan.get("vetoed", [])]
        out.append({"pass": name, "skipped": plan.get("skipped"), "items": items})
    return out


def _item(ch: dict, keys: dict, d: dict, vetoed: bool) -> dict:
    key = ch.get("key") or _crop_key(keys, ch["faceset"], ch.get("crop"))
    item = {"action": ch["action"], "faceset": ch["faceset"], "crop": ch.get("crop"), "key": key,
            "into": ch.get("into"), "to": ch.get("to"), "reason": ch.get("reason", ""),
            "evidence": ch.get("evidence"), "vetoed": vetoed, "by": ch.get("vetoed_by"), "decide": None}
    pair = [ch["faceset"], ch.get("into")]
    if ch["action"] == "drop" and key:
        kept = key in d["keep"]
        item["decide"] = ("unkeep", {"key": key}, "drop it after all") if kept else ("keep", {"key": key}, "keep it")
    elif ch["action"] == "merge" and ch.get("decision") == "same":
        item["decide"] = ("unmerge", {"faceset": ch["faceset"]}, "not the same person")
    elif ch["action"] == "merge":
        apart = any(set(p) == set(pair) for p in d["different"])
        item["decide"] = (("undifferent", {"faceset": pair[0], "other": pair[1]}, "merge them after all") if apart
                          else ("different", {"faceset": pair[0], "other": pair[1]}, "different people: veto"))
    return item


def unapplied(layout: Layout) -> list[dict]:
    """Every decision a stage could not apply (the faceset is gone, the face key is unknown), with its reason."""
    seen, out = set(), []
    sources = [("refine", read(layout.refine_manifest)), ("export", read(layout.export_manifest))]
    sources += [(f"plan {p}", read(layout.plans / f"{p}.json")) for p in PLANS]
    for stage, m in sources:
        for u in ((m or {}).get("decisions") or {}).get("unapplied", []):
            if (u["decision"], u["reason"]) not in seen:
                seen.add((u["decision"], u["reason"]))
                out.append({"stage": stage, **u})
    return out


def report_cards(layout: Layout, thumb) -> list[dict]:
    """The report's people cards: `thumb` makes the self-contained image (a data URI) of a crop path."""
    export = layout.export
    return [{"faceset": p.faceset, "title": p.title, "named": p.name is not None, "crops": p.crops,
             "status": p.status, "into": p.into, "page": f"{p.faceset}.html",
             "src": thumb(export / p.best if p.best else export / "-")} for p in people(layout)]
