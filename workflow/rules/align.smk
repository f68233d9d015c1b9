rule align:
    input:
        images="data/download/images",
        manifest="data/download/manifest.csv",
        landmarks=align_landmarks_input,  # align.landmarks: faces' landmarks from elsewhere
        code=code("align"),
    output:
        images=directory("data/align/{shard}/images"),
        landmarks="data/align/{shard}/landmarks.csv",
        rejects="data/align/{shard}/rejects.csv",
        report="data/align/{shard}/report.json",
    log:
        "logs/align/{shard}.log",
    conda:
        "../envs/align.yaml"
    threads: 1  # parallel over shards (align.shards), one core each
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=config["align"],
    script:
        "../scripts/align.py"
