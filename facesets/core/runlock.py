"""One pipeline run per results folder, and Snakemake's own lock told apart when its holder is dead.

Snakemake locks its *working* folder, so two runs started from two folders on one results folder both
go ahead and tear each other's files. The main Snakemake process therefore holds an flock on
`<results>/.facesets-run.lock` for its whole life (the OS drops it when the process dies, however it
dies) and writes its pid, host and working folder into it, so a refused run can say who holds it.

Snakemake's lock (`.snakemake/locks/` in the working folder) outlives a killed run and its advice,
`--unlock`, is wrong while a run is alive. Every run on a results folder holds the flock from before
Snakemake takes its own lock until after it drops it, so while we hold (or could take) the flock, a
Snakemake lock that names only files under the results folder belongs to a dead run: it is stale.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from facesets.core import messages
from facesets.core.errors import Locked

_HELD: dict[Path, object] = {}  # results folder -> open lock file, kept open for the life of the process


class RunLocked(Locked):
    pass


def _holder(lock_file: Path) -> str:
    try:
        info = json.loads(lock_file.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')} "
            f"from {info.get('cwd', '?')}")


def _try_flock(lock_file: Path):
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_file, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fh


def hold(results: str | Path, lock_file: str | Path) -> None:
    """Hold the results folder's run lock until this process exits; RunLocked names the live holder."""
    results, lock_file = Path(results).resolve(), Path(lock_file)
    if results in _HELD:
        return
    fh = _try_flock(lock_file)
    if fh is None:
        raise RunLocked(messages.RUN_LOCKED.format(results=results, holder=_holder(lock_file)))
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "cwd": os.getcwd(),
                         "started": _dt.datetime.now().isoformat(timespec="seconds")}))
    fh.flush()
    _HELD[results] = fh


@contextlib.contextmanager
def held_briefly(results: str | Path, lock_file: str | Path):
    """The run lock for one short write from outside a pipeline run (the review page writing the decisions):
    RunLocked, naming the live run, while a pipeline run holds the results folder."""
    if Path(results).resolve() in _HELD:  # this process is the run
        yield
        return
    fh = _try_flock(Path(lock_file))
    if fh is None:
        raise RunLocked(messages.REVIEW_LOCKED.format(results=results, holder=_holder(Path(lock_file))))
    try:
        yield
    finally:
        fh.close()


def is_free(lock_file: str | Path) -> bool:
    """True when no live process holds the run lock (probed by taking and dropping it)."""
    if not Path(lock_file).exists():
        return True
    fh = _try_flock(Path(lock_file))
    if fh is None:
        return False
    fh.close()
    return True


# Snakemake options under which it runs no job and takes no lock of its own: such an invocation must not
# refuse to start beside a live run (a dry run to see what is left is the common case)
_NO_JOBS = {"--dry-run", "--dryrun", "--unlock", "--lint", "--list", "--list-rules", "--list-target-rules",
            "--lt", "--summary", "--detailed-summary", "--dag", "--rulegraph", "--filegraph", "--d3dag",
            "--report", "--cleanup-metadata", "--cm", "--list-changes", "--lc", "--list-input-changes", "--li",
            "--list-params-changes", "--lp", "--list-code-changes", "--list-version-changes", "--archive",
            "--print-compilation", "--containerize", "--export-cwl", "--generate-unit-tests", "--version",
            "--help", "--list-conda-envs", "--conda-create-envs-only", "--conda-cleanup-envs"}
_NO_JOBS_SHORT = set("nlSDhv")


def runs_jobs(argv: list[str]) -> bool:
    """Whether a Snakemake command line will run jobs (the run lock is taken again in `onstart` in case
    this guess is wrong, so a mistake costs only how early a second run is refused)."""
    for tok in argv[1:]:
        if tok.startswith("--"):
            if tok.split("=", 1)[0] in _NO_JOBS:
                return False
        elif tok.startswith("-") and len(tok) > 1 and tok[1].isalpha() and set(tok[1:]) & _NO_JOBS_SHORT \
                and tok[1:].isalpha():
            return False
    return True


def _lock_sets(locks_dir: Path) -> dict[str, list[Path]]:
    """Snakemake's lock files grouped by their number: `N.input.lock` + `N.output.lock` are one run's."""
    sets: dict[str, list[Path]] = {}
    for p in locks_dir.glob("*.lock"):
        sets.setdefault(p.name.split(".", 1)[0], []).append(p)
    return sets


def stale_snakemake_locks(results: str | Path, workdir: str | Path = ".") -> list[Path]:
    """Lock files in `workdir`'s `.snakemake/locks` left by a dead run on `results` (call while holding or
    having probed the run lock). A lock set naming any file outside `results` may be another workflow's."""
    results = Path(results).resolve()
    locks_dir = Path(workdir) / ".snakemake" / "locks"
    stale = []
    for files in _lock_sets(locks_dir).values():
        outputs = [f for f in files if f.name.endswith(".output.lock")]
        try:
            named = [Path(line) for f in outputs for line in f.read_text(encoding="utf-8",
                                                                        errors="surrogateescape").splitlines() if line]
        except OSError:
            continue
        if named and all(p.resolve().is_relative_to(results) for p in named):
            stale += files
    return stale


def clear_stale_snakemake_locks(results: str | Path, lock_file: str | Path, workdir: str | Path = ".") -> list[Path]:
    """Remove Snakemake's locks on `results` when their holder is dead; a live holder's are left alone."""
    if Path(results).resolve() not in _HELD and not is_free(lock_file):
        return []
    stale = stale_snakemake_locks(results, workdir)
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
