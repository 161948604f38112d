# Model pack check -> source listings -> per-shard face stores -> one cache snapshot. Embed depends on no
# threshold: only the model and decode settings (params.settings) re-embed.
from facesets.core.engine import ENGINE_REVISION

EMBED_SETTINGS = wf.settings(config, ("model", ["pack", "det_size", "det_thresh"]),
                             ("embed", ["decode_long_side", "rec_min_face", "det_recheck_margin",
                                        "max_image_pixels", "extensions"]))


rule model_pack:
    output:
        MODEL,
    params:
        pack=config["model"]["pack"],
    log:
        f"{RESULTS}/logs/model_pack/model_pack.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets models --check {params.pack:q} --out {output:q} --log {log:q}"


# Written here from the listing the main process made while parsing (no walk, no process); a shard's
# listing job re-runs only when its digest changed, and rewrites the file only then.
localrules:
    shard_listing,
    sources_not_scanned,


rule shard_listing:
    output:
        f"{LISTING}/{{source}}/shard_{{shard}}.tsv",
    params:
        digest=lambda wc: LISTING_DIGESTS[wc.source][int(wc.shard)],
    log:
        f"{RESULTS}/logs/shard_listing/{{source}}_{{shard}}.log",
    run:
        wf.listing_job(output[0], log[0], LISTINGS, SOURCES, config, wildcards)


rule sources_not_scanned:
    output:
        f"{LISTING}/{{source}}/not_scanned.json",
    params:
        counts=lambda wc: LISTINGS[wc.source].unscanned.as_json() if wc.source in LISTINGS else {},
    log:
        f"{RESULTS}/logs/shard_listing/{{source}}_not_scanned.log",
    run:
        wf.listing_job(output[0], log[0], LISTINGS, SOURCES, config, wildcards)


rule embed_shard:
    input:
        listing=f"{LISTING}/{{source}}/shard_{{shard}}.tsv",
        model=MODEL,
    output:
        f"{RESULTS}/cache/shards/{{source}}/shard_{{shard}}.json",
    params:
        root=lambda wc: SOURCES[wc.source],
        store=lambda wc: f"{STORE}/{wc.source}/shard_{wc.shard}",
        shards=SHARDS,
        settings=EMBED_SETTINGS,
        engine=ENGINE_REVISION,  # a new detection/alignment revision re-embeds (the store checks it too)
        listing=lambda wc: LISTING_DIGESTS[wc.source][int(wc.shard)],
    log:
        f"{RESULTS}/logs/embed_shard/{{source}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/embed_shard/{{source}}_{{shard}}.tsv"
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=120,
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets embed-shard --source {wildcards.source} --root {params.root:q} "
        "--shard {wildcards.shard} --shards {params.shards} --store {params.store:q} --summary {output:q} "
        "--settings {params.settings:q} --log {log:q}"


rule merge_cache:
    input:
        [f"{RESULTS}/cache/shards/{src}/shard_{i:03d}.json" for src in SOURCES for i in range(SHARDS)],
    output:
        CACHE,
    params:
        sources=[f"{name}={root}" for name, root in SOURCES.items()],
        stores=[f"{STORE}/{src}/shard_{i:03d}" for src in SOURCES for i in range(SHARDS)],
    log:
        f"{RESULTS}/logs/merge_cache/merge_cache.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge_cache.tsv"
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets merge-cache --source {params.sources:q} --stores {params.stores:q} --out {output:q} --log {log:q}"


rule inspect_cache:
    input:
        CACHE,
    output:
        CACHE_CSV,
    log:
        f"{RESULTS}/logs/inspect_cache/inspect_cache.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets inspect {input:q} --csv {output:q} --log {log:q}"
