# The attacker ladder (ladder.rungs; docs/attacker-ladder.md): each rung's models are trained and
# evaluated by the train and evaluate steps, under results/ladder/<rung>/ (a rung that changes
# no train setting is the study's own model: reused, not retrained); ladder then measures the
# mask's cost against each attacker's unmasked score and fits the trend.


use rule train as train_ladder with:
    output:
        model="results/ladder/{rung}/train/{dataset}/seed{seed}/model.pt",
        history="results/ladder/{rung}/train/{dataset}/seed{seed}/history.csv",
        report="results/ladder/{rung}/train/{dataset}/seed{seed}/report.json",
    log:
        "logs/ladder/{rung}/train/{dataset}/seed{seed}.log",
    params:
        cfg=lambda wildcards: LADDER[wildcards.rung]["settings"],


use rule evaluate as evaluate_ladder with:
    input:
        split="data/split/split.csv",
        model=lambda wildcards: ladder_model(
            wildcards.rung, CONDITION[wildcards.condition]["train"], wildcards.seed
        ),
        images=lambda wildcards: dataset_images(CONDITION[wildcards.condition]["test"]),
        download_report="data/download/report.json",
        code=code("evaluate"),
    output:
        predictions="results/ladder/{rung}/evaluate/{condition}/seed{seed}/predictions.csv",
        metrics="results/ladder/{rung}/evaluate/{condition}/seed{seed}/metrics.json",
        plots=directory("results/ladder/{rung}/evaluate/{condition}/seed{seed}/plots"),
    log:
        "logs/ladder/{rung}/evaluate/{condition}/seed{seed}.log",


rule ladder:
    input:
        **ladder_inputs(),
        split="data/split/split.csv",
        code=code("ladder"),
    output:
        statistics="results/ladder/ladder.json",
        metrics="results/ladder/metrics.json",
        table="results/ladder/ladder.csv",
        figure=report(
            "results/ladder/plots/ladder.png",
            caption="../report/ladder.rst",
            category="attacker ladder",
        ),
        report="results/ladder/report.json",
    log:
        "logs/ladder.log",
    conda:
        "../envs/ladder.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        cfg=section_without("ladder", "rungs"),
        rungs={
            name: {
                k: r[k] for k in ("arch", "image_size", "epochs", "reused", "changes")
            }
            for name, r in LADDER.items()
        },
        baseline=config["compare"]["baseline"],
        condition=LADDER_CONDITION,
        seed=LADDER_SEED,
    script:
        "../scripts/ladder.py"
