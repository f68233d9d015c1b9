# Every trained model (training set, seed) on each external test set's unmasked faces and its
# faces under each mask set (sets, versions and paths: external.smk); the same faces for every model and version.
rule evaluate_external:
    input:
        **external_faces(),  # the manifest and the faces every version has
        model="results/train/{dataset}/seed{seed}/model.pt",
        images=lambda wildcards: external_images(
            wildcards.ext, wildcards.version, SHARDS
        ),
        download_report="data/download/report.json",
        code=code("evaluate_external"),
    output:
        predictions="results/external/{ext}/{version}/{dataset}/seed{seed}/predictions.csv",
        metrics="results/external/{ext}/{version}/{dataset}/seed{seed}/metrics.json",
    log:
        "logs/external/{ext}/evaluate/{version}/{dataset}/seed{seed}.log",
    conda:
        "../envs/evaluate_external.yaml"
    threads: 8  # capped at --cores locally
    resources:
        mem_mb=16000,
        runtime=30,
        gpu=1,
    params:
        # bootstrap and seed: another condition or external set reruns no evaluation there was
        cfg=section_without("evaluate", "conditions", "external"),
    script:
        "../scripts/evaluate_external.py"
