rule download:
    input:
        sources=download_inputs,
        reference="src/maskprivacy/data/utkface_aligned_sha256.csv.gz",
        fixes=label_fixes_input,
        code=code("download"),
    output:
        images=directory("data/download/images"),
        manifest="data/download/manifest.csv",
        rejects="data/download/rejects.csv",
        report="data/download/report.json",
        groups="data/download/groups.csv",
        pairs="data/download/near_pairs.csv",
        verification="data/download/verification.csv",
        sheet="results/data/near_duplicates.png",
    log:
        "logs/download.log",
    conda:
        "../envs/download.yaml"
    threads: 8  # capped at --cores locally
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cfg=config["download"],
    script:
        "../scripts/download.py"
