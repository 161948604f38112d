"""report: a self-contained offline HTML report of a results tree (thumbnails embedded as data URIs).

Pages: index.html (overview: the evolution table from the provenance blocks, stage counts, links),
one contact sheet per faceset (crops in rank order, quality terms on hover and below), quarantines and
prunes with their reasons and evidence, the era probes, near-duplicate groups side by side, and the
verify-fsz results. What each page shows is read in `sections`; the HTML comes only from the Jinja2
templates in templates/, autoescaped (`templating`), so no value from the user's files is ever markup.
"""
from __future__ import annotations

import logging
from pathlib import Path

from facesets.core import atomic
from facesets.core.layout import Layout
from facesets.report import sections
from facesets.report.sections import read, thumb  # noqa: F401  (thumb: the report's public helper)
from facesets.report.templating import render
from facesets.review import people as review_people

log = logging.getLogger(__name__)


def _write(path: Path, template: str, title: str, **context) -> None:
    atomic.write_text(path, render(template, title=title, **context))


def _sheets(layout: Layout, out_dir: Path, export_manifest: dict, corpus_manifest: dict) -> list[dict]:
    """One contact sheet page per exported faceset; the overview's faceset rows, linking to them."""
    rows = []
    for f in export_manifest.get("facesets", []):
        per = read(layout.export / f["name"] / "manifest.json")
        if per is None:
            continue
        page = f"{f['name']}.html"
        _write(out_dir / page, "sheet.html", f"{f['name']} — contact sheet", **sections.sheet(per, layout.export))
        rows.append(sections.faceset_row(f, corpus_manifest, page))
    return rows


def build(results: str | Path, out_dir: str | Path) -> Path:
    layout, out_dir = Layout(results), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus_manifest = read(layout.corpus_manifest) or {}
    export_manifest = read(layout.export_manifest) or {}
    eras = read(layout.eras_manifest)
    applied = read(layout.applied) if corpus_manifest else None

    facesets = _sheets(layout, out_dir, export_manifest, corpus_manifest)
    _write(out_dir / "curation.html", "curation.html", "Quarantines and prunes", plans=sections.plans(layout))
    _write(out_dir / "neardup.html", "neardup.html", "Near-duplicate groups", groups=sections.neardup(layout))
    if eras:
        _write(out_dir / "eras.html", "eras.html", "Era probes", **sections.eras(eras))
    index = out_dir / "index.html"
    _write(index, "index.html", "facesets report",
           people=review_people.report_cards(layout, sections.thumb), unapplied=review_people.unapplied(layout),
           applied=sections.curation_state(applied),
           banners=sections.banners(layout),
           evaluation=sections.evaluation(layout),
           evolution=sections.evolution(corpus_manifest), evolution_cols=sections.EVOLUTION_COLS,
           stages=sections.stages(read(layout.raw_manifest) or {}, read(layout.refine_manifest) or {},
                                  export_manifest),
           stage_cols=sections.STAGE_COLS,
           not_scanned=sections.not_scanned(layout),
           facesets=facesets,
           eras=bool(eras),
           verify=sections.verify(layout),
           sweep=(layout.sweeps / "summary.html").is_file())
    log.info("report: %s", index)
    return index
