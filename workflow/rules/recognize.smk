rule recognize:
    input:
        split="data/split/split.csv",
        # every version a condition trains or tests on: unmasked (identity), mask sets (describe)
        descriptors=[t for d in DATASETS for t in descriptor_tables(d)],
        download_report="data/download/report.json",
        code=code("recognize"),
    output:
        **recognizer_heads(),  # the fitted heads, for recognize_external (evaluate.external)
        predictions=recognizer_outputs("predictions.csv"),
        metrics=recognizer_outputs("metrics.json"),
        rejects="results/recognize/rejects.csv",
        report="results/recognize/report.json",
    log:
        "logs/recognize.log",
    conda:
        "../envs/recognize.yaml"
    threads: 2  # capped at --cores locally; the heads' cross-validation folds run in parallel
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=section_without("recognize", "enabled"),
        seeds=config["train"]["seeds"],
        # the conditions and their metrics' bootstrap and seed (not the external sets, nor the CNN's tta)
        evaluate=section_without("evaluate", "external", "tta"),
    script:
        "../scripts/recognize.py"
