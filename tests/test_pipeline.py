"""The Snakemake pipeline end to end: no-op dry runs, incremental reruns, threshold changes, profiles, report."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import FACES, copy_photos, needs_shared
from pipeline_util import planned, rules_of, snakemake, write_config

from facesets.embed.cache import FaceCache
from facesets.embed.scan import shard_of

pytestmark = [needs_shared, pytest.mark.slow]

A = ["deepface/p01/img1.jpg", "deepface/p01/img2.jpg", "deepface/p01/img4.jpg", "deepface/p03/img8.jpg",
     "deepface/p03/img9.jpg", "deepface/p04/img3.jpg", "deepface/_group/couple.jpg"]
B = ["deepface/p05/img16.jpg", "deepface/p06/img13.jpg", "deepface/p01/img1.jpg"]  # last: same bytes as in A


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    wd = tmp_path_factory.mktemp("pipe")
    a, b = wd / "src_a", wd / "src_b"
    copy_photos(a, A)
    copy_photos(b, B)
    cfg = write_config(wd, {"alpha": a, "beta": b}, refine={"min_faces": 2})
    sources_before = _inode_state(a, b)
    old_umask = os.umask(0o022)  # the run's outputs must follow it (they used to be 0600 whatever it was)
    try:
        snakemake(wd, cfg)
    finally:
        os.umask(old_umask)
    wd.joinpath("sources_before.json").write_text(json.dumps(sources_before))
    return wd, cfg, a, b


def _inode_state(*roots) -> dict:
    """Per source file: link count and ctime, which any hard link made to it changes."""
    return {str(p): [p.stat().st_nlink, p.stat().st_ctime_ns] for r in roots for p in sorted(r.rglob("*")) if p.is_file()}


def test_default_run_leaves_source_inodes_untouched(built):
    wd, cfg, a, b = built
    before = json.loads(wd.joinpath("sources_before.json").read_text())
    assert _inode_state(a, b) == before
    links = [p for p in (wd / "results/identities").rglob("*") if p.is_symlink()]
    assert links and all(p.resolve().is_relative_to(a) or p.resolve().is_relative_to(b) for p in links)


def test_outputs_follow_the_umask(built):
    wd, *_ = built
    res = wd / "results"
    files = [p for p in res.rglob("*") if p.is_file() and not p.is_symlink()]
    kinds = {".png", ".fsz", ".json", ".html", ".npz", ".csv"}
    assert kinds <= {p.suffix for p in files}
    wrong = {str(p.relative_to(res)): oct(p.stat().st_mode & 0o777) for p in files if p.stat().st_mode & 0o777 != 0o644}
    assert not wrong


def test_cache_has_both_sources_and_cross_source_alias(built):
    wd, _, _, _ = built
    cache = FaceCache.load(wd / "results/cache/faces.npz")
    by = {(e["source"], e["path"]): e for e in cache.files}
    assert len(by) == len(A) + len(B)
    assert by[("beta", "deepface/p01/img1.jpg")]["status"] == "alias"
    assert by[("beta", "deepface/p01/img1.jpg")]["alias_of"] == "alpha/deepface/p01/img1.jpg"
    assert cache.sources["alpha"].endswith("src_a")
    assert (wd / "results/cache/faces.csv").is_file()
    assert list((wd / "results/logs/embed_shard").glob("*.log"))
    assert list((wd / "results/benchmarks/embed_shard").glob("*.tsv"))


def test_noop_dry_run(built):
    wd, cfg, _, _ = built
    assert planned(wd, cfg) == []


def test_adding_photos_reruns_only_their_shard(built):
    wd, cfg, a, _ = built
    new = ["deepface/p08/img38.jpg", "deepface/p09/img34.jpg"]
    copy_photos(a, new)
    shards = {shard_of(rel, 2) for rel in new}
    jobs = planned(wd, cfg)
    counts = rules_of(jobs)
    embed_jobs = {w for r, w in jobs if r == "embed_shard"}
    assert embed_jobs == {f"source=alpha, shard={s:03d}" for s in shards}
    assert counts["merge_cache"] == 1 and counts["inspect_cache"] == 1
    snakemake(wd, cfg)
    embedded = 0
    for s in shards:
        summary = json.loads((wd / f"results/cache/shards/alpha/shard_{s:03d}.json").read_text())
        embedded += summary["embedded"]
    assert embedded == len(new)  # only the new photos were embedded
    assert planned(wd, cfg) == []
    cache = FaceCache.load(wd / "results/cache/faces.npz")
    assert {"alpha/" + r for r in new} <= set(cache.face_path.tolist())


def test_removing_a_photo_reruns_only_its_shard(built):
    wd, cfg, a, _ = built
    gone = "deepface/p09/img34.jpg"  # added by the test above
    listing = wd / f"results/cache/listing/alpha/shard_{shard_of(gone, 2):03d}.tsv"
    others = {p: p.stat().st_mtime_ns for p in (wd / "results/cache/listing").rglob("*.tsv") if p != listing}
    assert gone in listing.read_text()
    (a / gone).unlink()
    jobs = planned(wd, cfg)
    only = f"source=alpha, shard={shard_of(gone, 2):03d}"
    assert {w for r, w in jobs if r == "embed_shard"} == {only}
    assert {w for r, w in jobs if r == "shard_listing"} == {only}
    assert gone in listing.read_text()  # the dry run wrote nothing: parsing only reads
    snakemake(wd, cfg)
    assert gone not in listing.read_text()
    assert {p: p.stat().st_mtime_ns for p in others} == others  # the other shards' listings are untouched
    summary = json.loads((wd / f"results/cache/shards/alpha/shard_{shard_of(gone, 2):03d}.json").read_text())
    assert summary["removed"] == 1 and summary["embedded"] == 0
    assert "alpha/" + gone not in set(FaceCache.load(wd / "results/cache/faces.npz").face_path.tolist())
    assert planned(wd, cfg) == []


def test_threshold_free_settings_do_not_rerun_embed(built):
    wd, cfg, _, _ = built
    data = yaml.safe_load(cfg.read_text())
    data["embed"]["io_threads"] = 1  # a speed knob, not a result-changing setting
    other = wd / "config_threads.yaml"
    other.write_text(yaml.safe_dump(data))
    assert planned(wd, other) == []
    data["model"]["det_thresh"] = 0.6  # changes the records: every shard re-embeds
    other.write_text(yaml.safe_dump(data))
    assert rules_of(planned(wd, other))["embed_shard"] == 4


def test_unknown_config_key_fails_before_work(built):
    wd, cfg, _, _ = built
    bad = wd / "bad.yaml"
    bad.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "refine": {"x": 1}, "bogus_key": 1}))
    out = snakemake(wd, bad, "-n", check=False)
    assert out.returncode != 0
    assert "bogus_key" in out.stdout + out.stderr


def test_identity_outputs_and_threshold_change_reruns_only_refine(built):
    wd, cfg, _, _ = built
    assert planned(wd, cfg) == []
    manifest = json.loads((wd / "results/identities/facesets/refine_manifest.json").read_text())
    assert manifest["kind"] == "refine" and manifest["params"]["merge_threshold"] == 0.40
    assert (wd / "results/identities/raw/manifest.json").is_file()
    assert (wd / "results/cache/faces.duplicates.json").is_file()
    assert (wd / "results/cache/enrich.npz").is_file()
    data = yaml.safe_load(cfg.read_text())
    data["refine"] = {**data["refine"], "merge_threshold": 0.30}
    changed = wd / "config_merge.yaml"
    changed.write_text(yaml.safe_dump(data))
    counts = rules_of(planned(wd, changed))
    assert counts["refine"] == 1
    for rule in ("embed_shard", "merge_cache", "inspect_cache", "cluster", "dedup_report", "enrich"):
        assert counts[rule] == 0, (rule, counts)


def test_top_n_change_rewrites_only_bundles(built):
    wd, cfg, _, _ = built
    export = wd / "results/export"
    assert json.loads((export / "verify.json").read_text())["ok"] is True
    assert json.loads((wd / "results/curation/verify.json").read_text())["ok"] is True
    assert planned(wd, cfg) == []
    data = yaml.safe_load(cfg.read_text())
    data["export"] = {"top_n": 1}
    changed = wd / "config_topn.yaml"
    changed.write_text(yaml.safe_dump(data))
    counts = rules_of(planned(wd, changed))
    assert counts["export_bundles"] == 1 and counts["verify_export"] == 1
    assert counts["apply"] == 1 and counts["verify_fsz"] == 1  # the corpus follows the new bundles
    for rule in ("embed_shard", "merge_cache", "cluster", "refine", "enrich", "export_crops", "stage_worker",
                 "run_worker", "plan_neardup"):
        assert counts[rule] == 0, (rule, counts)
    pngs = {p: p.stat().st_mtime_ns for p in export.rglob("*.png")}
    snakemake(wd, changed)
    assert {p: p.stat().st_mtime_ns for p in export.rglob("*.png")} == pngs
    manifest = json.loads((export / "manifest.json").read_text())
    with_members = [f for f in manifest["facesets"] if f["n_members"]]
    assert with_members and len(list(export.rglob("*_top1.fsz"))) == len(with_members)
    assert not list(export.rglob("*_top30.fsz"))


def test_curation_plans_and_apply(built):
    wd, cfg, _, _ = built
    snakemake(wd, cfg)  # back to the base config after the earlier tests' changes
    assert planned(wd, cfg) == []
    for p in ("occlusion", "consolidate", "bytedup", "neardup", "multiface"):
        plan = json.loads((wd / f"results/curation/plans/{p}.json").read_text())
        assert plan["pass"] == p
    corpus = json.loads((wd / "results/facesets_swap_ready/manifest.json").read_text())
    assert corpus["kind"] == "curated" and corpus["provenance"]
    data = yaml.safe_load(cfg.read_text())
    data["curation"] = {"neardup": {"similarity": 0.99}}
    changed = wd / "config_neardup.yaml"
    changed.write_text(yaml.safe_dump(data))
    counts = rules_of(planned(wd, changed))
    assert counts["plan_neardup"] == 1 and counts["plan_multiface"] == 1 and counts["apply"] == 1
    for rule in ("stage_worker", "run_worker", "plan_occlusion", "plan_consolidate", "plan_bytedup",
                 "export_crops", "export_bundles", "refine"):
        assert counts[rule] == 0, (rule, counts)
    plans_only = rules_of(planned(wd, changed, "plans"))
    assert plans_only["apply"] == 0 and plans_only["plan_neardup"] == 1


def test_profile_routes_workers_to_another_interpreter(built, tmp_path):
    """A profile (like profiles/dml) names a workers file: interpreter + path map, no rerun of anything else."""
    import site
    import venv

    wd, cfg, _, _ = built
    env_dir = tmp_path / "winvenv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    sp = next((env_dir / "lib").glob("python3*/site-packages"))
    (sp / "parent.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    export = (wd / "results/export").resolve()
    mapped = tmp_path / "E_drive"
    mapped.symlink_to(export)
    workers = tmp_path / "workers.yaml"
    workers.write_text(yaml.safe_dump({"workers": {"python": str(env_dir / "bin/python"),
                                                   "path_map": [[str(export) + "/", str(mapped) + "/"]]}}))
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump({"config": [f"workers_file={workers}"]}))
    snakemake(wd, cfg)
    assert planned(wd, cfg, "--profile", str(profile)) == []  # switching the worker route reruns nothing
    results = wd / "results/curation/multiface_results.json"
    store = wd / "results/cache/detections.sqlite"
    snakemake(wd, cfg, "--profile", str(profile), "-R", "stage_worker", "run_worker", "--until", "run_worker")
    data = json.loads(results.read_text())
    assert data["python"] is None and data["detections"]["detector_runs"] == 0  # all read from the store
    aside = tmp_path / "store_aside"
    aside.mkdir()
    files = list(store.parent.glob(store.name + "*"))  # with its -wal and -shm
    for f in files:
        f.rename(aside / f.name)  # a store that holds nothing: the audit hands every crop to the face worker
    try:
        snakemake(wd, cfg, "--profile", str(profile), "-R", "run_worker", "--until", "run_worker")
        again = json.loads(results.read_text())
        assert again["python"] == str(env_dir / "bin/python")
        assert again["detections"]["detector_runs"] == len(again["results"]) > 0
        assert again["results"] == data["results"]
    finally:
        for f in store.parent.glob(store.name + "*"):
            f.unlink()
        for f in files:
            (aside / f.name).rename(f)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser(args, url, tmp):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp}", "--window-size=1200,1000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_a_real_browser(built, tmp_path):
    wd, cfg, _, _ = built
    snakemake(wd, cfg)
    report = wd / "results/report/index.html"
    assert report.is_file()
    shot = tmp_path / "overview.png"
    _browser([f"--screenshot={shot}"], report.as_uri(), tmp_path / "u1")
    assert shot.is_file() and shot.stat().st_size > 10_000
    dom = _browser(["--dump-dom"], report.as_uri(), tmp_path / "u2").stdout
    assert "Corpus evolution" in dom and "active_pngs" in dom and "verify-fsz" in dom
    export = json.loads((wd / "results/export/manifest.json").read_text())
    sheet_name, n = next((f["name"], f["n_members"]) for f in export["facesets"] if f["n_members"])
    assert f"{sheet_name}.html" in dom
    sheet = wd / "results/report" / f"{sheet_name}.html"
    shot2 = tmp_path / "sheet.png"
    _browser([f"--screenshot={shot2}"], sheet.as_uri(), tmp_path / "u3")
    assert shot2.is_file() and shot2.stat().st_size > 10_000
    dom2 = _browser(["--dump-dom"], sheet.as_uri(), tmp_path / "u4").stdout
    sheet_html = dom2[dom2.index('id="sheet"'):]
    sheet_html = sheet_html[: sheet_html.index("Left out at export")]
    assert sheet_html.count('alt="crop"') == n  # the contact sheet shows every crop of the faceset
    from PIL import Image
    assert Image.open(shot2).size == (1200, 1000)


def test_threshold_sweep(built):
    """Keys of refine and curation swept together; every point runs export, curation and apply in its own folder
    and is scored on its final corpus. The point with the pipeline's own values reproduces the pipeline's
    evaluation exactly, and detects no crop (the store holds them all)."""
    import csv

    wd, cfg, a, _ = built
    data = yaml.safe_load(cfg.read_text())
    data["evaluate"] = {"labels": str(FACES / "labels.csv"), "root": str(a)}
    data["sweep"] = {"params": {"refine.initial_threshold": [0.5, 0.55], "curation.neardup.similarity": [0.9, 0.95]}}
    sweep_cfg = wd / "config_sweep.yaml"
    sweep_cfg.write_text(yaml.safe_dump(data))
    snakemake(wd, sweep_cfg)
    sweeps = wd / "results/sweeps"
    with open(sweeps / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and sum(r["best"] == "True" for r in rows) == 1
    header = list(rows[0])
    assert header[:5] == ["combo", "curation.neardup.similarity", "refine.initial_threshold", "bcubed_precision",
                          "coverage"]  # precision and coverage side by side
    assert {"facesets", "bcubed_f", "pairwise_f", "nmi", "coverage_of_gated", "identities_split", "final_pngs",
            "refine_coverage", "lost"} <= set(header)
    assert all(0.0 <= float(r["bcubed_f"]) <= 1.0 and float(r["coverage"]) <= float(r["refine_coverage"])
               for r in rows)
    assert (sweeps / "precision_coverage.png").stat().st_size > 1000
    assert (sweeps / "plot_refine_initial_threshold.png").stat().st_size > 1000
    assert (sweeps / "plot_curation_neardup_similarity.png").stat().st_size > 1000
    assert "sweeps/summary.html" in (wd / "results/report/index.html").read_text()
    base = sweeps / "curation.neardup.similarity~0.95__refine.initial_threshold~0.55"
    assert (base / "facesets_swap_ready/manifest.json").is_file() and list((base / "export").rglob("*.fsz"))
    ours, pipeline = json.loads((base / "metrics.json").read_text()), json.loads((wd / "results/evaluation.json").read_text())
    for k in ("bcubed_precision", "bcubed_recall", "coverage", "coverage_of_gated", "identities_split"):
        assert ours[k] == pipeline[k], k
    assert ours["lost"] == len(pipeline["loss"])
    audit = json.loads((base / "curation/multiface_results.json").read_text())
    assert audit["detections"]["detector_runs"] == 0  # the pipeline's crops, found in its detection store
    ours_crops = list((base / "export").glob("faceset_*/faces/*.png"))
    theirs = {c.name: c for c in (wd / "results/export").glob("faceset_*/faces/*.png")}
    assert ours_crops and all(c.stat().st_ino == theirs[c.name].stat().st_ino for c in ours_crops)  # linked, not cut
    # one more value: only the two new combinations run
    data["sweep"]["params"]["refine.initial_threshold"].append(0.6)
    sweep_cfg.write_text(yaml.safe_dump(data))
    jobs = planned(wd, sweep_cfg)
    points = {w for r, w in jobs if r == "sweep_point"}
    assert points == {"combo=curation.neardup.similarity~0.9__refine.initial_threshold~0.6",
                      "combo=curation.neardup.similarity~0.95__refine.initial_threshold~0.6"}
    counts = rules_of(jobs)
    for rule in ("embed_shard", "merge_cache", "refine", "cluster", "export_crops"):
        assert counts[rule] == 0, (rule, counts)


def test_sweeping_a_setting_that_is_not_a_number_is_one_line(built):
    wd, cfg, *_ = built
    data = yaml.safe_load(cfg.read_text())
    data["sweep"] = {"params": {"curation.occlusion.model": [1, 2]}}
    bad = wd / "config_bad_sweep.yaml"
    bad.write_text(yaml.safe_dump(data))
    out = snakemake(wd, bad, "-n", check=False)
    assert out.returncode != 0
    assert "facesets: sweep.params key 'curation.occlusion.model' is not a numeric setting" in out.stdout + out.stderr
    assert 'sweep.py", line' not in out.stdout + out.stderr  # one line, no traceback
    data["sweep"] = {"params": {"export.min_face_short": [90, 90.5]}}  # two points that would be one run
    bad.write_text(yaml.safe_dump(data))
    out = snakemake(wd, bad, "-n", check=False)
    assert out.returncode != 0 and "holds a fraction, but export.min_face_short is a whole number" in out.stdout + out.stderr


def test_cluster_generic_profile_runs_shards_as_jobs(built, tmp_path):
    """The demo-sized embed stage through snakemake-executor-plugin-cluster-generic: every shard is a
    separately submitted job and the cache equals the local run's."""
    from conftest import REPO

    wd, cfg, a, b = built
    data = yaml.safe_load(cfg.read_text())
    data["results"] = str(tmp_path / "results")
    cluster_cfg = tmp_path / "config.yaml"
    cluster_cfg.write_text(yaml.safe_dump(data))
    profile = tmp_path / "profile"
    profile.mkdir()
    prof = yaml.safe_load((REPO / "profiles/cluster-generic/config.yaml").read_text())
    prof["cluster-generic-submit-cmd"] = prof["cluster-generic-submit-cmd"].replace(
        "profiles/cluster-generic/submit_local.sh", str(REPO / "profiles/cluster-generic/submit_local.sh"))
    (profile / "config.yaml").write_text(yaml.safe_dump(prof))
    jobs_dir = tmp_path / "jobs"
    env_cmd = ["env", f"FACESETS_CLUSTER_DIR={jobs_dir}"]
    out = subprocess.run(env_cmd + [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                                    "-d", str(tmp_path), "--configfile", str(cluster_cfg), "--profile", str(profile),
                                    str(tmp_path / "results/cache/faces.npz")],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-5000:]
    submitted = [line.split("\t") for line in (jobs_dir / "submitted.tsv").read_text().splitlines()]
    rules = [s[1] for s in submitted]
    assert rules.count("embed_shard") == 4 and rules.count("merge_cache") == 1  # 2 sources x 2 shards
    assert all(s[2] == "mem_mb=4000" for s in submitted if s[1] == "embed_shard")  # the rule's own resources
    local = FaceCache.load(wd / "results/cache/faces.npz")
    remote = FaceCache.load(tmp_path / "results/cache/faces.npz")
    key = lambda c: sorted(zip(c.face_keys(), c.face_path.tolist()))  # noqa: E731
    assert key(remote) == key(local)
    order_l, order_r = np.argsort(local.face_keys()), np.argsort(remote.face_keys())
    np.testing.assert_allclose(local.embeddings[order_l], remote.embeddings[order_r], atol=1e-5)
    assert {(e["source"], e["path"], e["status"]) for e in remote.files} == \
        {(e["source"], e["path"], e["status"]) for e in local.files}


