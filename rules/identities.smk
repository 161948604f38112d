# Face cache -> raw clusters, refined facesets, near-duplicate report, landmarks/pose.
# Each threshold reaches exactly one rule's params, so changing it reruns that rule and its downstream.

RAW_MANIFEST = str(LAYOUT.raw_manifest)
REFINE_MANIFEST = str(LAYOUT.refine_manifest)
DUPLICATES = str(LAYOUT.duplicates)
ENRICH = str(LAYOUT.enrich)


rule cluster:
    input:
        CACHE,
    output:
        RAW_MANIFEST,
    params:
        settings=wf.settings(config, "cluster", ("identities", ["link_mode"])),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/cluster/cluster.log",
    benchmark:
        f"{RESULTS}/benchmarks/cluster.tsv"
    resources:
        mem_mb=8000,
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets cluster {input:q} {params.out:q} --settings {params.settings:q} --log {log:q}"


rule refine:
    input:
        CACHE,
    output:
        REFINE_MANIFEST,
    params:
        settings=wf.settings(config, "refine", ("identities", ["link_mode"])),
        decisions=fsdecisions.part(DECISIONS, "refine"),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/refine/refine.log",
    benchmark:
        f"{RESULTS}/benchmarks/refine.tsv"
    resources:
        mem_mb=8000,
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets refine {input:q} {params.out:q} --settings {params.settings:q} --decisions {params.decisions:q} "
        "--log {log:q}"


rule dedup_report:
    input:
        CACHE,
    output:
        DUPLICATES,
    params:
        settings=wf.settings(config, "dedup"),
    log:
        f"{RESULTS}/logs/dedup_report/dedup_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/dedup_report.tsv"
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets dedup {input:q} --out {output:q} --settings {params.settings:q} --log {log:q}"


rule enrich:
    input:
        cache=CACHE,
        model=MODEL,
    output:
        ENRICH,
    params:
        settings=EMBED_SETTINGS,
    log:
        f"{RESULTS}/logs/enrich/enrich.log",
    benchmark:
        f"{RESULTS}/benchmarks/enrich.tsv"
    resources:
        gpu=GPU,
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets enrich {input.cache:q} --out {output:q} --settings {params.settings:q} --log {log:q}"
