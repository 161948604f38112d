"""One run per results folder: a second run from another working folder is refused with the holder's pid
before any job starts, and Snakemake's lock left by a killed run is told apart from a live one's."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, copy_photos, identity_photos, needs_shared
from pipeline_util import snakemake, write_config

from facesets.core import runlock

pytestmark = [needs_shared, pytest.mark.slow]


def _start(workdir: Path, cfg: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(cfg), "--cores", "1"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(cond, what: str, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _holder_pid(results: Path) -> int | None:
    try:
        return json.loads((results / ".facesets-run.lock").read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


@pytest.fixture
def world(tmp_path):
    src = tmp_path / "src"
    copy_photos(src, identity_photos(24))
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cfg = write_config(tmp_path, {"s": src}, refine={"min_faces": 2})
    return tmp_path, cfg, first, second


def test_second_run_from_another_folder_is_refused_before_any_job(world):
    tmp, cfg, first, second = world
    results = tmp / "results"
    run1 = _start(first, cfg)
    try:
        _wait_for(lambda: _holder_pid(results) == run1.pid, "the first run to hold the results folder")
        assert run1.poll() is None, "the first run ended before the second could be started"
        out = snakemake(second, cfg, check=False)
        text = out.stdout + out.stderr
        assert out.returncode != 0
        assert f"pid {run1.pid}" in text and "in use by another facesets run" in text, text
        assert "Job " not in text and "rule " not in text  # refused before Snakemake scheduled anything
        locks = second / ".snakemake" / "locks"
        assert not locks.exists() or not list(locks.iterdir())  # Snakemake had not even taken its own lock
        # a dry run beside the live run is allowed: it runs nothing
        assert snakemake(second, cfg, "-n", check=False).returncode == 0
        assert run1.poll() is None
    finally:
        rc = run1.wait(timeout=900)
    assert rc == 0, run1.stdout.read()[-3000:]
    # with the first run gone, the second goes ahead and finds nothing to do but what is left
    snakemake(second, cfg)


def test_killed_run_leaves_a_stale_lock_that_the_next_run_clears(world):
    tmp, cfg, first, _ = world
    run1 = _start(first, cfg)
    locks = first / ".snakemake" / "locks"
    try:
        _wait_for(lambda: locks.is_dir() and any(locks.iterdir()), "Snakemake to take its lock")
        # while it runs, the same folder is refused with the live holder named (not the --unlock advice)
        out = snakemake(first, cfg, check=False)
        assert out.returncode != 0 and f"pid {run1.pid}" in out.stdout + out.stderr
        assert runlock.stale_snakemake_locks(tmp / "results", first)  # its lock files name our results...
        assert not runlock.is_free(tmp / "results" / ".facesets-run.lock")  # ...but their holder is alive
    finally:
        os.killpg(run1.pid, signal.SIGKILL)
        run1.wait()
    assert any(locks.iterdir()), "the kill should have left Snakemake's lock behind"
    out = snakemake(first, cfg)
    assert "cleared Snakemake's lock left by a run that was killed" in out.stdout + out.stderr
    assert snakemake(first, cfg, "-n").returncode == 0


def test_runs_jobs_tells_dry_runs_apart():
    assert runlock.runs_jobs(["snakemake", "--cores", "2"])
    assert runlock.runs_jobs(["snakemake", "-c1", "-p", "--forcerun", "apply"])
    for argv in (["snakemake", "-n"], ["snakemake", "-np"], ["snakemake", "--dry-run"], ["snakemake", "--unlock"],
                 ["snakemake", "--lint"], ["snakemake", "--report=r.zip"], ["snakemake", "-c1", "--summary"]):
        assert not runlock.runs_jobs(argv), argv


def test_lock_naming_files_elsewhere_is_not_cleared(tmp_path):
    results = tmp_path / "results"
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text(f"{results}/cache/faces.npz\n")
    (locks / "0.input.lock").write_text("")
    (locks / "1.output.lock").write_text(f"{results}/x.json\n{tmp_path}/other/out.txt\n")
    (locks / "1.input.lock").write_text("")
    stale = runlock.stale_snakemake_locks(results, tmp_path)
    assert sorted(p.name for p in stale) == ["0.input.lock", "0.output.lock"]
