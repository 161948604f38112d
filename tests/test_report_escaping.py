"""The report is rendered from autoescaped templates: a hostile file name, reason or label shows as text.

A small synthetic results tree (the JSON files the report reads, with tiny real PNG crops) holds a
script-injection payload in every string that can come from the user's files; no page may contain it as
markup, and a real browser (Debian's headless Chromium, driven as in test_pipeline) must run none of it.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesets.core.layout import Layout
from facesets.embed.scan import NOT_SCANNED
from facesets.identities import sweep
from facesets.report.render import build

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = '"><script>alert(2)</script>'
QUOTE = "'><img src=x onerror=alert(3)>"
PAYLOADS = (IMG, SCRIPT, QUOTE)
FS1, FS2 = IMG, QUOTE  # faceset names are folder names: no '/'
CROP1, CROP2 = f"{IMG}.png", f"{QUOTE}.png"
PHOTO = f"/photos/{SCRIPT}/{IMG}.jpg"
QUALITY = {"sharpness": 0.9, "exposure": 0.8, "pose": 0.7, "size": 0.6, "occlusion": 0.5}


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((24, 24, 3), value, np.uint8)
    cv2.circle(img, (12, 12), 6, (0, 0, 255), -1)
    assert cv2.imwrite(str(path), img)


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _member(name: str, crop: str, rank: int) -> dict:
    return {"key": f"{SCRIPT}#{rank}", "path": PHOTO, "crop": f"{name}/faces/{crop}", "quality": QUALITY,
            "composite": 0.75, "rank": rank, "masked_bystanders": False}


def _export(lay: Layout) -> None:
    summary = []
    for name in (FS1, FS2):
        members = [_member(name, CROP1, 1), _member(name, CROP2, 2)]
        for i, m in enumerate(members):
            _png(lay.export / m["crop"], 60 + 80 * i)
        bundles = {"top1": f"{name}_top1.fsz", "all": f"{SCRIPT}_all.fsz"}
        _json(lay.export / name / "manifest.json",
              {"faceset": name, "top_n": 1, "bundles": bundles, "members": members, "in_top": [members[0]["key"]],
               "excluded": [{"key": SCRIPT, "stage": "quality", "reason": SCRIPT, "path": PHOTO}]})
        summary.append({"name": name, "n_members": 2, "n_top": 1, "bundles": bundles, "excluded": {"quality": 1}})
    _json(lay.export_manifest, {"kind": "swap_ready", "facesets": summary, "stats": {"facesets": 2, "pngs": 4}})
    _json(lay.verify_export, {"ok": False, "violations": [{"bundle": IMG, "member": SCRIPT, "problem": QUOTE}]})


def _curation(lay: Layout) -> None:
    counts = {"active_facesets": 1, "active_pngs": 2, "masked": 1, "thin": 0, "merged": 0, "dropped": 1}
    _json(lay.corpus_manifest, {"provenance": [{"run": IMG, "time": SCRIPT, "before": counts, "after": counts}],
                                "masked": [{"name": FS2, "reason": SCRIPT}], "merged": [], "thin": []})
    _json(lay.applied, {"run": SCRIPT, "counts": {"active_facesets": IMG, "active_pngs": QUOTE}})
    _json(lay.verify_corpus, {"ok": True, "violations": [],  # a member the consistency check flagged: listed too
                              "inconsistent": [{"bundle": SCRIPT, "member": IMG, "problem": QUOTE, "kind": "consistency",
                                                "cosine": 0.1}]})
    change = {"faceset": FS1, "crop": CROP2, "reason": SCRIPT, "evidence": {IMG: SCRIPT}}
    _json(lay.plans / "occlusion.json", {"changes": [dict(change, action="quarantine")]})
    _json(lay.plans / "consolidate.json",
          {"changes": [{"action": "merge", "faceset": FS2, "into": IMG, "reason": QUOTE, "evidence": [SCRIPT]}]})
    _json(lay.plans / "bytedup.json", {"skipped": SCRIPT, "changes": []})
    _json(lay.plans / "neardup.json", {"changes": [dict(change, action="drop", crop=CROP2,
                                                        evidence={"kept": CROP1, "similarity": IMG})]})
    _json(lay.plans / "multiface.json",
          {"changes": [{"action": "mask", "faceset": FS2, "to": SCRIPT, "reason": IMG, "evidence": None}]})


def _identities(lay: Layout) -> None:
    _json(lay.raw_manifest, {"stats": {"faces": 4, "persons": 2, "singletons": 0, "noface_images": 1}})
    _json(lay.refine_manifest, {"stats": {"faces": 4, "facesets": 2, "quality_removed_total": 1,
                                          "outliers_removed_total": 0, "too_small_faces_total": 0}})
    _json(lay.eras_manifest, {
        "probe": {IMG: {"verdict": SCRIPT, "subcluster_sizes": {QUOTE: [3, 2]},
                        "subclusters": [{"size": 3, "dominant_year": IMG, "years": {SCRIPT: 3}}]}},
        "facesets": {f"{IMG}_era1": {"n_faces": 3, "dominant_year": SCRIPT, "thin": False}},
        "thin_eras": {SCRIPT: {"n_faces": 1, "dominant_year": 2001, "thin": True}}})
    _json(lay.listing / IMG / NOT_SCANNED, {"not_scanned": {SCRIPT: 3}, "unsupported": {f".{QUOTE}": 1}})


def _sweep(lay: Layout, tmp: Path) -> dict:
    key = f"refine.{IMG}"
    files = []
    for i, v in enumerate((0.4, 0.5)):
        files.append(tmp / f"m{i}.json")
        _json(files[-1], {"combo": f"{key}~{v:g}{QUOTE}", key: v, SCRIPT: i + 1.5, "facesets": 2})
    lay.sweeps.mkdir(parents=True, exist_ok=True)
    return sweep.summarize(files, lay.sweeps, SCRIPT)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile_report")
    lay = Layout(tmp / "results")
    _export(lay)
    _curation(lay)
    _identities(lay)
    summary = _sweep(lay, tmp)
    build(lay.results, lay.report_dir)
    pages = {p.name: p for p in lay.report_dir.glob("*.html")}
    pages["summary.html"] = lay.sweeps / "summary.html"
    return lay, pages, summary


def test_every_page_is_written(hostile_report):
    _, pages, summary = hostile_report
    assert summary["best"] and summary["plots"] == [f"plot_refine_{IMG}.png"]
    assert set(pages) == {"index.html", "curation.html", "neardup.html", "eras.html", f"{FS1}.html",
                          f"{FS2}.html", "summary.html"}


def test_no_page_holds_a_payload_as_markup(hostile_report):
    _, pages, _ = hostile_report
    for name, path in pages.items():
        text = path.read_text(encoding="utf-8")
        for raw in ("<script>alert", "<img src=x", "onerror=alert(1)>", "'><img", '"><script'):
            assert raw not in text, (name, raw)
        assert "&lt;img src=x onerror=alert(" in text or "&lt;script&gt;alert(2)" in text, name


def _shown(text: str) -> str:
    """The page's markup with the payloads as the templates escape them, for `in` checks."""
    return html.unescape(text)


