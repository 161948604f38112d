# Threshold sweeps: one target per combination of swept values (named by its values), all from the
# one embed cache; adding a value runs only the new combinations.
from facesets.identities.sweep import combos

SWEEPS = f"{RESULTS}/sweeps"
SWEEP_COMBOS = combos(config["sweep"]["params"])
SWEEP_SUMMARY = f"{SWEEPS}/summary.csv"


def sweep_settings(wildcards):
    # the base settings of the swept sections; the swept values themselves are in the path
    return json.dumps({"refine": config["refine"], "cluster": config["cluster"], "evaluate": config["evaluate"]},
                      sort_keys=True)


rule sweep_point:
    input:
        CACHE,
    output:
        f"{SWEEPS}/{{combo}}/metrics.json",
    wildcard_constraints:
        combo=r"[a-z_]+\.[a-z_]+~[^/]+",
    params:
        settings=sweep_settings,
        out=lambda wc: f"{SWEEPS}/{wc.combo}",
    log:
        f"{RESULTS}/logs/sweep_point/{{combo}}.log",
    shell:
        "{FACESETS} sweep-point {input:q} {params.out:q} --combo {wildcards.combo:q} "
        "--settings {params.settings:q} --log {log:q}"


rule sweep_summary:
    input:
        [f"{SWEEPS}/{c}/metrics.json" for c in SWEEP_COMBOS],
    output:
        SWEEP_SUMMARY,
    params:
        out=SWEEPS,
        settings=json.dumps({"sweep": config["sweep"]}, sort_keys=True),
    log:
        f"{RESULTS}/logs/sweep_summary/sweep_summary.log",
    shell:
        "{FACESETS} sweep-summary {params.out:q} --metrics {input:q} --settings {params.settings:q} --log {log:q}"
