# The HTML report, at the end of the default target (also in `snakemake --report`).

REPORT = f"{RESULTS}/report/index.html"


rule report:
    input:
        APPLIED,
        VERIFY,
        VERIFY_EXPORT,
        EXPORT_MANIFEST,
        [ERAS_MANIFEST] if USE_ERAS else [],
        [SWEEP_SUMMARY] if SWEEP_COMBOS else [],
    output:
        report(REPORT, caption="../report/caption.rst", category="facesets"),
    params:
        results=RESULTS,
        out=f"{RESULTS}/report",
    log:
        f"{RESULTS}/logs/report/report.log",
    shell:
        "{FACESETS} report {params.results:q} --out {params.out:q} --log {log:q}"
