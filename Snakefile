# facesets: photo trees -> face cache -> identities -> swap-ready facesets.
# The DAG lives here and in rules/*.smk; the work lives in the `facesets` package (rules stay thin).
import os

from snakemake.utils import min_version

min_version("9.0")

# resolved against the Snakefile so `-d elsewhere` still finds the defaults
configfile: os.path.join(workflow.basedir, "config", "config.yaml")

include: "rules/common.smk"
include: "rules/embed.smk"
include: "rules/identities.smk"
include: "rules/folders_eras.smk"
include: "rules/export.smk"
include: "rules/curation.smk"
include: "rules/evaluation.smk"
include: "rules/sweeps.smk"
include: "rules/report.smk"


rule all:
    input:
        CACHE,
        [f"{LISTING}/{src}/not_scanned.json" for src in SOURCES],
        CACHE_CSV,
        RAW_MANIFEST,
        REFINE_MANIFEST,
        DUPLICATES,
        ENRICH,
        EXPORT_MANIFEST,
        VERIFY_EXPORT,
        APPLIED,
        VERIFY,
        REPORT,
        [EVALUATION] if config["evaluate"]["labels"] else [],
