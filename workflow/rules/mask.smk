rule mask:
    input:
        images="data/align/images",
        landmarks="data/align/landmarks.csv",
    output:
        images=directory("data/mask/images"),
        masks="data/mask/masks.csv",
        rejects="data/mask/rejects.csv",
        report="data/mask/report.json",
        sheet="results/mask/contact_sheet.png",
    log:
        "logs/mask.log",
    conda:
        "../envs/mask.yaml"
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=config["mask"],
    script:
        "../scripts/mask.py"
