# Export -> worker scores -> one plan per pass (reviewable, nothing moved) -> apply to the curated corpus.
# `snakemake plans` builds every plan; the default target applies them. GPU workers run through
# config `workers` (interpreter, providers, path map), set by a profile such as profiles/dml.
import importlib.util

CURATION = f"{RESULTS}/curation"
CORPUS = f"{RESULTS}/facesets_swap_ready"
PLAN = {p: f"{CURATION}/plans/{p}.json" for p in ("occlusion", "consolidate", "bytedup", "neardup", "multiface")}
APPLIED = f"{CURATION}/applied.json"
VERIFY = f"{CURATION}/verify.json"
WORKER_PY = config["workers"]["python"] or sys.executable


def _worker_has_open_clip():
    """auto: the occlusion filter runs where the worker interpreter can import open_clip (an optional extra)."""
    if config["workers"]["python"] is None:
        return importlib.util.find_spec("open_clip") is not None
    import subprocess

    probe = [config["workers"]["python"], "-c", "import importlib.util as u; print(u.find_spec('open_clip') is not None)"]
    try:
        return subprocess.run(probe, capture_output=True, text=True, timeout=120).stdout.strip() == "True"
    except (OSError, subprocess.TimeoutExpired):
        return False


_occ = config["curation"]["occlusion"]["enabled"]
OCCLUSION_ON = _occ == "on" or (_occ == "auto" and _worker_has_open_clip())
# the worker interpreter, providers and path map are how work runs, not what it computes: not params
WORKER_RUNTIME = json.dumps({"workers": config["workers"], "model": {"root": config["model"]["root"]}})


def worker_settings(worker):
    """Only what changes a worker's scores: thresholds applied to the scores live in the plan rules."""
    if worker == "multiface":
        floor = min(0.3, config["curation"]["multiface"]["min_det_score"])
        return json.dumps({"model": EMBED_SETTINGS["model"],
                           "curation": {"multiface": {"min_det_score": floor}}}, sort_keys=True)
    occ = config["curation"]["occlusion"]
    return json.dumps({"curation": {"occlusion": {k: occ[k] for k in ("model", "pretrained", "prompts", "batch_size")}}},
                      sort_keys=True)


def pass_settings(name, **extra):
    return json.dumps({"curation": {name: config["curation"][name]}, **extra}, sort_keys=True)


def prior_plans(name):
    order = list(PLAN)
    return [PLAN[p] for p in order[: order.index(name)]]


rule stage_worker:
    input:
        CROPS_INDEX,  # not the bundles manifest: a top_n change must not re-run the workers
    output:
        f"{CURATION}/{{worker}}_queue.json",
    wildcard_constraints:
        worker="multiface|clip",
    params:
        settings=lambda wc: worker_settings(wc.worker),
        export=EXPORT,
    log:
        f"{RESULTS}/logs/stage_worker/{{worker}}.log",
    shell:
        "{FACESETS} stage-worker {wildcards.worker} --export {params.export:q} --out {output:q} "
        "--settings {params.settings:q} --runtime {WORKER_RUNTIME:q} --log {log:q}"


rule run_worker:
    input:
        f"{CURATION}/{{worker}}_queue.json",
    output:
        f"{CURATION}/{{worker}}_results.json",
    wildcard_constraints:
        worker="multiface|clip",
    log:
        f"{RESULTS}/logs/run_worker/{{worker}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/run_worker/{{worker}}.tsv"
    resources:
        gpu=1,
    shell:
        '"{WORKER_PY}" {SCRIPTS:q}/{wildcards.worker}_worker.py {input:q} {output:q} 2> {log:q}'


rule plan_occlusion:
    input:
        export=CROPS_INDEX,
        results=[f"{CURATION}/clip_results.json"] if OCCLUSION_ON else [],
    output:
        PLAN["occlusion"],
    params:
        settings=pass_settings("occlusion"),
        export=EXPORT,
        results=f"--results {CURATION}/clip_results.json" if OCCLUSION_ON else "",
    log:
        f"{RESULTS}/logs/plan/occlusion.log",
    shell:
        "{FACESETS} plan occlusion --export {params.export:q} {params.results} --out {output:q} "
        "--settings {params.settings:q} --log {log:q}"


rule plan_consolidate:
    input:
        export=CROPS_INDEX,
        cache=CACHE,
        prior=prior_plans("consolidate"),
    output:
        PLAN["consolidate"],
    params:
        settings=json.dumps({"curation": {"consolidate": config["curation"]["consolidate"],
                                          "bytedup": {"family_regex": config["curation"]["bytedup"]["family_regex"]}}},
                            sort_keys=True),
        export=EXPORT,
    log:
        f"{RESULTS}/logs/plan/consolidate.log",
    shell:
        "{FACESETS} plan consolidate --export {params.export:q} --cache {input.cache:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --log {log:q}"


rule plan_bytedup:
    input:
        export=CROPS_INDEX,
        prior=prior_plans("bytedup"),
    output:
        PLAN["bytedup"],
    params:
        settings=pass_settings("bytedup"),
        export=EXPORT,
    log:
        f"{RESULTS}/logs/plan/bytedup.log",
    shell:
        "{FACESETS} plan bytedup --export {params.export:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --log {log:q}"


rule plan_neardup:
    input:
        export=CROPS_INDEX,
        cache=CACHE,
        prior=prior_plans("neardup"),
    output:
        PLAN["neardup"],
    params:
        settings=pass_settings("neardup"),
        export=EXPORT,
    log:
        f"{RESULTS}/logs/plan/neardup.log",
    shell:
        "{FACESETS} plan neardup --export {params.export:q} --cache {input.cache:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --log {log:q}"


rule plan_multiface:
    input:
        export=CROPS_INDEX,
        results=f"{CURATION}/multiface_results.json",
        prior=prior_plans("multiface"),
    output:
        PLAN["multiface"],
    params:
        settings=pass_settings("multiface"),
        export=EXPORT,
    log:
        f"{RESULTS}/logs/plan/multiface.log",
    shell:
        "{FACESETS} plan multiface --export {params.export:q} --results {input.results:q} --prior {input.prior:q} "
        "--out {output:q} --settings {params.settings:q} --log {log:q}"


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
        settings=json.dumps({"curation": {"thin_below": config["curation"]["thin_below"]},
                             "export": {"top_n": config["export"]["top_n"]}}, sort_keys=True),
        export=EXPORT,
        corpus=CORPUS,
    log:
        f"{RESULTS}/logs/apply/apply.log",
    shell:
        "{FACESETS} apply {input.plans:q} --export {params.export:q} --corpus {params.corpus:q} --out {output:q} "
        "--settings {params.settings:q} --log {log:q}"


rule verify_fsz:
    input:
        APPLIED,
    output:
        VERIFY,
    params:
        settings=json.dumps({"model": EMBED_SETTINGS["model"], "export": {"out_size": config["export"]["out_size"]},
                             "verify": config["verify"]}, sort_keys=True),
        corpus=CORPUS,
    log:
        f"{RESULTS}/logs/verify_fsz/verify_fsz.log",
    shell:
        "{FACESETS} verify-fsz {params.corpus:q} --json {output:q} --allow-empty --settings {params.settings:q} "
        "--runtime {EMBED_RUNTIME:q} --quiet --log {log:q}"
