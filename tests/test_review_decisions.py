"""The decisions file: its schema and the checks a schema cannot say, each stage's part, writing it with the
person's comments kept, and how refine, the export and the plans apply their part (synthetic data; the whole
pipeline on the shared photos is tests/test_review_pipeline.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facesets.core import runlock
from facesets.core.layout import Layout
from facesets.curation.state import Crop, Inventory, desired
from facesets.review import decisions as D
from facesets.review import membership, steer
from facesets.review.editing import Editor

K1, K2, K3 = (f"{c * 64}:0" for c in "abc")


def test_a_missing_file_means_no_decisions(tmp_path):
    assert D.load(tmp_path / "nope.yaml") == D.empty()
    (tmp_path / "empty.yaml").write_text("# nothing decided yet\nnames:\nkeep:\n")
    assert D.load(tmp_path / "empty.yaml") == D.empty()


@pytest.mark.parametrize("data, entry", [
    ({"names": {"faceset_3x": "anna"}}, "'faceset_3x'"),
    ({"remove": {"faceset_003": ["abc:1"]}}, "remove.faceset_003.0: 'abc:1' is not a face key"),
    ({"assign": {K1: "anna"}}, f"assign.{K1}: 'anna' is not a faceset number"),
    ({"same": [["faceset_001"]]}, "same.0"),
    ({"different": [["faceset_001", "faceset_002", "faceset_003"]]}, "different.0"),
    ({"hide": "faceset_001"}, "hide: 'faceset_001' is not of type 'array'"),
    ({"bogus": 1}, "'bogus'"),
])
def test_a_malformed_entry_is_named(data, entry):
    with pytest.raises(D.DecisionsError) as err:
        D.check(data, "my.yaml")
    assert "decisions file my.yaml is not valid" in str(err.value) and entry in str(err.value), str(err.value)


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", "..", ".hidden", "_merged", "CON", "nul.txt", "com1",
                                  "faceset_004", "x" * 65, " anna", "anna:1", "a*b", "tab\there", ""])
def test_names_must_be_safe_as_file_names(name):
    assert D.name_problem(name), name
    with pytest.raises(D.DecisionsError, match="names.faceset_001"):
        D.check({"names": {"faceset_001": name}})


@pytest.mark.parametrize("name", ["anna", "Zoë", "José María", "Анна", "李小龍", "O'Brien", "anna-2 (2019)", "ömer.k"])
def test_names_may_use_any_unicode_letters(name):
    assert D.name_problem(name) is None
    assert D.check({"names": {"faceset_001": name}})["names"]["faceset_001"] == name


def test_names_are_unique_and_contradictions_are_named():
    with pytest.raises(D.DecisionsError, match="is already the name of faceset_001"):
        D.check({"names": {"faceset_001": "Anna", "faceset_002": "anna"}})
    with pytest.raises(D.DecisionsError, match=r"different.0: faceset_002 and faceset_001 are also the same person"):
        D.check({"same": [["faceset_001", "faceset_002"]], "different": [["faceset_002", "faceset_001"]]})
    with pytest.raises(D.DecisionsError, match="same.1: faceset_002 is already in same.0"):
        D.check({"same": [["faceset_001", "faceset_002"], ["faceset_002", "faceset_003"]]})
    with pytest.raises(D.DecisionsError, match="assigned to faceset_001 and removed from it"):
        D.check({"assign": {K1: "faceset_001"}, "remove": {"faceset_001": [K1]}})


def test_each_stage_gets_only_its_part_in_an_order_free_form():
    d = D.check({"names": {"faceset_002": "bo", "faceset_001": "anna"}, "keep": [K2, K1], "hide": ["faceset_009"],
                 "remove": {"faceset_001": [K2, K1]}, "different": [["faceset_005", "faceset_003"]],
                 "same": [["faceset_004", "faceset_002"]], "anchors": {"faceset_001": [K1]}})
    assert json.loads(D.part(d, "export_bundles")) == {"names": {"faceset_001": "anna", "faceset_002": "bo"}}
    assert json.loads(D.part(d, "export_crops")) == {"hide": ["faceset_009"]}
    assert json.loads(D.part(d, "drops")) == {"keep": [K1, K2]}
    assert json.loads(D.part(d, "consolidate")) == {"same": [["faceset_004", "faceset_002"]],
                                                    "different": [["faceset_003", "faceset_005"]]}
    assert json.loads(D.part(d, "refine")) == {"remove": {"faceset_001": [K1, K2]}, "assign": {},
                                               "different": [["faceset_003", "faceset_005"]]}
    shuffled = D.check({**d, "keep": [K1, K2], "names": {"faceset_001": "anna", "faceset_002": "bo"}})
    assert all(D.part(d, s) == D.part(shuffled, s) for s in D.PARTS)  # re-ordering the file re-runs nothing
    assert D.from_arg(D.part(d, "refine"))["remove"] == {"faceset_001": [K1, K2]}


# ---------------------------------------------------------------- writing the file
HAND = """# my decisions: anna is my sister
names: {faceset_003: anna}   # named at the party

