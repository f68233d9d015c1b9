rule align:
    input:
        images="data/download/images",
        manifest="data/download/manifest.csv",
    output:
        images=directory("data/align/images"),
        landmarks="data/align/landmarks.csv",
        rejects="data/align/rejects.csv",
        report="data/align/report.json",
    log:
        "logs/align.log",
    conda:
        "../envs/align.yaml"
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=config["align"],
    script:
        "../scripts/align.py"
