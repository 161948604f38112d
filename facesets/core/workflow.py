"""What the Snakefile needs from the package: how a setting reaches a rule, how speed-only settings
reach a job, and the source listings computed (read-only) while the Snakefile is parsed.

Rules keep only the DAG (inputs, outputs, params, logs, resources); the functions they call live here so
they can be tested and so no .smk file mixes rules and functions.
"""
from __future__ import annotations

import json
import os
import sys

# Speed-only settings (execution providers, threads, flush size, the worker interpreter and its path map)
# reach jobs through this environment variable, not through params: changing them must re-run nothing.
RUNTIME_ENV = "FACESETS_RUNTIME"
NEWLINE = b"\n"

# Snakemake command-line options under which no job runs and no DAG is needed: parsing skips the source walk
_NO_DAG = {"--lint", "--unlock", "--version", "--help", "-h", "-v", "--list", "-l", "--list-rules",
           "--list-target-rules", "--lt", "--cleanup-metadata", "--cm"}


def settings(config: dict, *parts) -> str:
    """The part of the config one rule's jobs depend on, as one key-sorted JSON string (its `settings`
    param; Snakemake compares params by value, so a change reruns exactly the rules whose part changed).

    Each part is a section name (`"refine"`), a dotted subsection (`"curation.neardup"`), or a
    `(section, [keys])` pair for some keys only (`("model", ["pack", "det_size"])`).
    """
    picked: dict = {}
    for part in parts:
        name, keys = (part, None) if isinstance(part, str) else part
        path = name.split(".")
        value = config
        for p in path:
            value = value[p]
        if keys is not None:
            value = {k: value[k] for k in keys}
        node = picked
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
    return json.dumps(picked, sort_keys=True)


def runtime(config: dict) -> dict:
    """The speed-only settings every job may use (see RUNTIME_ENV), and where the decisions file is: refine
    reads its anchors there (they keep numbers in a fresh results folder and change no result, so they must
    not re-run anything; each rule's own part of the decisions is a tracked param)."""
    out = {"model": {"providers": config["model"]["providers"], "root": config["model"]["root"]},
           "embed": {k: config["embed"][k] for k in ("io_threads", "ort_threads", "flush_every")},
           "workers": config["workers"]}
    if "review" in config:
        out["review"] = {"decisions": os.path.abspath(os.path.expanduser(config["review"]["decisions"]))}
    return out


def export_runtime(config: dict) -> None:
    """Hand the speed-only settings and the `facesets` command to every job this process starts.

    Jobs run `facesets ...`: inside a rule's conda env that env's command; otherwise the one beside the
    interpreter that runs Snakemake, put first on PATH here.
    """
    os.environ.update({RUNTIME_ENV: json.dumps(runtime(config), sort_keys=True)})
    bin_dir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ.update(PATH=bin_dir + os.pathsep + path if path else bin_dir)


def needs_sources(argv: list[str]) -> bool:
    """Whether this Snakemake invocation builds a DAG (and so needs the source listings)."""
    return not any(tok.split("=", 1)[0] in _NO_DAG for tok in argv[1:])


def uses_gpu(config: dict) -> int:
    """1 when model-running jobs use an accelerator (such jobs then queue on `--resources gpu=N`): the worker
    interpreter's providers where a profile names one (workers.python), else model.providers."""
    w = config["workers"]
    providers = (w["providers"] or config["model"]["providers"]) if w["python"] else config["model"]["providers"]
    return int(any(p != "CPUExecutionProvider" for p in providers))


def prior(order: list[str], plans: dict[str, str], name: str) -> list[str]:
    """The plans a pass reads: every pass before it (passes never re-propose what an earlier one did)."""
    return [plans[p] for p in order[: order.index(name)]]


def merge_workers_file(config: dict) -> None:
    """A profile names its worker settings file (`workers_file`); merged here so that a user's own
    --configfile still applies on top of the profile's defaults."""
    if config.get("workers_file"):
        import yaml

        with open(config["workers_file"], encoding="utf-8") as fh:
            config["workers"].update((yaml.safe_load(fh) or {}).get("workers", {}))


def listing_job(out: str, log: str, listings: dict, sources: dict, config: dict, wildcards) -> None:
    """The `shard_listing` / `sources_not_scanned` jobs: write what parsing listed (held in memory) for one
    shard, or the source's not-scanned counts, and say so in the job's log.

    Snakemake's local executor runs a `run:` job in a fresh process unless told to use threads (the
    shipped local profiles do), and such a process holds no listing: it then lists the shard again (its
    own files only) or walks the source for the counts. The digest the rule recorded stays the parse's,
    so a tree that changed in between is caught by the next run.
    """
    from pathlib import Path

    from facesets.embed.scan import list_source, listing_line, shard_listings, write_listing, write_not_scanned

    src, shard = wildcards.source, getattr(wildcards, "shard", None)
    exts, shards = config["embed"]["extensions"], config["embed"]["shards"]
    if shard is None:
        counts = (listings.get(src) or shard_listings(sources[src], exts, shards)).unscanned
        write_not_scanned(out, counts)
        what = f"not-scanned counts {counts.as_json()}"
    else:
        k = int(shard)
        if src in listings:
            data = listings[src].texts[k]
        else:
            data = "".join(map(listing_line, list_source(sources[src], exts, (k, shards)))).encode(
                "utf-8", "surrogateescape")
        write_listing(out, data)
        what = f"shard {k} listing: {data.count(NEWLINE)} files"
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    Path(log).write_text(f"{out}: {what}\n", encoding="utf-8")
