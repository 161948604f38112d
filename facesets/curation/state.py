"""What the curated corpus should hold: the export's inventory (every PNG of every faceset, with its face
key and composite) and the desired state the plans give (where each faceset lives, which crops are dropped)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facesets.core import atomic

QUARANTINES = ("_masked", "_merged", "_thin", "_hidden")  # _hidden: the person hid it (decisions)
MANIFEST = "manifest.json"


# ---------------------------------------------------------------- inventory of the export
@dataclass
class Crop:
    faceset: str
    name: str
    key: str | None
    composite: float


@dataclass
class Inventory:
    facesets: dict[str, list[Crop]]
    thin_markers: set[str] = field(default_factory=set)
    top_n: int = 30
    prefix: dict[str, str] = field(default_factory=dict)  # bundle name prefix (a label) per faceset
    hidden: set[str] = field(default_factory=set)  # facesets the person hid (no bundles; kept under _hidden/)

    def bundle(self, faceset: str, label: str) -> str:
        return f"{faceset}/{self.prefix.get(faceset, faceset)}_{label}.fsz"

    def crop(self, faceset: str, name: str) -> Crop | None:
        return next((c for c in self.facesets.get(faceset, []) if c.name == name), None)


def inventory(export_dir: str | Path) -> Inventory:
    """Every PNG of every exported faceset, with its face key and composite where crops.json knows it."""
    export_dir = Path(export_dir)
    known: dict[tuple[str, str], dict] = {}
    prefix: dict[str, str] = {}
    hidden: set[str] = set()
    top_n = 30
    index_path = export_dir / "crops.json"
    if index_path.is_file():
        index = atomic.read_json(index_path)
        for fs_name, fs in index["facesets"].items():
            if fs.get("meta", {}).get("bundle_prefix"):
                prefix[fs_name] = fs["meta"]["bundle_prefix"]
            if fs.get("meta", {}).get("hidden"):
                hidden.add(fs_name)
            for m in fs["members"]:
                known[(fs_name, Path(m["crop"]).name)] = m
    manifest_path = export_dir / MANIFEST
    if manifest_path.is_file():
        exported = atomic.read_json(manifest_path)
        top_n = exported.get("params", {}).get("top_n", top_n)
        prefix.update((f["name"], f["label"]) for f in exported.get("facesets", []) if f.get("label"))  # names
    out: dict[str, list[Crop]] = {}
    thin = set()
    for d in sorted(p for p in export_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        faces = d / "faces"
        crops = []
        for png in sorted(faces.glob("*.png")) if faces.is_dir() else []:
            m = known.get((d.name, png.name))
            crops.append(Crop(d.name, png.name, m["key"] if m else None, m["composite"] if m else 0.0))
        out[d.name] = crops
        if (d / "THIN.txt").exists():
            thin.add(d.name)
    return Inventory(out, thin, top_n, prefix, hidden & set(out))


# ---------------------------------------------------------------- desired state from plans
@dataclass
class Desired:
    location: dict[str, str]                      # faceset -> "" (active) or a quarantine folder
    reason: dict[str, dict]                       # faceset -> {reason, evidence, into?}
    dropped: dict[tuple[str, str], dict]          # (faceset, crop) -> {pass, reason}

    def active(self, inv: Inventory, faceset: str) -> list[Crop]:
        return [c for c in inv.facesets[faceset] if (faceset, c.name) not in self.dropped]

    def members(self, inv: Inventory, faceset: str) -> list[Crop]:
        """A surviving faceset's bundle members: its own active crops plus those of facesets merged into it."""
        crops = list(self.active(inv, faceset))
        for other, r in self.reason.items():
            if r.get("into") == faceset and self.location[other] == "_merged":
                crops += self.active(inv, other)
        return sorted(crops, key=lambda c: (-c.composite, c.faceset, c.name))


def desired(inv: Inventory, plans: list[dict], thin_below: int = 0) -> Desired:
    loc = {f: "_hidden" if f in inv.hidden else "" for f in inv.facesets}
    why: dict[str, dict] = {f: {"pass": "decisions", "reason": "hidden by the person"} for f in inv.hidden}
    dropped: dict[tuple[str, str], dict] = {}
    for plan in plans:
        for ch in plan.get("changes", []):
            f = ch["faceset"]
            if f not in loc:
                continue
            if ch["action"] == "drop":
                dropped.setdefault((f, ch["crop"]), {"pass": plan["pass"], "reason": ch["reason"]})
            elif ch["action"] in ("quarantine", "merge") and loc[f] == "":
                loc[f] = ch.get("to", "_merged")
                why[f] = {"pass": plan["pass"], "reason": ch["reason"], "evidence": ch.get("evidence"),
                          **({"into": ch["into"]} if ch["action"] == "merge" else {})}
    d = Desired(loc, why, dropped)
    for f in inv.facesets:
        if loc[f] == "" and (f in inv.thin_markers or (thin_below and len(d.members(inv, f)) < thin_below)):
            loc[f] = "_thin"
            why[f] = {"pass": "thin", "reason": "THIN marker" if f in inv.thin_markers
                      else f"{len(d.members(inv, f))} active PNGs < {thin_below}"}
    return d


def counts(inv: Inventory, d: Desired) -> dict:
    active = [f for f in inv.facesets if d.location[f] == ""]
    return {"active_facesets": len(active),
            "active_pngs": sum(len(d.members(inv, f)) for f in active),
            "masked": sum(v == "_masked" for v in d.location.values()),
            "thin": sum(v == "_thin" for v in d.location.values()),
            "merged": sum(v == "_merged" for v in d.location.values()),
            "hidden": sum(v == "_hidden" for v in d.location.values()),
            "dropped": len(d.dropped)}
