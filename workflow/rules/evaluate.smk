rule evaluate:
    input:
        split="data/split/split.csv",
        model=lambda wildcards: condition_model(wildcards.condition),
        images=lambda wildcards: dataset_images(CONDITION[wildcards.condition]["test"]),
        download_report="data/download/report.json",
    output:
        predictions="results/evaluate/{condition}/predictions.csv",
        metrics="results/evaluate/{condition}/metrics.json",
        plots=directory("results/evaluate/{condition}/plots"),
    log:
        "logs/evaluate/{condition}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 8  # capped at --cores locally
    resources:
        mem_mb=16000,
        runtime=30,
        gpu=1,
    params:
        cfg=config["evaluate"],
        train=config["train"],
    script:
        "../scripts/evaluate.py"
