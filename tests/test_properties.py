"""Property-based tests: apply(plan) then undo is the identity on any generated corpus; plans, manifests
and journals round-trip through their files."""
import hashlib
import json
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facesets.core import atomic
from facesets.curation import corpus
from facesets.curation.corpus import Journal, inventory

NAMES = st.sampled_from([f"faceset_{i:03d}" for i in range(1, 6)] + ["faceset_001_2010-13", "alice"])


@st.composite
def worlds(draw):
    """An export of a few facesets with random PNG-named files, and random plans over it."""
    facesets = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    crops = {f: draw(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=5)) for f in facesets}
    changes = []
    for f, items in crops.items():
        for i in range(len(items)):
            if draw(st.booleans()):
                changes.append({"action": "drop", "faceset": f, "crop": f"c{i}.png", "reason": "generated"})
        kind = draw(st.sampled_from(["none", "none", "_masked", "_thin", "merge"]))
        if kind == "merge" and len(facesets) > 1:
            into = draw(st.sampled_from([x for x in facesets if x != f]))
            changes.append({"action": "merge", "faceset": f, "into": into, "reason": "generated"})
        elif kind in ("_masked", "_thin"):
            changes.append({"action": "quarantine", "faceset": f, "to": kind, "reason": "generated"})
    split = draw(st.integers(0, len(changes)))
    plans = [{"pass": "occlusion", "params": {}, "changes": changes[:split]},
             {"pass": "neardup", "params": {}, "changes": changes[split:]}]
    return crops, plans


def _build_export(root, crops):
    for f, items in crops.items():
        for i, data in enumerate(items):
            atomic.write_bytes(root / f / "faces" / f"c{i}.png", data)
        with zipfile.ZipFile(root / f / f"{f}_all.fsz", "w") as zf:
            for i, data in enumerate(items):
                zf.writestr(f"{i:04d}_c{i}.png", data)


def _tree(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".curation" not in p.parts}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=worlds())
def test_apply_then_undo_is_identity(tmp_path_factory, world):
    crops, plans = world
    base = tmp_path_factory.mktemp("w")
    export, corp = base / "export", base / "corpus"
    _build_export(export, crops)
    corpus.mirror(export, corp)
    before = _tree(corp)
    stats = corpus.apply(export, corp, plans)
    assert corpus.apply(export, corp, plans)["operations"] == 0  # idempotent
    inv = inventory(export)
    want = corpus.desired(inv, plans)
    for f in crops:  # each faceset is where the plans put it, each crop active or dropped accordingly
        home = corp / want.location[f] / f if want.location[f] else corp / f
        assert home.is_dir()
        for i in range(len(crops[f])):
            dropped = (f, f"c{i}.png") in want.dropped
            assert (home / "faces" / ("_dropped" if dropped else "") / f"c{i}.png").is_file()
    assert stats["counts"]["dropped"] == len(want.dropped)
    corpus.undo(corp)
    assert _tree(corp) == before


@given(plan=st.fixed_dictionaries({
    "pass": st.sampled_from(["occlusion", "consolidate", "bytedup", "neardup", "multiface"]),
    "params": st.dictionaries(st.text(min_size=1, max_size=8), st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    "changes": st.lists(st.fixed_dictionaries({"action": st.just("drop"), "faceset": st.text(min_size=1, max_size=10),
                                               "crop": st.text(min_size=1, max_size=10),
                                               "reason": st.text(max_size=30)}), max_size=5)}))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_plan_round_trip(tmp_path_factory, plan):
    path = tmp_path_factory.mktemp("p") / "plan.json"
    atomic.write_json(path, plan)
    assert atomic.read_json(path) == plan


@given(entries=st.lists(st.fixed_dictionaries({
    "run": st.integers(1, 5), "kind": st.sampled_from(["sync", "apply"]),
    "op": st.sampled_from(["move", "create"]), "src": st.text(max_size=20), "dst": st.text(max_size=20)}), max_size=20),
    torn=st.booleans())
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_journal_round_trip_survives_a_torn_line(tmp_path_factory, entries, torn):
    root = tmp_path_factory.mktemp("j")
    j = Journal(root)
    half = len(entries) // 2
    for e in entries[:half]:
        j.write(e)
    j.dir.mkdir(parents=True, exist_ok=True)
    if torn:  # a kill in the middle of an append
        with open(j.path, "a", encoding="utf-8") as fh:
            fh.write('{"run": 1, "op": "mo')
    for e in entries[half:]:
        j.write(e)
    assert j.entries() == entries


@given(groups=st.dictionaries(st.from_regex(r"faceset_\d{3}", fullmatch=True),
                              st.lists(st.tuples(st.from_regex(r"[0-9a-f]{8}:[0-9]", fullmatch=True),
                                                 st.text(min_size=1, max_size=20)), max_size=4), max_size=4))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_identity_manifest_round_trip(tmp_path_factory, groups):
    from facesets.identities import shared as ids

    out = tmp_path_factory.mktemp("m")
    manifest = ids.header("refine", "cache.npz", {"x": 1})
    manifest["facesets"] = {n: {"faces": [list(f) for f in faces]} for n, faces in groups.items()}
    ids.write_manifest(out, "refine_manifest.json", manifest)
    assert json.loads((out / "refine_manifest.json").read_text()) == manifest
    assert ids.read_ledger(out) == manifest
