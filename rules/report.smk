# The HTML report, at the end of the default target (also in `snakemake --report`).
# Its named inputs are the manifests it reads, so a change to any of them rebuilds it.

REPORT = str(LAYOUT.report_dir / "index.html")


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
        not_scanned=[f"{LISTING}/{src}/not_scanned.json" for src in SOURCES],
        evaluation=[EVALUATION] if config["evaluate"]["labels"] else [],
    output:
        report(REPORT, caption="../report/caption.rst", category="facesets"),
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        results=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),  # the report is <results>/report/
    log:
        f"{RESULTS}/logs/report/report.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets report {params.results:q} --out {params.out:q} --log {log:q}"
