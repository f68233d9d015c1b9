rule mask:
    input:
        images="data/align/{shard}/images",
        landmarks="data/align/{shard}/landmarks.csv",
        code=code("mask"),
    output:
        images=directory("data/mask/{maskset}/{shard}/images"),
        masks="data/mask/{maskset}/{shard}/masks.csv",
        rejects="data/mask/{maskset}/{shard}/rejects.csv",
        report="data/mask/{maskset}/{shard}/report.json",
        # in Snakemake's report as compare's results/compare/plots/masks.png (no shards there)
        sheet="results/mask/{maskset}/{shard}/contact_sheet.png",
    log:
        "logs/mask/{maskset}/{shard}.log",
    conda:
        "../envs/mask.yaml"
    threads: 1  # parallel over mask sets and shards (align.shards), one core each
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=section_without("mask", "sets"),  # what every mask set draws with
        maskset=mask_set,
    script:
        "../scripts/mask.py"
