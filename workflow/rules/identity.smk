rule identity:
    input:
        images="data/align/{shard}/images",
        landmarks="data/align/{shard}/landmarks.csv",
        code=code("identity"),
    output:
        descriptors="data/identity/{shard}/descriptors.csv",
        rejects="data/identity/{shard}/rejects.csv",
        report="data/identity/{shard}/report.json",
    log:
        "logs/identity/{shard}.log",
    conda:
        "../envs/identity.yaml"
    threads: 1  # parallel over shards (align.shards), one core each
    resources:
        mem_mb=2000,
        runtime=120,
    params:
        cfg=config.get("identity", {}),
    script:
        "../scripts/identity.py"
