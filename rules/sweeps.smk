# Threshold sweeps: one target per combination of swept values (named by its values), all from the
# one embed cache; adding a value runs only the new combinations.
from facesets.identities.sweep import combos

SWEEPS = str(LAYOUT.sweeps)
SWEEP_COMBOS = combos(config["sweep"]["params"])
SWEEP_SUMMARY = f"{SWEEPS}/summary.csv"


rule sweep_point:
    input:
        CACHE,
    output:
        f"{SWEEPS}/{{combo}}/metrics.json",
    wildcard_constraints:
        combo=r"[a-z_]+\.[a-z_]+~[^/]+",
    params:
        # the base settings of the swept sections; the swept values themselves are in the path
        settings=wf.settings(config, "refine", "cluster", "evaluate"),
        out=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/sweep_point/{{combo}}.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets sweep-point {input:q} {params.out:q} --combo {wildcards.combo:q} "
        "--settings {params.settings:q} --log {log:q}"


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
