# Refined identities -> swap-ready crops -> .fsz bundles + manifests -> contract check.
# Crop settings and top_n live in different rules: changing top_n rewrites bundles and manifests only.

CROPS_INDEX = str(LAYOUT.crops_index)
EXPORT_MANIFEST = str(LAYOUT.export_manifest)
VERIFY_EXPORT = str(LAYOUT.verify_export)
CROP_KEYS = sorted(k for k in config["export"] if k != "top_n")
VERIFY_SETTINGS = wf.settings(config, ("model", ["pack", "det_size", "det_thresh"]), ("export", ["out_size"]), "verify")


rule export_crops:
    input:
        manifest=IDENTITY_MANIFESTS,
        cache=CACHE,
        enrich=ENRICH,
        raw=RAW_MANIFEST,
        model=MODEL,
    output:
        CROPS_INDEX,
    params:
        detections=str(LAYOUT.detections),  # verdicts by crop content, shared (export.verdicts)
        settings=wf.settings(config, ("model", ["pack", "det_size", "det_thresh"]), ("export", CROP_KEYS),
                             ("verify", ["checks"])),
        decisions=fsdecisions.part(DECISIONS, "export_crops"),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/export_crops/export_crops.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_crops.tsv"
    threads: workflow.cores  # photos decoded and crops checked at once; the output is the same for any count
    resources:
        gpu=GPU,
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets export-crops {input.cache:q} {params.out:q} --manifest {input.manifest:q} --enrich {input.enrich:q} "
        "--raw-manifest {input.raw:q} --settings {params.settings:q} --decisions {params.decisions:q} "
        "--detections {params.detections:q} --threads {threads} --log {log:q}"


rule export_bundles:
    input:
        CROPS_INDEX,
    output:
        EXPORT_MANIFEST,
    params:
        top_n=config["export"]["top_n"],
        decisions=fsdecisions.part(DECISIONS, "export_bundles"),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/export_bundles/export_bundles.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_bundles.tsv"
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets export-bundles {params.out:q} --top-n {params.top_n} --decisions {params.decisions:q} --log {log:q}"


rule verify_export:
    input:
        EXPORT_MANIFEST,
    output:
        VERIFY_EXPORT,
    params:
        detections=str(LAYOUT.detections),  # verdicts by crop content, shared (export.verdicts)
        settings=VERIFY_SETTINGS,
        out=lambda wc, input: os.path.dirname(input[0]),
    log:
        f"{RESULTS}/logs/verify_export/verify_export.log",
    benchmark:
        f"{RESULTS}/benchmarks/verify_export.tsv"
    threads: workflow.cores  # bundles checked at once
    resources:
        gpu=GPU,  # detects a crop the store does not know (in the worker interpreter where a profile names one)
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets verify-fsz {params.out:q} --json {output:q} --allow-empty --settings {params.settings:q} "
        "--quiet --detections {params.detections:q} --threads {threads} --log {log:q}"
