# The final corpus (what the person loads into roop) scored against a labels file, when one is configured:
# precision, recall, coverage, and where every labeled face that is in no final faceset went.

EVALUATION = str(LAYOUT.evaluation)


rule evaluate:
    input:
        applied=APPLIED,  # the final corpus: what the person loads into roop
        cache=CACHE,
    output:
        EVALUATION,
    params:
        labels=config["evaluate"]["labels"],
        root=config["evaluate"]["root"],
        results=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{RESULTS}/logs/evaluate/evaluate.log",
    conda:
        "../envs/facesets.yaml"
    shell:
        "facesets evaluate {params.results:q} --stage final --labels {params.labels:q} --root {params.root:q} "
        "--cache {input.cache:q} --out {output:q} --log {log:q}"
