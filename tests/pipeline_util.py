"""Run the Snakemake pipeline from tests in a scratch working directory."""
from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from conftest import PACK, REPO


def write_config(workdir: Path, sources: dict[str, Path], **sections) -> Path:
    cfg = {"results": str(workdir / "results"),
           "sources": [{"name": n, "path": str(p)} for n, p in sources.items()],
           "model": {"pack": str(PACK)}, "embed": {"shards": 2}}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def snakemake(workdir: Path, cfg: Path, *args: str, check: bool = True, timeout: int = 900):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(cfg), "--cores", "2", "--scheduler", "greedy", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake failed ({out.returncode}):\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}")
    return out


def planned(workdir: Path, cfg: Path, *targets: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would execute."""
    out = snakemake(workdir, cfg, "-n", *targets)
    text = out.stdout + out.stderr
    jobs = []
    current = None
    for line in text.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):\s*$", line)
        if m:
            current = m.group(1)
            jobs.append([current, ""])
            continue
        m = re.match(r"^\s*wildcards: (.*)$", line)
        if m and jobs:
            jobs[-1][1] = m.group(1).strip()
    return [tuple(j) for j in jobs]


def rules_of(jobs) -> Counter:
    return Counter(r for r, _ in jobs)