def test_undo_returns_the_pipeline_to_not_applied(built):
    """After undo the corpus, the apply record and the report agree: the plans are not applied."""
    wd, cfg, *_ = built
    res = wd / "results"
    corpus = res / "facesets_swap_ready"
    snakemake(wd, cfg)  # earlier tests may have left something (the report) to bring up to date
    assert planned(wd, cfg) == []
    out = subprocess.run([sys.executable, "-m", "facesets", "undo", str(corpus)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not (res / "curation/applied.json").exists() and not (corpus / "manifest.json").exists()
    assert "not applied" in (res / "report/index.html").read_text()
    assert "apply" in rules_of(planned(wd, cfg))
    snakemake(wd, cfg)
    assert (res / "curation/applied.json").is_file() and (corpus / "manifest.json").is_file()
    assert "Curation: <b>applied</b>" in (res / "report/index.html").read_text()
    assert planned(wd, cfg) == []


def test_audit_takes_the_results_folder(built):
    wd, cfg, *_ = built
    out = subprocess.run([sys.executable, "-m", "facesets", "audit", str(wd / "results"), "--no-verify"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "audit: 0 problem(s)" in out.stdout
    refine = json.loads((wd / "results/identities/facesets/refine_manifest.json").read_text())
    name, fs = next(iter(refine["facesets"].items()))
    fs["faces"].append(fs["faces"][0])  # a planted duplicate
    bad = wd / "planted_refine.json"
    bad.write_text(json.dumps(refine))
    out = subprocess.run([sys.executable, "-m", "facesets", "audit", str(wd / "results"), "--no-verify",
                          "--refine", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "listed 2 times by refine" in out.stdout, out.stdout


def test_reapplying_curation_runs_the_detector_on_no_crop(built):
    """Detections are stored by crop content: the export's checks fill the store, both verifies read it, and a
    change that only re-applies curation makes no detector run at all."""
    wd, cfg, *_ = built
    snakemake(wd, cfg)
    res = wd / "results"
    exported = json.loads((res / "export/verify.json").read_text())
    assert exported["detections"]["detector_runs"] == 0 and exported["detections"]["detections_reused"] > 0
    snakemake(wd, cfg, "-R", "run_worker", "--until", "run_worker")  # (an earlier test may have emptied the store)
    multiface = json.loads((res / "curation/multiface_results.json").read_text())  # (640, 0.3) is a check setting
    assert multiface["detections"]["detector_runs"] == 0 and multiface["python"] is None
    assert multiface["detections"]["detections_reused"] == len(multiface["results"]) > 0
    data = yaml.safe_load(cfg.read_text())
    data.setdefault("curation", {})["neardup"] = {"similarity": 0.9}
    changed = wd / "config_neardup.yaml"
    changed.write_text(yaml.safe_dump(data))
    jobs = rules_of(planned(wd, changed))
    assert jobs["verify_fsz"] == 1 and not jobs["export_crops"] and not jobs["verify_export"]
    snakemake(wd, changed)
    corpus = json.loads((res / "curation/verify.json").read_text())
    assert corpus["ok"] and corpus["detections"]["detector_runs"] == 0, corpus["detections"]
    snakemake(wd, cfg)  # back to the module's settings for the tests after this one
    out = subprocess.run([sys.executable, "-m", "facesets", "audit", str(res), "--config", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "audit: 0 problem(s)" in out.stdout, out.stdout + out.stderr
    assert "'detector_runs': 0" in out.stdout, out.stdout  # the audit's re-detection: every verdict stored