def test_every_hostile_value_is_shown_as_text(hostile_report):
    _, pages, _ = hostile_report
    index = pages["index.html"].read_text(encoding="utf-8")
    assert "Curation: <b>applied</b>" in index and "id='curation-state'" in index
    plain = _shown(index)
    for value in (f"run {SCRIPT}: {IMG} active facesets, {QUOTE} crops", f"{IMG} before", SCRIPT,
                  f"{FS1}_top1.fsz, {SCRIPT}_all.fsz", "violation(s)", f"{SCRIPT}: {QUOTE}", f".{QUOTE}",
                  "../sweeps/summary.html", "eras.html", "not scanned: add the extension",
                  "pass; 1 inconsistent member(s)", f"{IMG}: {QUOTE}"):
        assert value in plain, value
    # the sheet links are percent-encoded relative names, never markup or a scheme
    assert 'href="%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.html"' in index
    assert "<td>masked</td>" in index  # FS2 is masked in the corpus manifest
    sheet = pages[f"{FS1}.html"].read_text(encoding="utf-8")
    body = sheet[sheet.index("id='sheet'"):sheet.index("Left out at export")]
    assert body.count('alt="crop"') == 2
    assert len(set(re.findall(r'src="(data:image/jpeg;base64,[^"]+)"', body))) == 2  # the real crops, not placeholders
    assert f"#1 top q=0.750<br>{IMG}.jpg" in _shown(body)  # the caption: rank, mark, composite; file name
    assert f'title="{PHOTO}\ncomposite 0.750\nsharpness=0.90' in _shown(body)  # the hover: path and terms
    curation = _shown(pages["curation.html"].read_text(encoding="utf-8"))
    for value in (f"skipped: {SCRIPT}", json.dumps({IMG: SCRIPT}), QUOTE, "quarantine", "merge", "mask"):
        assert value in curation, value
    neardup = _shown(pages["neardup.html"].read_text(encoding="utf-8"))
    assert f"dropped, sim {IMG}" in neardup and f'title="{CROP1}"' in neardup
    eras = _shown(pages["eras.html"].read_text(encoding="utf-8"))
    for value in (f"<h2>{IMG}</h2>", f"<p>{SCRIPT}</p>", QUOTE, json.dumps({SCRIPT: 3}), f"{IMG}_era1", "THIN"):
        assert value in eras, value
    summary = _shown(pages["summary.html"].read_text(encoding="utf-8"))
    assert f"Best by {SCRIPT}: <b>refine.{IMG}~0.5{QUOTE}</b>" in summary
    assert 'src="plot_refine_%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.png"' in pages["summary.html"].read_text()


