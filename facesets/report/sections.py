"""What each report page shows, read from the results tree as plain values (no HTML: the templates
render them, escaped). Every function tolerates a missing or unreadable manifest."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np

from facesets.core import atomic
from facesets.core.layout import Layout
from facesets.embed.scan import NOT_SCANNED
from facesets.report.templating import Cell

THUMB = 128
PLANS = ("occlusion", "consolidate", "bytedup", "neardup", "multiface")
EVOLUTION_COLS = ["run", "time", "active_facesets", "active_pngs", "masked", "thin", "merged", "dropped"]
STAGE_COLS = ["stage", "faces", "persons", "singletons", "noface_images", "facesets", "quality_removed",
              "outliers_removed", "too_small_faces", "pngs"]
UNUSED = (("not_scanned", "not scanned: add the extension to embed.extensions if it holds photos"),
          ("unsupported", "skipped: a type facesets does not decode (reasons in faces.csv)"))


def read(path: Path):
    try:
        return atomic.read_json(path)
    except (OSError, ValueError):
        return None


def thumb(path: Path) -> str:
    """A small JPEG data URI (the report must open offline, copied anywhere)."""
    img = cv2.imread(str(path)) if path.is_file() else None
    if img is None:
        img = np.full((THUMB, THUMB, 3), 200, np.uint8)
    img = cv2.resize(img, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    _ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def card(src: Path, lines: list, title: str) -> dict:
    return {"src": thumb(src), "lines": lines, "title": title}


def curation_state(applied: dict | None) -> dict | None:
    """Whether the corpus holds the plans' result: after `facesets undo` it holds the plain export."""
    if applied is None:
        return None
    counts = applied.get("counts", {})
    return {"run": applied.get("run", "?"), "active_facesets": counts.get("active_facesets", "?"),
            "active_pngs": counts.get("active_pngs", "?")}


def evolution(corpus_manifest: dict) -> list[dict]:
    """The corpus before and after each apply, from the provenance blocks."""
    rows = []
    for p in corpus_manifest.get("provenance", []):
        for when in ("before", "after"):
            rows.append({"run": f"{p['run']} {when}", "time": p.get("time", ""), **p.get(when, {})})
    return rows


def stages(raw: dict, refine: dict, export_manifest: dict) -> list[dict]:
    rows = []
    if raw.get("stats"):
        rows.append({"stage": "cluster", **{k: raw["stats"].get(k, "")
                                            for k in ("faces", "persons", "singletons", "noface_images")}})
    if refine.get("stats"):
        s = refine["stats"]
        rows.append({"stage": "refine", "faces": s.get("faces"), "facesets": s.get("facesets"),
                     "quality_removed": s.get("quality_removed_total"),
                     "outliers_removed": s.get("outliers_removed_total"),
                     "too_small_faces": s.get("too_small_faces_total")})
    if export_manifest.get("stats"):
        rows.append({"stage": "export", "facesets": export_manifest["stats"]["facesets"],
                     "pngs": export_manifest["stats"]["pngs"]})
    return rows


def not_scanned(layout: Layout) -> list[dict]:
    """Per source, the files no stage looked at, so nothing is left out without the user knowing."""
    rows = []
    for f in sorted(layout.listing.glob(f"*/{NOT_SCANNED}")):
        counts = read(f) or {}
        for kind, what in UNUSED:
            for ext, n in sorted((counts.get(kind) or {}).items(), key=lambda kv: (-kv[1], kv[0])):
                rows.append({"source": f.parent.name, "extension": ext or "(none)", "files": f"{n:,}", "what": what})
    return rows


def faceset_row(f: dict, corpus_manifest: dict, page: str) -> dict:
    status = "active"
    for q in ("masked", "merged", "thin"):
        if any(x["name"] == f["name"] for x in corpus_manifest.get(q, [])):
            status = q
    return {"faceset": Cell(f["name"], href=page), "crops": f["n_members"], "status": status,
            "bundles": ", ".join(f["bundles"].values())}


def sheet(per: dict, export: Path) -> dict:
    """One faceset's contact sheet: crops in rank order, quality terms on hover and below."""
    top = set(per.get("in_top", []))
    cards = []
    for m in per.get("members", []):
        terms = " ".join(f"{k}={v:.2f}" for k, v in m["quality"].items())
        mark = "top" if m["key"] in top else ""
        cards.append(card(export / m["crop"], [f"#{m['rank']} {mark} q={m['composite']:.3f}", Path(m["path"]).name],
                          f"{m['path']}\ncomposite {m['composite']:.3f}\n{terms}"))
    excluded = [{"face": str(e.get("path")), "stage": e["stage"], "reason": e["reason"]}
                for e in per.get("excluded", [])]
    return {"cards": cards, "bundles": list(per.get("bundles", {}).values()), "excluded": excluded}


