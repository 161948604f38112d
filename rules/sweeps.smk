# Threshold sweeps: one target per combination of swept values (named by its values), all from the
# one embed cache; adding a value runs only the new combinations. Each runs the whole post-embed part
# (cluster/refine, export, curation) in its own folder and scores the final corpus.
from facesets.core.errors import ConfigError
from facesets.identities.sweep import combos

SWEEPS = str(LAYOUT.sweeps)
try:
    SWEEP_COMBOS = combos(config["sweep"]["params"], config)
except ConfigError as exc:  # one line, as every config error
    sys.exit(f"facesets: {exc}")
SWEEP_SUMMARY = f"{SWEEPS}/summary.csv"


rule sweep_point:
    input:
        cache=CACHE,
        enrich=ENRICH,
        raw=RAW_MANIFEST,
        model=MODEL,
        clip=[f"{CURATION}/clip_results.json"] if OCCLUSION_ON else [],
        export=ancient(CROPS_INDEX),  # its crops are linked in; wait for it, never re-run because of it
    output:
        f"{SWEEPS}/{{combo}}/metrics.json",
    wildcard_constraints:
        combo=r"[a-z_]+(\.[a-z_]+)+~[^/]+",
    params:
        # the base settings of every post-embed stage; the swept values themselves are in the path
        settings=wf.settings(config, "cluster", "refine", "export", "curation", "evaluate", ("verify", ["checks"]),
                             ("model", ["pack", "det_size", "det_thresh"]), ("embed", ["max_image_pixels"])),
        detections=str(LAYOUT.detections),  # shared with the pipeline: a crop any run checked is not detected again
        clip=lambda wc, input: f"--clip-results {shlex.quote(input.clip[0])}" if input.clip else "",
        export=lambda wc, input: os.path.dirname(input.export),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/sweep_point/{{combo}}.log",
    threads: workflow.cores
    resources:
        gpu=GPU,
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets sweep-point {input.cache:q} {params.out:q} --combo {wildcards.combo:q} --enrich {input.enrich:q} "
        "--raw-manifest {input.raw:q} {params.clip} --detections {params.detections:q} --reuse-export {params.export:q} "
        "--threads {threads} --settings {params.settings:q} --log {log:q}"


rule sweep_summary:
    input:
        [f"{SWEEPS}/{c}/metrics.json" for c in SWEEP_COMBOS],
    output:
        SWEEP_SUMMARY,
    params:
        out=lambda wc, output: os.path.dirname(output[0]),
        settings=wf.settings(config, "sweep"),
    log:
        f"{RESULTS}/logs/sweep_summary/sweep_summary.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets sweep-summary {params.out:q} --metrics {input:q} --settings {params.settings:q} --log {log:q}"
