rule describe:
    input:
        images="data/mask/{maskset}/{shard}/images",
        landmarks="data/align/{shard}/landmarks.csv",
        code=code("describe"),
    output:
        descriptors="data/describe/{maskset}/{shard}/descriptors.csv",
        rejects="data/describe/{maskset}/{shard}/rejects.csv",
        report="data/describe/{maskset}/{shard}/report.json",
    log:
        "logs/describe/{maskset}/{shard}.log",
    conda:
        "../envs/describe.yaml"
    threads: 1  # parallel over mask sets and shards (align.shards), one core each
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        cfg=config.get("identity", {}),  # the same network and parameters as the unmasked faces'
    script:
        "../scripts/describe.py"
