rule mask:
    input:
        images="data/align/{shard}/images",
        landmarks="data/align/{shard}/landmarks.csv",
        code=code("mask"),
    output:
        images=directory("data/mask/{shard}/images"),
        masks="data/mask/{shard}/masks.csv",
        rejects="data/mask/{shard}/rejects.csv",
        report="data/mask/{shard}/report.json",
        sheet="results/mask/{shard}/contact_sheet.png",
    log:
        "logs/mask/{shard}.log",
    conda:
        "../envs/mask.yaml"
    threads: 1  # parallel over shards (align.shards), one core each
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=config["mask"],
    script:
        "../scripts/mask.py"
