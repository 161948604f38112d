# Identities from hand-sorted folders, and era splits of chosen identities by EXIF year.
# Both feed the same export as the refined facesets.

FOLDERS_MANIFEST = str(LAYOUT.folders_manifest)
ERAS_MANIFEST = str(LAYOUT.eras_manifest)
USE_FOLDERS = bool(config["folders"]["trusted"])
USE_ERAS = bool(config["eras"]["identities"])
IDENTITY_MANIFESTS = [REFINE_MANIFEST] + ([FOLDERS_MANIFEST] if USE_FOLDERS else []) + ([ERAS_MANIFEST] if USE_ERAS else [])


rule folders:
    input:
        cache=CACHE,
        refine=REFINE_MANIFEST,
    output:
        FOLDERS_MANIFEST,
    params:
        settings=wf.settings(config, "folders"),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/folders/folders.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets folders {input.cache:q} {params.out:q} --refine-manifest {input.refine:q} "
        "--settings {params.settings:q} --log {log:q}"


rule eras:
    input:
        cache=CACHE,
        manifests=[REFINE_MANIFEST] + ([FOLDERS_MANIFEST] if USE_FOLDERS else []),
    output:
        ERAS_MANIFEST,
    params:
        settings=wf.settings(config, "eras"),
        out=lambda wc, output: os.path.dirname(output[0]),
        years=str(LAYOUT.exif_years),  # path -> year, kept across reruns (not an output)
    log:
        f"{RESULTS}/logs/eras/eras.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets eras {input.cache:q} {params.out:q} --manifest {input.manifests:q} --year-cache {params.years:q} "
        "--settings {params.settings:q} --log {log:q}"
