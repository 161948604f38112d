"""The person's decisions steer the real pipeline (shared photos, shared pack): each decision kind changes
exactly what it should in the final corpus and bundles and nothing else (every other bundle and crop hashed
before and after), re-runs only the stage it belongs to, survives new photos and a fresh results folder,
and undoes cleanly when it is taken out of the file.

The tests run in order on one results folder, each adding one decision to the file (as the review page
writes it) on top of the ones before."""
from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import copy_photos, needs_shared
from pipeline_util import planned, rules_of, snakemake, write_config

from facesets.core.layout import Layout
from facesets.review.editing import Editor
from facesets.review.similar import Similar

pytestmark = [needs_shared, pytest.mark.slow]

PEOPLE = {"p01": 8, "p03": 7, "p04": 6, "p05": 5, "p06": 5}  # deepface folders: one person each
NEW = ["deepface/p08/img38.jpg", "deepface/p08/img39.jpg", "deepface/p08/img40.jpg", "deepface/p09/img34.jpg",
       "deepface/p09/img35.jpg", "deepface/p09/img36.jpg"]
UPSTREAM = ("embed_shard", "merge_cache", "inspect_cache", "cluster", "dedup_report", "enrich", "model_pack")


def _photos() -> list[str]:
    from conftest import FACES

    return [str(p.relative_to(FACES)) for d in PEOPLE for p in sorted((FACES / "deepface" / d).glob("*.jpg"))]


def _config(wd: Path, results: str = "results") -> Path:
    path = write_config(wd, {"s": wd / "src"}, refine={"min_faces": 2},
                        curation={"consolidate": {"threshold": 0.86}, "neardup": {"similarity": 0.88},
                                  "occlusion": {"enabled": "off"}},
                        review={"decisions": str(wd / "decisions.yaml")})
    if results != "results":
        other = wd / f"config_{results}.yaml"
        other.write_text(path.read_text().replace(str(wd / "results"), str(wd / results)))
        return other
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("review_pipe")
    copy_photos(wd / "src", _photos())
    cfg = _config(wd)
    snakemake(wd, cfg)
    lay = Layout(wd / "results")
    state = {"wd": wd, "cfg": cfg, "lay": lay, "base": snapshot(lay)}
    state["editor"] = Editor(wd / "decisions.yaml", lay.results, Similar(lay).anchor_keys)
    return state


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def snapshot(lay: Layout) -> dict[str, str]:
    """Every bundle and crop of the corpus (where it lives: active, _dropped/, a quarantine) -> its sha256."""
    return {str(p.relative_to(lay.corpus)): sha(p) for p in sorted(lay.corpus.rglob("*"))
            if p.is_file() and p.suffix in (".fsz", ".png") and ".curation" not in p.parts}


def members(bundle: Path) -> set[str]:
    with zipfile.ZipFile(bundle) as z:
        return {n.split("_", 1)[1] for n in z.namelist()}


def faceset_of(lay: Layout, person: str) -> str:
    """The faceset that holds most of this person's faces."""
    refine = json.loads(lay.refine_manifest.read_text())
    return max(refine["facesets"], key=lambda n: sum(f"/{person}/" in p for _, p in refine["facesets"][n]["faces"]))


def export_members(lay: Layout, faceset: str) -> list[dict]:
    return json.loads((lay.export / faceset / "manifest.json").read_text())["members"]


def crop_of(key: str) -> str:
    sha_, i = key.split(":")
    return f"{sha_[:16]}_{i}.png"


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def decide(state, action: str, **args) -> dict:
    return state["editor"].change(action, **args)


def step(state, expect: set[str] | None = None, never: tuple[str, ...] = UPSTREAM) -> tuple[dict, dict]:
    """Dry run (the rules it plans), then the run; the corpus before and after."""
    jobs = rules_of(planned(state["wd"], state["cfg"]))
    for rule in never:
        assert jobs[rule] == 0, (rule, jobs)
    if expect is not None:
        assert set(jobs) - {"all"} == expect, jobs
    before = snapshot(state["lay"])
    snakemake(state["wd"], state["cfg"])
    assert planned(state["wd"], state["cfg"]) == []
    return before, snapshot(state["lay"])


def test_the_base_run_has_what_the_decisions_will_change(run):
    lay = run["lay"]
    refine = json.loads(lay.refine_manifest.read_text())
    assert len(refine["facesets"]) == 5 and refine["stats"]["quality_removed_total"] >= 1
    consolidate = json.loads((lay.plans / "consolidate.json").read_text())
    assert len(consolidate["changes"]) == 1  # the thresholds merge two people (p05, p06) at 0.86
    assert json.loads((lay.plans / "neardup.json").read_text())["changes"]  # and drop a near-duplicate
    for name in ("faceset_001", "faceset_002"):
        assert (lay.corpus / name / f"{name}_top30.fsz").is_file()


