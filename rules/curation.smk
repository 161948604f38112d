# Export -> worker scores -> one plan per pass (reviewable, nothing moved) -> apply to the curated corpus.
# `snakemake plans` builds every plan; the default target applies them. GPU workers run through
# config `workers` (interpreter, providers, path map), set by a profile such as profiles/dml.
import json
import shlex

from facesets.curation.workers import score_settings

CURATION = str(LAYOUT.curation)
CORPUS = str(LAYOUT.corpus)
PASSES = ["occlusion", "consolidate", "bytedup", "neardup", "multiface"]
PLAN = {p: str(LAYOUT.plans / f"{p}.json") for p in PASSES}
APPLIED = str(LAYOUT.applied)
VERIFY = str(LAYOUT.verify_corpus)

# auto: the occlusion filter runs where the worker interpreter can import open_clip (an optional extra).
# Nothing is probed while parsing (it starts no process): the clip worker job finds out in the interpreter
# that would run it and, without open_clip, records why as the occlusion plan's reason to skip. The DAG is
# the same whichever interpreter a profile names, so switching profiles re-runs nothing.
OCCLUSION_ON = config["curation"]["occlusion"]["enabled"] != "off"


rule stage_worker:
    input:
        CROPS_INDEX,  # not the bundles manifest: a top_n change must not re-run the workers
    output:
        f"{CURATION}/{{worker}}_queue.json",
    wildcard_constraints:
        worker="multiface|clip",
    params:
        settings=lambda wc: json.dumps(score_settings(config, wc.worker), sort_keys=True),
        export=lambda wc, input: os.path.dirname(input[0]),
    log:
        f"{RESULTS}/logs/stage_worker/{{worker}}.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets stage-worker {wildcards.worker} --export {params.export:q} --out {output:q} "
        "--settings {params.settings:q} --log {log:q}"


# multiface reads the detection store (the export's checks filled it at the same setting) and detects only
# what it does not hold; clip runs scripts/clip_worker.py in the worker interpreter
rule run_worker:
    input:
        f"{CURATION}/{{worker}}_queue.json",
    output:
        f"{CURATION}/{{worker}}_results.json",
    wildcard_constraints:
        worker="multiface|clip",
    params:
        settings=lambda wc: json.dumps(score_settings(config, wc.worker), sort_keys=True),
        detections=str(LAYOUT.detections),
    log:
        f"{RESULTS}/logs/run_worker/{{worker}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/run_worker/{{worker}}.tsv"
    threads: lambda wc: workflow.cores if wc.worker == "multiface" else 1
    resources:
        gpu=1,
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets run-worker {wildcards.worker} {input:q} {output:q} --settings {params.settings:q} "
        "--detections {params.detections:q} --threads {threads} --log {log:q}"


rule plan_occlusion:
    input:
        export=CROPS_INDEX,
        results=[f"{CURATION}/clip_results.json"] if OCCLUSION_ON else [],
    output:
        PLAN["occlusion"],
    params:
        settings=wf.settings(config, "curation.occlusion"),
        decisions=fsdecisions.part(DECISIONS, "drops"),
        export=lambda wc, input: os.path.dirname(input.export),
        results=lambda wc, input: f"--results {shlex.quote(input.results[0])}" if input.results else "",
    log:
        f"{RESULTS}/logs/plan/occlusion.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets plan occlusion --export {params.export:q} {params.results} --out {output:q} "
        "--settings {params.settings:q} --decisions {params.decisions:q} --log {log:q}"


rule plan_consolidate:
    input:
        export=CROPS_INDEX,
        cache=CACHE,
        prior=wf.prior(PASSES, PLAN, "consolidate"),
    output:
        PLAN["consolidate"],
    params:
        settings=wf.settings(config, "curation.consolidate", ("curation.bytedup", ["family_regex"])),
        decisions=fsdecisions.part(DECISIONS, "consolidate"),
        export=lambda wc, input: os.path.dirname(input.export),
    log:
        f"{RESULTS}/logs/plan/consolidate.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets plan consolidate --export {params.export:q} --cache {input.cache:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --decisions {params.decisions:q} --log {log:q}"


rule plan_bytedup:
    input:
        export=CROPS_INDEX,
        prior=wf.prior(PASSES, PLAN, "bytedup"),
    output:
        PLAN["bytedup"],
    params:
        settings=wf.settings(config, "curation.bytedup"),
        decisions=fsdecisions.part(DECISIONS, "drops"),
        export=lambda wc, input: os.path.dirname(input.export),
    log:
        f"{RESULTS}/logs/plan/bytedup.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets plan bytedup --export {params.export:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --decisions {params.decisions:q} --log {log:q}"


rule plan_neardup:
    input:
        export=CROPS_INDEX,
        cache=CACHE,
        prior=wf.prior(PASSES, PLAN, "neardup"),
    output:
        PLAN["neardup"],
    params:
        settings=wf.settings(config, "curation.neardup"),
        decisions=fsdecisions.part(DECISIONS, "drops"),
        export=lambda wc, input: os.path.dirname(input.export),
    log:
        f"{RESULTS}/logs/plan/neardup.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets plan neardup --export {params.export:q} --cache {input.cache:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --decisions {params.decisions:q} --log {log:q}"


rule plan_multiface:
    input:
        export=CROPS_INDEX,
        results=f"{CURATION}/multiface_results.json",
        prior=wf.prior(PASSES, PLAN, "multiface"),
    output:
        PLAN["multiface"],
    params:
        settings=wf.settings(config, "curation.multiface"),
        decisions=fsdecisions.part(DECISIONS, "drops"),
        export=lambda wc, input: os.path.dirname(input.export),
    log:
        f"{RESULTS}/logs/plan/multiface.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets plan multiface --export {params.export:q} --results {input.results:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --decisions {params.decisions:q} --log {log:q}"


rule plans:
    input:
        list(PLAN.values()),


rule apply:
    input:
        export=EXPORT_MANIFEST,
        plans=list(PLAN.values()),
    output:
        APPLIED,
    params:
        settings=wf.settings(config, ("curation", ["thin_below"]), ("export", ["top_n"])),
        export=lambda wc, input: os.path.dirname(input.export),
        corpus=CORPUS,
    log:
        f"{RESULTS}/logs/apply/apply.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets apply {input.plans:q} --export {params.export:q} --corpus {params.corpus:q} --out {output:q} "
        "--settings {params.settings:q} --log {log:q}"


rule verify_fsz:
    input:
        APPLIED,
    output:
        VERIFY,
    params:
        detections=str(LAYOUT.detections),  # verdicts by crop content, shared (export.verdicts)
        settings=VERIFY_SETTINGS,
        corpus=CORPUS,
    log:
        f"{RESULTS}/logs/verify_fsz/verify_fsz.log",
    benchmark:
        f"{RESULTS}/benchmarks/verify_fsz.tsv"
    threads: workflow.cores  # bundles checked at once
    resources:
        gpu=GPU,  # detects a crop the store does not know (in the worker interpreter where a profile names one)
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets verify-fsz {params.corpus:q} --json {output:q} --allow-empty --settings {params.settings:q} "
        "--quiet --detections {params.detections:q} --threads {threads} --log {log:q}"
