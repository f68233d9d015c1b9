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
        plots=report(
            directory("results/evaluate/{condition}/seed{seed}/plots"),
            patterns=["{figure}.png"],
            caption="../report/evaluate_plots.rst",
            category="evaluation",
            subcategory="{condition}",
            labels={
                "condition": "{condition}",
                "seed": "{seed}",
                "figure": "{figure}",
            },
        ),
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
        # its own condition only: another condition (or external set) reruns no evaluation there was
        cfg=section_without("evaluate", "conditions", "external"),
        condition=lambda wildcards: CONDITION[wildcards.condition],
    script:
        "../scripts/evaluate.py"
