rule evaluate:
    input:
        split="data/split/split.csv",
        models=expand("results/train/{dataset}/model.pt", dataset=TRAIN_SETS),
        histories=expand("results/train/{dataset}/history.csv", dataset=TRAIN_SETS),
        images=[dataset_images(d) for d in DATASETS],
        rejects=[
            "data/download/rejects.csv",
            "data/align/rejects.csv",
            "data/mask/rejects.csv",
            "data/split/rejects.csv",
        ],
        manifest="data/download/manifest.csv",
        download_report="data/download/report.json",
    output:
        metrics="results/metrics.json",
        statistics="results/evaluate/statistics.json",
        predictions="results/evaluate/predictions.csv",
        rejects="results/evaluate/rejects.csv",
        groups="results/evaluate/groups.csv",
        report="results/report.html",
        plots=directory("results/evaluate/plots"),
    log:
        "logs/evaluate.log",
    conda:
        "../envs/evaluate.yaml"
    threads: min(8, workflow.cores)
    resources:
        mem_mb=16000,
        runtime=60,
        gpu=1,
    params:
        cfg=config["evaluate"],
        train=config["train"],
        images={d: dataset_images(d) for d in DATASETS},
        all=config,
    script:
        "../scripts/evaluate.py"