# strangers from the wedding
hide:
  - faceset_009   # the photographer
keep: []
"""


def test_a_click_keeps_the_comments_and_order_of_a_hand_edited_file(tmp_path):
    path = tmp_path / "decisions.yaml"
    path.write_text(HAND)
    ed = Editor(path, tmp_path / "results", anchor_keys=lambda f: [K3])
    ed.change("name", faceset="faceset_004", name="Zoë")
    ed.change("keep", key=K1)
    ed.change("merge", faceset="faceset_017", into="faceset_003")
    text = path.read_text()
    for kept in ("# my decisions: anna is my sister", "# named at the party", "# strangers from the wedding",
                 "- faceset_009   # the photographer"):
        assert kept in text, text
    assert text.index("names:") < text.index("hide:") < text.index("keep:") < text.index("same:")
    d = D.load(path)
    assert d["names"] == {"faceset_003": "anna", "faceset_004": "Zoë"} and d["keep"] == [K1]
    assert d["same"] == [["faceset_003", "faceset_017"]] and d["hide"] == ["faceset_009"]
    assert d["anchors"] == {"faceset_004": [K3], "faceset_017": [K3], "faceset_003": [K3]}


def test_an_invalid_click_writes_nothing(tmp_path):
    path = tmp_path / "decisions.yaml"
    path.write_text(HAND)
    ed = Editor(path, tmp_path / "results")
    with pytest.raises(D.DecisionsError, match="no / or"):
        ed.change("name", faceset="faceset_004", name="../../etc")
    with pytest.raises(D.DecisionsError, match="already the name of faceset_003"):
        ed.change("name", faceset="faceset_004", name="Anna")
    assert path.read_text() == HAND


def test_the_latest_word_wins_and_undoing_empties_the_file(tmp_path):
    path = tmp_path / "decisions.yaml"
    ed = Editor(path, tmp_path / "results")
    ed.change("remove", faceset="faceset_001", key=K1)
    d = ed.change("assign", key=K1, faceset="faceset_001")  # put back: the removal goes
    assert d["remove"] == {} and d["assign"] == {K1: "faceset_001"}
    ed.change("merge", faceset="faceset_002", into="faceset_001")
    d = ed.change("different", faceset="faceset_001", other="faceset_002")  # not the same after all
    assert d["same"] == [] and d["different"] == [["faceset_001", "faceset_002"]]
    d = ed.change("merge", faceset="faceset_002", into="faceset_001")
    assert d["same"] == [["faceset_001", "faceset_002"]] and d["different"] == []
    ed.change("merge", faceset="faceset_003", into="faceset_001")
    assert D.load(path)["same"] == [["faceset_001", "faceset_002", "faceset_003"]]
    for action, args in (("unassign", {"key": K1}), ("unmerge", {"faceset": "faceset_002"}),
                         ("unmerge", {"faceset": "faceset_003"})):
        d = ed.change(action, **args)
    assert {k: v for k, v in d.items() if k != "anchors"} == {k: v for k, v in D.empty().items() if k != "anchors"}


def test_a_click_is_refused_while_a_pipeline_run_holds_the_results_folder(tmp_path):
    from review_util import run_lock_held

    lay = Layout(tmp_path / "results")
    lay.results.mkdir()
    with run_lock_held(lay):
        ed = Editor(tmp_path / "decisions.yaml", lay.results)
        with pytest.raises(runlock.RunLocked, match=r"a pipeline run holds .*pid \d+.*the decision was not written"):
            ed.change("name", faceset="faceset_001", name="anna")
        assert not (tmp_path / "decisions.yaml").exists()
    Editor(tmp_path / "decisions.yaml", lay.results).change("name", faceset="faceset_001", name="anna")
    assert D.load(tmp_path / "decisions.yaml")["names"] == {"faceset_001": "anna"}


# ---------------------------------------------------------------- refine: remove / assign / different
def _manifest() -> dict:
    fs = {"faceset_001": {"faces": [[K1, "s/a.jpg"], [K2, "s/b.jpg"]], "n_faces": 2, "n_images": 2, "removed": {}},
          "faceset_002": {"faces": [["d" * 64 + ":0", "s/d.jpg"]], "n_faces": 1, "n_images": 1, "removed": {}}}
    return {"kind": "refine", "facesets": fs, "removed": {"quality": [[K3, "s/c.jpg", "blur 3 < 40"]], "outlier": [],
                                                          "too_small": []},
            "stats": {"faces": 4, "faces_in_facesets": 3, "accounted": True}}


def test_overlay_removes_and_assigns_and_keeps_every_face_accounted_once():
    m = _manifest()
    before = json.dumps(m, sort_keys=True)
    out = membership.overlay(m, {"remove": {"faceset_001": [K2]}, "assign": {K3: "faceset_002"}})
    assert json.dumps(m, sort_keys=True) == before  # the ledger's copy is not touched
    assert [k for k, _ in out["facesets"]["faceset_001"]["faces"]] == [K1]
    assert [k for k, _ in out["facesets"]["faceset_002"]["faces"]][-1] == K3
    assert out["facesets"]["faceset_002"]["assigned"] == [K3] and out["removed"]["quality"] == []
    assert out["removed"]["decision"] == [[K2, "s/b.jpg", "not faceset_001: removed by the person's decision"]]
    assert out["stats"]["accounted"] and out["stats"]["decision_removed_total"] == 1
    assert membership.overlay(m, {"remove": {}, "assign": {}}) is m  # no decision: the manifest as it was


def test_a_decision_that_cannot_apply_is_reported_not_raised():
    out = membership.overlay(_manifest(), {"remove": {"faceset_404": [K1]}, "assign": {"e" * 64 + ":0": "faceset_001"}})
    reasons = {u["decision"]: u["reason"] for u in out["decisions"]["unapplied"]}
    assert reasons == {f"remove {K1} from faceset_404": "faceset_404 does not exist (any more)",
                       f"assign {'e' * 64}:0 to faceset_001": "no such face in the cache (its photo is gone?)"}


def test_different_facesets_are_never_merged_by_the_centroid_merge():
    e = np.eye(4, dtype=np.float32)
    emb = np.stack([e[0], e[0], 0.8 * e[0] + 0.6 * e[1], 0.8 * e[0] + 0.6 * e[1], 0.6 * e[1] + 0.8 * e[2]])
    clusters = [[0, 1], [2, 3], [4]]
    split = membership.apart({0: "faceset_001", 2: "faceset_002"}, [["faceset_002", "faceset_001"]])
    assert split(emb, clusters) == [[[0, 1]], [[2, 3], [4]]]  # the unowned cluster joins the nearer side
    assert membership.apart({}, []) is None
    assert split(emb, [[0, 1], [4]]) == [[[0, 1], [4]]]  # nothing to keep apart: one group


def test_anchors_number_a_fresh_folder_and_later_numbers_follow_them():
    from facesets.identities import shared as ids

    groups = membership.previous_groups(None, {"faceset_007": [K2]})
    named, nxt = ids.number_groups([[K1, K3], [K2]], groups, "faceset", membership.next_number(groups))
    assert named == {"faceset_007": [K2], "faceset_008": [K1, K3]} and nxt == 9


# ---------------------------------------------------------------- plans: keep / same / different
def _inv() -> Inventory:
    crops = {f"faceset_00{i}": [Crop(f"faceset_00{i}", f"c{i}{j}.png", f"{i}{j}" * 32 + ":0", 0.9 - j / 10)
                                for j in range(4 - (i > 2))] for i in range(1, 5)}
    return Inventory(crops)


def test_a_kept_crop_is_never_dropped_and_the_veto_is_listed():
    inv = _inv()
    plan = {"pass": "neardup", "params": {}, "stats": {"drop": 2}, "changes": [
        {"action": "drop", "faceset": "faceset_001", "crop": "c11.png", "reason": "near-duplicate"},
        {"action": "drop", "faceset": "faceset_001", "crop": "c12.png", "reason": "near-duplicate"}]}
    out = steer.veto_kept(plan, inv, ["12" * 32 + ":0", "ff" * 32 + ":0"])
    assert [c["crop"] for c in out["changes"]] == ["c11.png"] and out["stats"] == {"drop": 1}
    assert out["vetoed"][0]["crop"] == "c12.png" and out["vetoed"][0]["vetoed_by"] == "keep"
    assert out["decisions"]["unapplied"][0]["decision"] == f"keep {'ff' * 32}:0"
    assert steer.veto_kept(plan, inv, []) is plan


def _consolidate(group: list[str], into: str) -> dict:
    return {"pass": "consolidate", "params": {}, "stats": {}, "changes": [
        {"action": "merge", "faceset": f, "into": into, "reason": f"same identity as {into}",
         "evidence": {"group": group, "centroid_similarity": 0.9}} for f in group if f != into]}


def test_same_merges_into_the_first_listed_and_different_splits_a_group():
    inv = _inv()
    prior = desired(inv, [])
    plan = _consolidate(["faceset_001", "faceset_002", "faceset_003"], "faceset_001")
    out = steer.consolidate(plan, inv, prior, [["faceset_004", "faceset_001"]], [["faceset_001", "faceset_003"]])
    merges = {c["faceset"]: c["into"] for c in out["changes"]}
    assert merges == {"faceset_001": "faceset_004", "faceset_002": "faceset_004"}  # the person's survivor
    assert [(v["faceset"], v["vetoed_by"]) for v in out["vetoed"]] == [("faceset_003", "different")]
    same = next(c for c in out["changes"] if c["faceset"] == "faceset_001")
    assert same["decision"] == "same" and "the person's decision" in same["reason"]
    want = desired(inv, [out])
    assert want.location["faceset_003"] == "" and want.location["faceset_001"] == "_merged"
    assert {c.faceset for c in want.members(inv, "faceset_004")} == {"faceset_001", "faceset_002", "faceset_004"}


def test_hidden_facesets_go_to_hidden_and_take_no_part():
    inv = _inv()
    inv.hidden = {"faceset_002"}
    want = desired(inv, [_consolidate(["faceset_001", "faceset_002"], "faceset_001")])
    assert want.location["faceset_002"] == "_hidden" and want.location["faceset_001"] == ""
    meta = {}
    extra = steer.hide(meta, {"faceset_001": []}, ["faceset_001", "faceset_404"])
    assert meta == {"faceset_001": {"hidden": True}}
    assert extra["decisions"]["unapplied"] == [{"decision": "hide faceset_404", "reason": "faceset_404 does not exist (any more)"}]


def test_schema_ships_as_package_data():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["facesets"]
    assert "review/schema/*.yaml" in data and "review/templates/*" in data
    assert D.schema()["properties"].keys() >= set(D.SECTIONS)
