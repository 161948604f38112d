# Refined identities -> swap-ready crops -> .fsz bundles + manifests -> contract check.
# Crop settings and top_n live in different rules: changing top_n rewrites bundles and manifests only.

EXPORT = f"{RESULTS}/export"
CROPS_INDEX = f"{EXPORT}/crops.json"
EXPORT_MANIFEST = f"{EXPORT}/manifest.json"
VERIFY_EXPORT = f"{EXPORT}/verify.json"
CROP_SETTINGS = {k: v for k, v in config["export"].items() if k != "top_n"}


rule export_crops:
    input:
        manifest=IDENTITY_MANIFESTS,
        cache=CACHE,
        enrich=ENRICH,
        raw=RAW_MANIFEST,
    output:
        CROPS_INDEX,
    params:
        settings=json.dumps({"model": EMBED_SETTINGS["model"], "export": CROP_SETTINGS,
                             "verify": {"checks": config["verify"]["checks"]}}, sort_keys=True),
        out=EXPORT,
    log:
        f"{RESULTS}/logs/export_crops/export_crops.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_crops.tsv"
    resources:
        gpu=1 if any(p != "CPUExecutionProvider" for p in config["model"]["providers"]) else 0,
    shell:
        "{FACESETS} export-crops {input.cache:q} {params.out:q} --manifest {input.manifest:q} --enrich {input.enrich:q} "
        "--raw-manifest {input.raw:q} --settings {params.settings:q} --runtime {EMBED_RUNTIME:q} --log {log:q}"


rule export_bundles:
    input:
        CROPS_INDEX,
    output:
        EXPORT_MANIFEST,
    params:
        top_n=config["export"]["top_n"],
        out=EXPORT,
    log:
        f"{RESULTS}/logs/export_bundles/export_bundles.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_bundles.tsv"
    shell:
        "{FACESETS} export-bundles {params.out:q} --top-n {params.top_n} --log {log:q}"


rule verify_export:
    input:
        EXPORT_MANIFEST,
    output:
        VERIFY_EXPORT,
    params:
        settings=json.dumps({"model": EMBED_SETTINGS["model"], "export": {"out_size": config["export"]["out_size"]},
                             "verify": config["verify"]}, sort_keys=True),
        out=EXPORT,
    log:
        f"{RESULTS}/logs/verify_export/verify_export.log",
    shell:
        "{FACESETS} verify-fsz {params.out:q} --json {output:q} --allow-empty --settings {params.settings:q} "
        "--runtime {EMBED_RUNTIME:q} --quiet --log {log:q}"
