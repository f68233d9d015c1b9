rule compare:
    input:
        **identity_outputs(),  # split.group_by: identity: the identities' contact sheet
        **study_inputs(),  # more than one mask set: the landmarks, for what each mask covers
        **EXTERNAL_INPUTS,
        **recognizer_inputs(),  # recognize.enabled: the second attacker's predictions  # evaluate.external: the external test sets' tables and predictions
        split="data/split/split.csv",
        # condition-major, seed-minor: the order workflow/scripts/compare.py reads them in
        predictions=expand(
            "results/evaluate/{condition}/seed{seed}/predictions.csv",
            condition=CONDITIONS,
            seed=SEEDS,
        ),
        metrics=expand(
            "results/evaluate/{condition}/seed{seed}/metrics.json",
            condition=CONDITIONS,
            seed=SEEDS,
        ),
        plots=expand(
            "results/evaluate/{condition}/seed{seed}/plots",
            condition=CONDITIONS,
            seed=SEEDS,
        ),
        histories=expand(
            "results/train/{dataset}/seed{seed}/history.csv",
            dataset=TRAIN_SETS,
            seed=SEEDS,
        ),
        train_reports=expand(
            "results/train/{dataset}/seed{seed}/report.json",
            dataset=TRAIN_SETS,
            seed=SEEDS,
        ),
        rejects=[
            "data/download/rejects.csv",
            *shard_tables("align", "rejects.csv"),
            *mask_tables("rejects.csv"),
            "data/split/rejects.csv",
        ],
        masks=mask_tables("masks.csv"),
        sheet=expand(
            "results/mask/{maskset}/0/contact_sheet.png", maskset=MASK_SETS[:1]
        ),
        download_report="data/download/report.json",
        data_report="results/data/report.json",
        data_rejects="results/data/rejects.png",
        code=code("compare"),
    output:
        metrics="results/metrics.json",
        statistics="results/compare/statistics.json",
        groups="results/compare/groups.csv",
        rejects="results/compare/rejects.csv",
        plots=report(
            directory("results/compare/plots"),
            patterns=["{figure}.png"],
            caption="../report/compare_plots.rst",
            category=plot_category,
            subcategory=plot_subcategory,
        ),
        # verdict.html (the answer table) and real_masks.html (the real masks' sentences): also
        # the landing text (workflow/report/workflow.rst); no HTML among the plots, which DVC
        # would draw with scripts from a CDN
        fragments=report(
            directory("results/compare/fragments"),
            patterns=["{figure}.html"],
            caption="../report/compare_fragments.rst",
            category=plot_category,
        ),
        report=report(
            "results/report.html",
            caption="../report/report_page.rst",
            category="answer",
        ),
        answer=report(
            "results/compare/answer.html",
            caption="../report/answer.rst",
            category="answer",
        ),
    log:
        "logs/compare.log",
    conda:
        "../envs/compare.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        cfg=config["compare"],
        conditions=config["evaluate"]["conditions"],
        seeds=config["train"]["seeds"],
        all=tracked_config(),  # every section but compute
    script:
        "../scripts/compare.py"
