# Identities from hand-sorted folders, and era splits of chosen identities by EXIF year.
# Both feed the same export as the refined facesets.

FOLDERS_MANIFEST = f"{RESULTS}/identities/folders/folders_manifest.json"
ERAS_MANIFEST = f"{RESULTS}/identities/eras/eras_manifest.json"
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
        settings=settings("folders"),
        out=f"{RESULTS}/identities/folders",
    log:
        f"{RESULTS}/logs/folders/folders.log",
    shell:
        "{FACESETS} folders {input.cache:q} {params.out:q} --refine-manifest {input.refine:q} "
        "--settings {params.settings:q} --log {log:q}"


rule eras:
    input:
        cache=CACHE,
        manifests=[REFINE_MANIFEST] + ([FOLDERS_MANIFEST] if USE_FOLDERS else []),
    output:
        ERAS_MANIFEST,
    params:
        settings=settings("eras"),
        out=f"{RESULTS}/identities/eras",
        years=f"{RESULTS}/cache/exif_years.json",  # path -> year, kept across reruns (not an output)
    log:
        f"{RESULTS}/logs/eras/eras.log",
    shell:
        "{FACESETS} eras {input.cache:q} {params.out:q} --manifest {input.manifests:q} --year-cache {params.years:q} "
        "--settings {params.settings:q} --log {log:q}"
