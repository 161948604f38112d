"""report: a self-contained offline HTML report of a results tree (thumbnails embedded as data URIs).

Pages: index.html (overview: the evolution table from the provenance blocks, stage counts, links),
one contact sheet per faceset (crops in rank order, quality terms on hover and below), quarantines and
prunes with their reasons and evidence, the era probes, near-duplicate groups side by side, and the
verify-fsz results.
"""
from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from facesets import __version__
from facesets.core import atomic
from facesets.core.layout import Layout
from facesets.embed.scan import NOT_SCANNED

log = logging.getLogger(__name__)
THUMB = 128
CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1,h2{font-weight:600} table{border-collapse:collapse;margin:.5em 0 1.5em} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eee} td.l,th.l{text-align:left} nav a{margin-right:1em}
.sheet{display:flex;flex-wrap:wrap;gap:8px} .crop{width:140px;font-size:11px;background:#fff;border:1px solid #ddd;padding:4px}
.crop img{width:128px;height:128px;display:block;margin:auto} .bad{color:#a00} .ok{color:#070}
.group{display:flex;gap:6px;align-items:flex-start;margin-bottom:10px;padding:6px;background:#fff;border:1px solid #ddd}
"""


def _read(path: Path):
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
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><nav><a href='index.html'>overview</a></nav>"
            f"<h1>{html.escape(title)}</h1>{body}<p><small>facesets {__version__}</small></p></body></html>")


def _table(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th class='l'>{html.escape(c)}</th>" if i == 0 else f"<th>{html.escape(c)}</th>"
                   for i, c in enumerate(cols))
    body = "".join("<tr>" + "".join(
        f"<td class='l'>{r.get(c, '')}</td>" if i == 0 else f"<td>{r.get(c, '')}</td>" for i, c in enumerate(cols))
        + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _crop_card(img_src: str, caption: str, title: str) -> str:
    return (f"<div class='crop' title='{html.escape(title)}'><img alt='crop' src='{img_src}'>"
            f"<div>{caption}</div></div>")


def contact_sheet(name: str, per: dict, export: Path) -> str:
    cards = []
    for m in per.get("members", []):
        q = m["quality"]
        terms = " ".join(f"{k}={v:.2f}" for k, v in q.items())
        mark = "top" if m["key"] in set(per.get("in_top", [])) else ""
        cards.append(_crop_card(thumb(export / m["crop"]),
                                f"#{m['rank']} {mark} q={m['composite']:.3f}<br>{html.escape(Path(m['path']).name)}",
                                f"{m['path']}\ncomposite {m['composite']:.3f}\n{terms}"))
    excluded = _table([{"face": html.escape(str(e.get("path"))), "stage": e["stage"],
                        "reason": html.escape(e["reason"])} for e in per.get("excluded", [])],
                      ["face", "stage", "reason"]) if per.get("excluded") else "<p>none</p>"
    body = (f"<p>{len(per.get('members', []))} crops in rank order; bundles: "
            f"{html.escape(', '.join(per.get('bundles', {}).values()))}. Hover a crop for its quality terms.</p>"
            f"<div class='sheet' id='sheet'>{''.join(cards)}</div><h2>Left out at export</h2>{excluded}")
    return _page(f"{name} — contact sheet", body)


def _curation_state(applied: dict | None) -> str:
    """Whether the corpus holds the plans' result: after `facesets undo` it holds the plain export."""
    if applied is None:
        return "<p id='curation-state'>Curation: <b>not applied</b> (the corpus mirrors the export; run the pipeline to apply the plans)</p>"
    counts = applied.get("counts", {})
    return (f"<p id='curation-state'>Curation: <b>applied</b> (run {html.escape(str(applied.get('run', '?')))}: "
            f"{html.escape(str(counts.get('active_facesets', '?')))} active facesets, "
            f"{html.escape(str(counts.get('active_pngs', '?')))} crops)</p>")


def _not_scanned(layout: Layout) -> str:
    """Per source, the files no stage looked at, so nothing is left out without the user knowing."""
    rows = []
    for f in sorted(layout.listing.glob(f"*/{NOT_SCANNED}")):
        counts = _read(f) or {}
        for kind, what in (("not_scanned", "not scanned: add the extension to embed.extensions if it holds photos"),
                           ("unsupported", "skipped: a type facesets does not decode (reasons in faces.csv)")):
            for ext, n in sorted((counts.get(kind) or {}).items(), key=lambda kv: (-kv[1], kv[0])):
                rows.append({"source": html.escape(f.parent.name), "extension": html.escape(ext or "(none)"),
                             "files": f"{n:,}", "what": html.escape(what)})
    return "<h2>Files not used</h2>" + (_table(rows, ["source", "extension", "files", "what"]) if rows
                                         else "<p>every file in the sources was scanned</p>")


def build(results: str | Path, out_dir: str | Path) -> Path:
    layout, out_dir = Layout(results), Path(out_dir)
    results = layout.results
    out_dir.mkdir(parents=True, exist_ok=True)
    export = layout.export
    corpus_manifest = _read(layout.corpus_manifest) or {}
    export_manifest = _read(layout.export_manifest) or {}
    refine = _read(layout.refine_manifest) or {}
    raw = _read(layout.raw_manifest) or {}
    eras = _read(layout.eras_manifest)
    applied = _read(layout.applied) if corpus_manifest else None
    sections = [_curation_state(applied)]

    # overview: the evolution table
    prov = corpus_manifest.get("provenance", [])
    evo = []
    for p in prov:
        for when in ("before", "after"):
            c = p.get(when, {})
            evo.append({"run": f"{p['run']} {when}", "time": p.get("time", ""), **c})
    cols = ["run", "time", "active_facesets", "active_pngs", "masked", "thin", "merged", "dropped"]
    sections.append("<h2>Corpus evolution</h2>" + (_table(evo, cols) if evo else "<p>no curation run yet</p>"))
    stages = []
    if raw.get("stats"):
        stages.append({"stage": "cluster", **{k: raw["stats"].get(k, "") for k in ("faces", "persons", "singletons", "noface_images")}})
    if refine.get("stats"):
        s = refine["stats"]
        stages.append({"stage": "refine", "faces": s.get("faces"), "facesets": s.get("facesets"),
                       "quality_removed": s.get("quality_removed_total"), "outliers_removed": s.get("outliers_removed_total"),
                       "too_small_faces": s.get("too_small_faces_total")})
    if export_manifest.get("stats"):
        stages.append({"stage": "export", "facesets": export_manifest["stats"]["facesets"],
                       "pngs": export_manifest["stats"]["pngs"]})
    scols = ["stage", "faces", "persons", "singletons", "noface_images", "facesets", "quality_removed",
             "outliers_removed", "too_small_faces", "pngs"]
    sections.append("<h2>Stages</h2>" + _table(stages, scols))
    sections.append(_not_scanned(layout))

    # contact sheets
    links = []
    for f in export_manifest.get("facesets", []):
        per = _read(export / f["name"] / "manifest.json")
        if per is None:
            continue
        page = f"{f['name']}.html"
        atomic.write_text(out_dir / page, contact_sheet(f["name"], per, export))
        status = "active"
        for q in ("masked", "merged", "thin"):
            if any(x["name"] == f["name"] for x in corpus_manifest.get(q, [])):
                status = q
        links.append({"faceset": f"<a href='{page}'>{html.escape(f['name'])}</a>", "crops": f["n_members"],
                      "status": status, "bundles": html.escape(", ".join(f["bundles"].values()))})
    sections.append("<h2>Facesets</h2>" + _table(links, ["faceset", "crops", "status", "bundles"]))

    # quarantines and prunes
    atomic.write_text(out_dir / "curation.html", _page("Quarantines and prunes", _curation(results, export)))
    sections.append("<p><a href='curation.html'>Quarantines and prunes, with reasons and evidence</a></p>")
    # near-duplicates
    atomic.write_text(out_dir / "neardup.html", _page("Near-duplicate groups", _neardup(results, export)))
    sections.append("<p><a href='neardup.html'>Near-duplicate groups side by side</a></p>")
    # eras
    if eras:
        atomic.write_text(out_dir / "eras.html", _page("Era probes", _eras(eras)))
        sections.append("<p><a href='eras.html'>Era probes and splits</a></p>")
    # verify
    rows = []
    for label, path in (("export", export / "verify.json"), ("curated corpus", layout.verify_corpus)):
        v = _read(path)
        if v is not None:
            rows.append({"bundles": label, "result": "<span class='ok'>pass</span>" if v["ok"] else
                         f"<span class='bad'>{len(v['violations'])} violation(s)</span>"})
            rows += [{"bundles": html.escape(x["bundle"]), "result": html.escape(f"{x['member']}: {x['problem']}")}
                     for x in v["violations"]]
    sections.append("<h2>verify-fsz</h2>" + (_table(rows, ["bundles", "result"]) if rows else "<p>not run</p>"))
    sweep = layout.sweeps / "summary.html"
    if sweep.is_file():
        sections.append("<p><a href='../sweeps/summary.html'>Threshold sweeps</a></p>")
    index = out_dir / "index.html"
    atomic.write_text(index, _page("facesets report", "".join(sections)))
    log.info("report: %s", index)
    return index


def _curation(results: Path, export: Path) -> str:
    out = []
    plans_dir = Layout(results).plans
    for name in ("occlusion", "consolidate", "bytedup", "neardup", "multiface"):
        plan = _read(plans_dir / f"{name}.json")
        if plan is None:
            continue
        out.append(f"<h2>{name}</h2>")
        if plan.get("skipped"):
            out.append(f"<p>skipped: {html.escape(plan['skipped'])}</p>")
        rows = []
        for ch in plan.get("changes", []):
            img = ""
            if ch.get("crop"):
                img = f"<img alt='crop' width='64' src='{thumb(export / ch['faceset'] / 'faces' / ch['crop'])}'>"
            rows.append({"change": f"{img} {ch['action']}", "faceset": html.escape(ch["faceset"]),
                         "target": html.escape(str(ch.get("crop") or ch.get("into") or ch.get("to", ""))),
                         "reason": html.escape(ch["reason"]),
                         "evidence": html.escape(json.dumps(ch.get("evidence"), sort_keys=True)[:300])})
        out.append(_table(rows, ["change", "faceset", "target", "reason", "evidence"]) if rows else "<p>no changes</p>")
    return "".join(out) or "<p>no plans yet</p>"


def _neardup(results: Path, export: Path) -> str:
    plan = _read(Layout(results).plans / "neardup.json")
    if not plan:
        return "<p>no near-duplicate plan yet</p>"
    groups: dict[tuple[str, str], list[dict]] = {}
    for ch in plan["changes"]:
        groups.setdefault((ch["faceset"], ch["evidence"]["kept"]), []).append(ch)
    out = []
    for (f, kept), chs in groups.items():
        cards = [_crop_card(thumb(export / f / "faces" / kept), "kept", kept)]
        cards += [_crop_card(thumb(export / c["faceset"] / "faces" / c["crop"]),
                             f"dropped, sim {c['evidence']['similarity']}", c["crop"]) for c in chs]
        out.append(f"<div class='group'><b>{html.escape(f)}</b>{''.join(cards)}</div>")
    return "".join(out) or "<p>no near-duplicates</p>"


def _eras(eras: dict) -> str:
    out = []
    for ident, pr in eras.get("probe", {}).items():
        out.append(f"<h2>{html.escape(ident)}</h2><p>{html.escape(pr['verdict'])}</p>")
        out.append(_table([{"threshold": t, "sub-cluster sizes": ", ".join(map(str, sizes[:12]))}
                           for t, sizes in pr["subcluster_sizes"].items()], ["threshold", "sub-cluster sizes"]))
        out.append(_table([{"size": s["size"], "dominant year": s["dominant_year"],
                            "years": html.escape(json.dumps(s["years"]))} for s in pr["subclusters"]],
                          ["size", "dominant year", "years"]))
    rows = [{"era": html.escape(n), "faces": e["n_faces"], "dominant year": e["dominant_year"],
             "status": "THIN" if e["thin"] else "era"} for n, e in {**eras.get("facesets", {}),
                                                                   **eras.get("thin_eras", {})}.items()]
    out.append("<h2>Eras</h2>" + _table(rows, ["era", "faces", "dominant year", "status"]))
    return "".join(out)
