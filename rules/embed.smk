# Source trees -> per-shard face stores -> one cache snapshot. Embed depends on no threshold:
# only the model and decode settings (params.settings) re-embed.

from facesets.core.engine import ENGINE_REVISION

# Speed-only knobs reach the job outside params so that changing them reruns nothing.
EMBED_RUNTIME = json.dumps({"model": {"providers": config["model"]["providers"], "root": config["model"]["root"]},
                            "embed": {"io_threads": config["embed"]["io_threads"], "ort_threads": config["embed"]["ort_threads"],
                                      "flush_every": config["embed"]["flush_every"]}})

EMBED_SETTINGS = {
    "model": {k: config["model"][k] for k in ("pack", "det_size", "det_thresh")},
    "embed": {k: config["embed"][k] for k in ("decode_long_side", "rec_min_face", "det_recheck_margin", "max_image_pixels", "extensions")},
}


rule embed_shard:
    input:
        shard_inputs,
    output:
        f"{RESULTS}/cache/shards/{{source}}/shard_{{shard}}.json",
    params:
        root=lambda wc: SOURCES[wc.source],
        store=lambda wc: f"{STORE}/{wc.source}/shard_{wc.shard}",
        settings=json.dumps(EMBED_SETTINGS, sort_keys=True),
        engine=ENGINE_REVISION,  # a new detection/alignment revision re-embeds (the store checks it too)
        listing=lambda wc: LISTING_DIGESTS[wc.source][int(wc.shard)],
    log:
        f"{RESULTS}/logs/embed_shard/{{source}}_{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/embed_shard/{{source}}_{{shard}}.tsv"
    resources:
        gpu=1 if any(p != "CPUExecutionProvider" for p in config["model"]["providers"]) else 0,
        mem_mb=4000,
        runtime=120,
    shell:
        "{FACESETS} embed-shard --source {wildcards.source} --root {params.root:q} "
        "--shard {wildcards.shard} --shards {SHARDS} --store {params.store:q} --summary {output:q} "
        "--settings {params.settings:q} --runtime {EMBED_RUNTIME:q} --log {log:q}"


rule merge_cache:
    input:
        all_shard_summaries(),
    output:
        CACHE,
    params:
        sources=[f"{name}={root}" for name, root in SOURCES.items()],
        stores=[f"{STORE}/{src}/shard_{i:03d}" for src in SOURCES for i in range(SHARDS)],
    log:
        f"{RESULTS}/logs/merge_cache/merge_cache.log",
    benchmark:
        f"{RESULTS}/benchmarks/merge_cache.tsv"
    shell:
        "{FACESETS} merge-cache --source {params.sources:q} --stores {params.stores:q} --out {output:q} --log {log:q}"


rule inspect_cache:
    input:
        CACHE,
    output:
        CACHE_CSV,
    log:
        f"{RESULTS}/logs/inspect_cache/inspect_cache.log",
    shell:
        "{FACESETS} inspect {input:q} --csv {output:q} --log {log:q}"
