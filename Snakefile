# facesets: photo trees -> face cache -> identities -> swap-ready facesets.
# The DAG lives here and in rules/*.smk; the work lives in the `facesets` package (rules stay thin).
from snakemake.utils import min_version

min_version("9.0")

configfile: "config/config.yaml"

include: "rules/common.smk"
include: "rules/embed.smk"


rule all:
    input:
        CACHE,
        CACHE_CSV,
