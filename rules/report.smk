# The HTML report, at the end of the default target (also in `snakemake --report`).
# Its named inputs are the manifests it reads, so a change to any of them rebuilds it.

REPORT = f"{RESULTS}/report/index.html"


rule report:
    input:
        applied=APPLIED,
        verify=VERIFY,
        verify_export=VERIFY_EXPORT,
        export_manifest=EXPORT_MANIFEST,
        refine_manifest=REFINE_MANIFEST,
        raw_manifest=RAW_MANIFEST,
        plans=list(PLAN.values()),
        eras_manifest=[ERAS_MANIFEST] if USE_ERAS else [],
        sweep_summary=[SWEEP_SUMMARY] if SWEEP_COMBOS else [],
    output:
        report(REPORT, caption="../report/caption.rst", category="facesets"),
    params:
        results=RESULTS,
        out=f"{RESULTS}/report",
    log:
        f"{RESULTS}/logs/report/report.log",
    shell:
        "{FACESETS} report {params.results:q} --out {params.out:q} --log {log:q}"
