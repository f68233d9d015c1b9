rule train:
    input:
        split="data/split/split.csv",
        images=lambda wildcards: dataset_images(wildcards.dataset),
        code=code("train"),
    output:
        model="results/train/{dataset}/seed{seed}/model.pt",
        history="results/train/{dataset}/seed{seed}/history.csv",
        report="results/train/{dataset}/seed{seed}/report.json",
    log:
        "logs/train/{dataset}/seed{seed}.log",
    conda:
        "../envs/train.yaml"
    threads: 8  # capped at --cores locally
    resources:
        mem_mb=32000,
        runtime=120,
        gpu=1,
    params:
        cfg=config["train"],
    script:
        "../scripts/train.py"
