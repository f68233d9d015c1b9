rule evaluate:
    input:
        split="data/split/split.csv",
        model=lambda wildcards: condition_model(wildcards.condition, wildcards.seed),
        images=lambda wildcards: dataset_images(CONDITION[wildcards.condition]["test"]),
        download_report="data/download/report.json",
        code=code("evaluate"),
    output:
        predictions="results/evaluate/{condition}/seed{seed}/predictions.csv",
        metrics="results/evaluate/{condition}/seed{seed}/metrics.json",
        plots=directory("results/evaluate/{condition}/seed{seed}/plots"),
    log:
        "logs/evaluate/{condition}/seed{seed}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 8  # capped at --cores locally
    resources:
        mem_mb=16000,
        runtime=30,
        gpu=1,
    params:
        cfg=config["evaluate"],
    script:
        "../scripts/evaluate.py"
