# Config validation and input functions shared by every rule.
import json
import os
import sys

from snakemake.utils import validate

from facesets.core import config as fsconfig
from facesets.core import messages
from facesets.core import runlock
from facesets.core.layout import Layout
from facesets.embed.scan import shard_listing_digests, write_shard_listings

# Snakemake's validate fills the schema defaults in and rejects unknown keys, naming them.
validate(config, str(fsconfig.schema_path()))
fsconfig.validate(config)  # cross-key checks (e.g. duplicate source names)

if config.get("workers_file"):
    # a profile names its worker settings file; merged here so a user's own --configfile still applies
    import yaml

    with open(config["workers_file"], encoding="utf-8") as _fh:
        config["workers"].update((yaml.safe_load(_fh) or {}).get("workers", {}))
    validate(config, str(fsconfig.schema_path()))

RESULTS = config["results"]
LAYOUT = Layout(RESULTS)

if workflow.is_main_process:
    # one run per results folder, whatever folder it was started from (facesets.core.runlock says why)
    if runlock.runs_jobs(sys.argv):
        try:
            runlock.hold(RESULTS, LAYOUT.run_lock)
        except runlock.RunLocked as exc:
            sys.exit(f"facesets: {exc}")
    if runlock.clear_stale_snakemake_locks(RESULTS, LAYOUT.run_lock):
        print(f"facesets: {messages.STALE_LOCK_CLEARED.format(results=RESULTS)}", file=sys.stderr)


onstart:
    try:
        runlock.hold(RESULTS, LAYOUT.run_lock)  # no-op when taken above
    except runlock.RunLocked as exc:
        sys.exit(f"facesets: {exc}")
SOURCES = {s["name"]: os.path.abspath(os.path.expanduser(s["path"])) for s in config["sources"]}
SHARDS = config["embed"]["shards"]
FACESETS = f'"{sys.executable}" -m facesets'
SCRIPTS = os.path.join(workflow.basedir, "scripts")  # stand-alone GPU workers

CACHE = f"{RESULTS}/cache/faces.npz"
CACHE_CSV = f"{RESULTS}/cache/faces.csv"
STORE = f"{RESULTS}/cache/store"

wildcard_constraints:
    source="[A-Za-z0-9][A-Za-z0-9_.-]*",
    shard=r"\d+",


def settings(*sections, **extra):
    """One key-sorted JSON string per rule: Snakemake compares params by repr, so order must be stable."""
    picked = {s: config[s] for s in sections}
    picked.update(extra)
    return json.dumps(picked, sort_keys=True)


LISTING = f"{RESULTS}/cache/listing"

# each embed job depends on its shard's small listing file, not on its photos, and on the listing's digest
# as a param: see facesets.embed.scan.write_shard_listings (jobs on other machines re-use the main process's listings)
LISTING_DIGESTS = {
    src: write_shard_listings(root, config["embed"]["extensions"], SHARDS, f"{LISTING}/{src}")
    if workflow.is_main_process else shard_listing_digests(f"{LISTING}/{src}", SHARDS)
    for src, root in SOURCES.items()
}


def shard_inputs(wildcards):
    """The shard's listing: adding, changing or removing one of its photos rewrites it and reruns this shard only."""
    return f"{LISTING}/{wildcards.source}/shard_{int(wildcards.shard):03d}.tsv"


def all_shard_summaries():
    return [f"{RESULTS}/cache/shards/{src}/shard_{i:03d}.json" for src in SOURCES for i in range(SHARDS)]