def verify(layout: Layout) -> list[dict]:
    rows = []
    for label, path in (("export", layout.verify_export), ("curated corpus", layout.verify_corpus)):
        v = read(path)
        if v is None:
            continue
        odd = v.get("inconsistent", [])  # members far from the rest of their bundle (verify.consistency)
        if not v["ok"]:
            result = Cell(f"{len(v['violations'])} violation(s), {len(odd)} inconsistent member(s)", cls="bad")
        else:
            result = Cell(f"pass; {len(odd)} inconsistent member(s)", cls="bad") if odd else Cell("pass", cls="ok")
        rows.append({"bundles": label, "result": result})
        rows += [{"bundles": x["bundle"], "result": f"{x['member']}: {x['problem']}"} for x in v["violations"] + odd]
    return rows


def plans(layout: Layout) -> list[dict]:
    """Every quarantine and prune with its reason and evidence, plan by plan."""
    out = []
    for name in PLANS:
        plan = read(layout.plans / f"{name}.json")
        if plan is None:
            continue
        rows = []
        for ch in plan.get("changes", []):
            img = thumb(layout.export / ch["faceset"] / "faces" / ch["crop"]) if ch.get("crop") else None
            rows.append({"change": Cell(ch["action"], img=img), "faceset": ch["faceset"],
                         "target": str(ch.get("crop") or ch.get("into") or ch.get("to", "")),
                         "reason": ch["reason"],
                         "evidence": json.dumps(ch.get("evidence"), sort_keys=True)[:300]})
        out.append({"name": name, "skipped": plan.get("skipped"), "rows": rows})
    return out


def neardup(layout: Layout) -> list[dict] | None:
    """Near-duplicate groups: the kept crop beside the ones dropped for it; None without a plan."""
    plan = read(layout.plans / "neardup.json")
    if not plan:
        return None
    export = layout.export
    groups: dict[tuple[str, str], list[dict]] = {}
    for ch in plan["changes"]:
        groups.setdefault((ch["faceset"], ch["evidence"]["kept"]), []).append(ch)
    out = []
    for (f, kept), chs in groups.items():
        cards = [card(export / f / "faces" / kept, ["kept"], kept)]
        cards += [card(export / c["faceset"] / "faces" / c["crop"], [f"dropped, sim {c['evidence']['similarity']}"],
                       c["crop"]) for c in chs]
        out.append({"faceset": f, "cards": cards})
    return out


def eras(manifest: dict) -> dict:
    probes = []
    for ident, pr in manifest.get("probe", {}).items():
        probes.append({
            "identity": ident, "verdict": pr["verdict"],
            "thresholds": [{"threshold": t, "sub-cluster sizes": ", ".join(map(str, sizes[:12]))}
                           for t, sizes in pr["subcluster_sizes"].items()],
            "subclusters": [{"size": s["size"], "dominant year": s["dominant_year"], "years": json.dumps(s["years"])}
                            for s in pr["subclusters"]]})
    rows = [{"era": n, "faces": e["n_faces"], "dominant year": e["dominant_year"], "status": "THIN" if e["thin"] else "era"}
            for n, e in {**manifest.get("facesets", {}), **manifest.get("thin_eras", {})}.items()]
    return {"probes": probes, "eras": rows}


LOSS_SHOWN = 500  # rows of the loss table on the page; evaluation.json holds every one


def banners(layout: Layout) -> list[str]:
    """Things the person must know before trusting the corpus: a curation pass that could not run."""
    plan = read(layout.plans / "occlusion.json") or {}
    why = plan.get("skipped") or ""
    return [f"The occlusion filter {why}"] if why.startswith("could not run") else []


def evaluation(layout: Layout) -> dict | None:
    """The final corpus against the labels: the scores, and where every lost labeled face went."""
    ev = read(layout.evaluation)
    if not ev:
        return None
    keys = ("bcubed_precision", "bcubed_recall", "bcubed_f", "coverage", "coverage_of_gated", "labeled_faces",
            "n_faces", "identities_split", "clusters_merged")
    scores = [{"measure": k, "value": f"{ev[k]:.4f}" if isinstance(ev.get(k), float) else ev.get(k, "")}
              for k in keys if k in ev]
    summary = [{"stage": s, "faces": n} for s, n in ev.get("loss_summary", {}).items()]
    rows = [{"identity": r.get("identity", ""), "photo": r["path"], "stage": r["stage"], "reason": r["reason"]}
            for r in ev.get("loss", [])[:LOSS_SHOWN]]
    return {"scores": scores, "summary": summary, "rows": rows, "more": max(len(ev.get("loss", [])) - LOSS_SHOWN, 0)}