def test_a_name_reruns_only_the_bundles_and_renames_them(run):
    lay = run["lay"]
    old = members(lay.corpus / "faceset_001/faceset_001_all.fsz")
    decide(run, "name", faceset="faceset_001", name="Zoë")
    before, after = step(run, {"export_bundles", "verify_export", "apply", "verify_fsz", "report"})
    assert members(lay.corpus / "faceset_001/Zoë_all.fsz") == old and (lay.corpus / "faceset_001/Zoë_top30.fsz").is_file()
    assert not list(lay.corpus.glob("faceset_001/faceset_001_*.fsz")) and not list(lay.export.glob("faceset_001/faceset_*.fsz"))
    assert changed(before, after) == {"faceset_001/faceset_001_all.fsz", "faceset_001/faceset_001_top30.fsz",
                                      "faceset_001/Zoë_all.fsz", "faceset_001/Zoë_top30.fsz"}
    exported = json.loads(lay.export_manifest.read_text())
    assert next(f for f in exported["facesets"] if f["name"] == "faceset_001")["label"] == "Zoë"
    assert "Zoë" in (lay.report_dir / "index.html").read_text()


def test_a_removed_face_leaves_only_its_faceset(run):
    lay = run["lay"]
    victim = faceset_of(lay, "p03")
    key = export_members(lay, victim)[1]["key"]
    run["removed"] = (victim, key)
    decide(run, "remove", faceset=victim, key=key)
    before, after = step(run)
    assert all(crop_of(key) not in members(b) for b in lay.corpus.rglob("*.fsz") if ".curation" not in b.parts)
    assert not list(lay.corpus.glob(f"*/faces/{crop_of(key)}"))
    assert {k.split("/")[0] for k in changed(before, after)} == {victim}  # the other facesets: byte for byte
    refine = json.loads(lay.refine_manifest.read_text())
    assert [k for k, *_ in refine["removed"]["decision"]] == [key] and refine["stats"]["accounted"]


def test_a_kept_crop_is_not_dropped_and_only_the_plans_rerun(run):
    lay = run["lay"]
    drop = json.loads((lay.plans / "neardup.json").read_text())["changes"][0]
    key = next(m["key"] for m in export_members(lay, drop["faceset"]) if m["crop"].endswith(drop["crop"]))
    decide(run, "keep", key=key)
    before, after = step(run, never=UPSTREAM + ("refine", "export_crops", "export_bundles"))
    f = drop["faceset"]
    assert (lay.corpus / f / "faces" / drop["crop"]).is_file() and not (lay.corpus / f / "faces/_dropped" / drop["crop"]).exists()
    assert all(drop["crop"] in members(b) for b in (lay.corpus / f).glob("*_all.fsz"))
    assert json.loads((lay.plans / "neardup.json").read_text())["vetoed"][0]["key"] == key
    assert {k.split("/")[0] for k in changed(before, after)} == {f}


def test_different_people_are_not_merged(run):
    lay = run["lay"]
    merge = json.loads((lay.plans / "consolidate.json").read_text())["changes"][0]
    run["apart"] = (merge["faceset"], merge["into"])
    decide(run, "different", faceset=merge["into"], other=merge["faceset"])
    before, after = step(run)
    assert (lay.corpus / merge["faceset"]).is_dir() and not (lay.corpus / "_merged" / merge["faceset"]).exists()
    assert json.loads((lay.plans / "consolidate.json").read_text())["vetoed"][0]["faceset"] == merge["faceset"]
    assert {k.split("/")[0] for k in changed(before, after)} <= {"_merged", merge["faceset"], merge["into"]}


def test_same_person_merges_into_the_first_listed(run):
    lay = run["lay"]
    a, b = faceset_of(lay, "p03"), faceset_of(lay, "p04")
    decide(run, "merge", faceset=b, into=a)
    before, after = step(run, never=UPSTREAM + ("refine", "export_crops", "export_bundles"))
    assert (lay.corpus / "_merged" / b).is_dir() and not (lay.corpus / b).exists()
    assert {m["crop"].split("/")[-1] for m in export_members(lay, b)} <= members(next((lay.corpus / a).glob("*_all.fsz")))
    assert {k.split("/")[0] for k in changed(before, after)} <= {a, b, "_merged"}