def test_templates_ship_as_package_data():
    import tomllib
    from importlib.resources import files

    templates = files("facesets.report") / "templates"
    names = {p.name for p in templates.iterdir()}
    assert {"base.html", "index.html", "sheet.html", "sweep.html"} <= names
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "report/templates/*" in pyproject["tool"]["setuptools"]["package-data"]["facesets"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Put before the page's own markup: any alert() is recorded instead of shown, and once the page has
# loaded (every image has loaded or failed, so every onerror has run) what ran and what the reader
# sees is written onto <html data-probe>, which --dump-dom prints.
PROBE = """<script>
window.__calls = [];
for (const f of ["alert", "confirm", "prompt"]) window[f] = (m) => { window.__calls.push(f + ":" + m); };
addEventListener("load", () => {
  const text = document.body.innerText + [...document.querySelectorAll("[title]")].map(e => e.title).join(" ");
  document.documentElement.setAttribute("data-probe", JSON.stringify({
    calls: window.__calls,
    scripts: document.scripts.length - 1,
    handlers: document.querySelectorAll("[onerror],[onload],[onclick],[onmouseover]").length,
    shown: PAYLOADS.filter(p => text.includes(p)),
  }));
});
</script>"""


def _browser(args, url, tmp):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp}", "--window-size=1200,1000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _probe(page: Path, tmp: Path) -> dict:
    """Open a copy of the page, with PROBE first, beside the original (same relative links)."""
    text = page.read_text(encoding="utf-8")
    payloads = json.dumps(list(PAYLOADS)).replace("<", "\\u003c")
    probe = PROBE.replace("PAYLOADS", payloads)
    probed = page.with_name(f"_probe_{page.name}")
    probed.write_text(probe + text, encoding="utf-8")
    try:
        dom = _browser(["--dump-dom"], probed.as_uri(), tmp).stdout
    finally:
        probed.unlink()
    m = re.search(r'data-probe="([^"]*)"', dom)
    assert m, f"the probe did not run in {page.name}: {dom[:500]}"
    return json.loads(html.unescape(m.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_hostile_report_runs_no_script_in_a_real_browser(hostile_report, tmp_path):
    _, pages, _ = hostile_report
    # the probe sees an injection where there is one
    control = pages["index.html"].with_name("control.html")
    control.write_text(f"<!doctype html><html><body><p>{IMG}</p><p>{SCRIPT}</p></body></html>", encoding="utf-8")
    try:
        seen = _probe(control, tmp_path / "control")
    finally:
        control.unlink()
    assert sorted(seen["calls"]) == ["alert:1", "alert:2"] and seen["handlers"] == 1 and seen["scripts"] == 1
    shown = {}
    for i, (name, page) in enumerate(sorted(pages.items())):
        seen = _probe(page, tmp_path / f"u{i}")
        assert seen["calls"] == [] and seen["scripts"] == 0 and seen["handlers"] == 0, (name, seen)
        shown[name] = set(seen["shown"])
    # the hostile text is on the pages, as text the reader sees (or a crop's hover title)
    for name in ("index.html", "curation.html", "eras.html", "summary.html"):
        assert shown[name] == set(PAYLOADS), (name, shown[name])
    assert all(shown.values()), shown
