"""The workflow itself: lint-clean, parsing writes nothing and starts no process, one way for settings."""
import json
import subprocess
import sys

import pytest

from conftest import REPO, copy_photos, needs_shared
from facesets.core import workflow as wf
from pipeline_util import write_config


def _snakemake(workdir, cfg, *args):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(cfg), "--cores", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.fixture
def fresh(tmp_path):
    src = tmp_path / "src"
    copy_photos(src, ["deepface/p01/img1.jpg", "deepface/p01/img2.jpg"])
    cfg = write_config(tmp_path, {"s": src}, curation={"occlusion": {"enabled": "auto"}},
                       workers={"python": sys.executable})
    return tmp_path, cfg


@needs_shared
def test_lint_is_clean(fresh):
    wd, cfg = fresh
    out = _snakemake(wd, cfg, "--lint")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "Lints for" not in out.stdout + out.stderr


@needs_shared
@pytest.mark.parametrize("args", [["--lint"], ["-n"], ["--unlock"], ["--list-rules"], ["--report", "REPORT"]])
def test_parsing_writes_nothing_and_starts_no_process(fresh, args, monkeypatch):
    """Not the results folder, not a listing; and no worker-interpreter probe (the worker python below is a
    script that would leave a mark if anything started it)."""
    wd, cfg = fresh
    marker = wd / "probe_ran"
    fake_python = wd / "fake_python"
    fake_python.write_text(f"#!/bin/sh\ntouch {marker}\nexec {sys.executable} \"$@\"\n")
    fake_python.chmod(0o755)
    text = cfg.read_text().replace(sys.executable, str(fake_python))
    cfg.write_text(text)
    args = [str(wd / "report.html") if a == "REPORT" else a for a in args]
    out = _snakemake(wd, cfg, *args)
    assert not (wd / "results").exists(), (args, sorted(str(p) for p in (wd / "results").rglob("*"))[:10])
    assert not marker.exists(), "parsing started the worker interpreter"
    if args[0] in ("--lint", "-n", "--unlock", "--list-rules"):
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_settings_is_one_sorted_json_per_rule():
    cfg = {"refine": {"b": 2, "a": 1}, "model": {"pack": "p", "det_size": 640, "providers": ["CPU"]},
           "curation": {"neardup": {"similarity": 0.95}, "bytedup": {"family_regex": "x", "other": 1}}}
    assert wf.settings(cfg, "refine") == '{"refine": {"a": 1, "b": 2}}'
    both = json.loads(wf.settings(cfg, ("model", ["pack", "det_size"]), "curation.neardup",
                                  ("curation.bytedup", ["family_regex"])))
    assert both == {"model": {"pack": "p", "det_size": 640},
                    "curation": {"neardup": {"similarity": 0.95}, "bytedup": {"family_regex": "x"}}}


def test_speed_settings_reach_jobs_outside_params(monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    cfg = {"model": {"providers": ["CUDAExecutionProvider"], "root": "~/.insightface"},
           "embed": {"io_threads": 3, "ort_threads": 1, "flush_every": 50}, "workers": {"python": None}}
    wf.export_runtime(cfg)
    import os

    assert json.loads(os.environ[wf.RUNTIME_ENV])["model"]["providers"] == ["CUDAExecutionProvider"]
    assert os.environ["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_needs_sources():
    assert wf.needs_sources(["snakemake", "-n"]) and wf.needs_sources(["snakemake", "--cores", "2"])
    assert not wf.needs_sources(["snakemake", "--lint"]) and not wf.needs_sources(["snakemake", "--unlock"])