def test_an_assigned_face_moves_into_its_faceset_past_the_thresholds(run):
    """A face the thresholds put in the wrong faceset (here: one of faceset_001's, moved to p05's): it leaves the
    one and joins the other, past the export's identity gate (the person's word outranks it)."""
    lay = run["lay"]
    target = faceset_of(lay, "p05")
    kept = set(run["editor"].read().get("keep") or [])
    key = next(m["key"] for m in reversed(export_members(lay, "faceset_001"))
               if m["key"] not in kept and not (lay.corpus / "faceset_001/faces/_dropped" / crop_of(m["key"])).exists())
    run["assigned"] = (target, key)
    decide(run, "assign", key=key, faceset=target)
    decide(run, "different", faceset=target, other="faceset_001")  # so the thresholds do not merge them back
    before, after = step(run)
    assert crop_of(key) in members(next((lay.corpus / target).glob("*_all.fsz")))
    assert crop_of(key) not in members(lay.corpus / "faceset_001/Zoë_all.fsz")
    assert {k.split("/")[0] for k in changed(before, after)} == {target, "faceset_001"}
    assert json.loads(lay.refine_manifest.read_text())["facesets"][target]["assigned"] == [key]


def test_a_hidden_faceset_is_not_exported_and_what_cannot_apply_is_reported(run):
    lay = run["lay"]
    hidden = faceset_of(lay, "p06")
    run["hidden"] = hidden
    decide(run, "hide", faceset=hidden)
    decide(run, "hide", faceset="faceset_404")
    decide(run, "remove", faceset="faceset_001", key="f" * 64 + ":7")
    before, after = step(run)
    assert (lay.corpus / "_hidden" / hidden / "faces").is_dir() and not list((lay.corpus / "_hidden").rglob("*.fsz"))
    assert not (lay.corpus / hidden).exists() and not list((lay.export / hidden).glob("*.fsz"))
    assert {k.split("/")[1] if k.startswith("_hidden") else k.split("/")[0] for k in changed(before, after)} == {hidden}
    report = (lay.report_dir / "index.html").read_text()
    assert "Decisions that could not apply" in report and "hide faceset_404" in report
    assert "faceset_404 does not exist (any more)" in report and "no such face in the cache" in report
    assert "decision not applied" in (lay.logs / "refine/refine.log").read_text()


def root(lay: Layout, faceset: str) -> str:
    """The active faceset a faceset ends up in (itself, or the one it was merged into)."""
    into = {m["name"]: m["into"] for m in json.loads(lay.corpus_manifest.read_text())["merged"]}
    while faceset in into:
        faceset = into[faceset]
    return faceset


def _check_all_decisions(lay: Layout, run) -> None:
    """Every decision still holds (new facesets may have been merged by the thresholds: that is theirs)."""
    assert (lay.corpus / "faceset_001/Zoë_top30.fsz").is_file()
    victim, key = run["removed"]
    assert all(crop_of(key) not in members(b) for b in lay.corpus.rglob("*.fsz") if ".curation" not in b.parts)
    assert root(lay, run["apart"][0]) != root(lay, run["apart"][1])
    p03, p04 = faceset_of(lay, "p03"), faceset_of(lay, "p04")
    assert (lay.corpus / "_merged" / p04).is_dir() and root(lay, p04) == root(lay, p03)
    target, akey = run["assigned"]
    assert crop_of(akey) in members(next((lay.corpus / root(lay, target)).glob("*_all.fsz")))
    assert crop_of(akey) not in members(lay.corpus / "faceset_001/Zoë_all.fsz")
    assert (lay.corpus / "_hidden" / run["hidden"]).is_dir()


def test_taking_every_decision_out_gives_back_the_corpus_as_it_was(run):
    lay = run["lay"]
    path = run["wd"] / "decisions.yaml"
    run["decisions"] = path.read_text()
    path.write_text("# nothing decided\n")
    step(run)
    assert snapshot(lay) == run["base"]


def test_decisions_survive_new_photos(run):
    lay = run["lay"]
    (run["wd"] / "decisions.yaml").write_text(run["decisions"])
    copy_photos(run["wd"] / "src", NEW)
    snakemake(run["wd"], run["cfg"])
    refine = json.loads(lay.refine_manifest.read_text())
    assert refine["stats"]["mode"] == "extend" and refine["stats"]["new_faces"] >= len(NEW)
    assert faceset_of(lay, "p01") == "faceset_001" and len(refine["facesets"]) > 5  # numbers stay; new ones after
    assert all(int(n.split("_")[1]) > 5 for n in refine["facesets"] if any("/p08/" in p or "/p09/" in p
                                                                          for _, p in refine["facesets"][n]["faces"]))
    _check_all_decisions(lay, run)


def test_decisions_survive_a_fresh_results_folder(run):
    wd = run["wd"]
    cfg = _config(wd, "results_fresh")
    snakemake(wd, cfg)
    fresh = Layout(wd / "results_fresh")
    assert json.loads(fresh.refine_manifest.read_text())["stats"]["mode"] == "fresh"
    _check_all_decisions(fresh, run)
    shutil.rmtree(fresh.results)
