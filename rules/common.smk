# Config validation, the results layout, the run lock and the source listings shared by every rule.
# Parsing reads (config, the source trees' names and stats) and writes nothing: files are made by jobs.
import os
import sys

from snakemake.utils import validate

from facesets.core import config as fsconfig
from facesets.core import messages, runlock
from facesets.core import workflow as wf
from facesets.core.layout import Layout
from facesets.embed.scan import shard_listing_digests, shard_listings
from facesets.review import decisions as fsdecisions

fsconfig.check_renamed(config)  # an old key name: one line naming the new one, before the schema's message
# Snakemake's validate fills the schema defaults in and rejects unknown keys, naming them.
validate(config, str(fsconfig.schema_path()))
fsconfig.validate(config)  # cross-key checks (e.g. duplicate source names)
wf.merge_workers_file(config)  # a profile's worker settings file, under the user's own --configfile
validate(config, str(fsconfig.schema_path()))

RESULTS = config["results"]
LAYOUT = Layout(RESULTS)
wf.export_runtime(config)

if workflow.is_main_process:
    # one run per results folder, whatever folder it was started from (facesets.core.runlock says why)
    if runlock.runs_jobs(sys.argv):
        try:
            runlock.hold(RESULTS, LAYOUT.run_lock)
        except runlock.RunLocked as exc:
            sys.exit(f"facesets: {exc}")
    if runlock.clear_stale_snakemake_locks(RESULTS, LAYOUT.run_lock):
        print(f"facesets: {messages.STALE_LOCK_CLEARED.format(results=RESULTS)}", file=sys.stderr)


# The person's decisions (facesets review writes them): an input like the config, read here (after the run lock,
# so the review page cannot write them mid-run) and never written by a rule. Each rule gets only its part.
DECISIONS_FILE = os.path.abspath(os.path.expanduser(config["review"]["decisions"]))
try:
    DECISIONS = fsdecisions.load(DECISIONS_FILE)
except fsdecisions.DecisionsError as exc:
    sys.exit(f"facesets: {exc}")


onstart:
    try:
        runlock.hold(RESULTS, LAYOUT.run_lock)  # no-op when taken above
    except runlock.RunLocked as exc:
        sys.exit(f"facesets: {exc}")


SOURCES = {s["name"]: os.path.abspath(os.path.expanduser(s["path"])) for s in config["sources"]}
SHARDS = config["embed"]["shards"]
GPU = wf.uses_gpu(config)

CACHE = str(LAYOUT.cache)
CACHE_CSV = str(LAYOUT.cache_csv)
STORE = str(LAYOUT.store)
LISTING = str(LAYOUT.listing)
MODEL = str(LAYOUT.model_check)

wildcard_constraints:
    source="[A-Za-z0-9][A-Za-z0-9_.-]*",
    shard=r"\d+",

# Each embed job depends on its shard's small listing file, not on its photos, and on the listing's digest
# as a param (facesets.embed.scan.shard_listings says why). The main process walks the sources here and
# keeps the listings in memory; the shard_listing jobs write them. Jobs on other machines read the digests
# of the listings already written.
LISTINGS = ({src: shard_listings(root, config["embed"]["extensions"], SHARDS) for src, root in SOURCES.items()}
            if workflow.is_main_process and wf.needs_sources(sys.argv) else {})
LISTING_DIGESTS = {src: LISTINGS[src].digests if src in LISTINGS else shard_listing_digests(f"{LISTING}/{src}", SHARDS)
                   for src in SOURCES}
for _src, _lst in LISTINGS.items():
    for _line in _lst.unscanned.lines(f"source '{_src}'"):
        print(f"facesets: {_line}", file=sys.stderr)
