# Face cache -> raw clusters, refined facesets, near-duplicate report, landmarks/pose, evaluation.
# Each threshold reaches exactly one rule's params, so changing it reruns that rule and its downstream.

RAW = f"{RESULTS}/identities/raw"
REFINED = f"{RESULTS}/identities/facesets"
RAW_MANIFEST = f"{RAW}/manifest.json"
REFINE_MANIFEST = f"{REFINED}/refine_manifest.json"
DUPLICATES = f"{RESULTS}/cache/faces.duplicates.json"
ENRICH = f"{RESULTS}/cache/enrich.npz"
EVALUATION = f"{REFINED}/evaluation.json"


def section_flags(section):
    """`--key value` for every key of a config section (same names as the CLI flags)."""
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(config[section].items()))


rule cluster:
    input:
        CACHE,
    output:
        RAW_MANIFEST,
    params:
        cluster=settings("cluster"),
        flags=section_flags("cluster"),
        out=RAW,
    log:
        f"{RESULTS}/logs/cluster/cluster.log",
    benchmark:
        f"{RESULTS}/benchmarks/cluster.tsv"
    resources:
        mem_mb=8000,
    shell:
        "{FACESETS} cluster {input:q} {params.out:q} {params.flags} "
        "--link-mode {config[identities][link_mode]} --log {log:q}"


rule refine:
    input:
        CACHE,
    output:
        REFINE_MANIFEST,
    params:
        refine=settings("refine"),
        flags=section_flags("refine"),
        out=REFINED,
    log:
        f"{RESULTS}/logs/refine/refine.log",
    benchmark:
        f"{RESULTS}/benchmarks/refine.tsv"
    resources:
        mem_mb=8000,
    shell:
        "{FACESETS} refine {input:q} {params.out:q} {params.flags} "
        "--link-mode {config[identities][link_mode]} --log {log:q}"


rule dedup_report:
    input:
        CACHE,
    output:
        DUPLICATES,
    params:
        dedup=settings("dedup"),
        flags=section_flags("dedup"),
    log:
        f"{RESULTS}/logs/dedup_report/dedup_report.log",
    benchmark:
        f"{RESULTS}/benchmarks/dedup_report.tsv"
    shell:
        "{FACESETS} dedup {input:q} --out {output:q} {params.flags} --log {log:q}"


rule enrich:
    input:
        CACHE,
    output:
        ENRICH,
    params:
        settings=json.dumps(EMBED_SETTINGS, sort_keys=True),
    log:
        f"{RESULTS}/logs/enrich/enrich.log",
    benchmark:
        f"{RESULTS}/benchmarks/enrich.tsv"
    resources:
        gpu=1 if any(p != "CPUExecutionProvider" for p in config["model"]["providers"]) else 0,
    shell:
        "{FACESETS} enrich {input:q} --out {output:q} --settings {params.settings:q} "
        "--runtime {EMBED_RUNTIME:q} --log {log:q}"


rule evaluate:
    input:
        manifest=REFINE_MANIFEST,
        cache=CACHE,
    output:
        EVALUATION,
    params:
        labels=config["evaluate"]["labels"],
        root=config["evaluate"]["root"],
    log:
        f"{RESULTS}/logs/evaluate/evaluate.log",
    shell:
        "{FACESETS} evaluate {input.manifest:q} --labels {params.labels:q} --root {params.root:q} "
        "--cache {input.cache:q} --out {output:q} --log {log:q}"
