rule split:
    input:
        **identity_inputs(),  # split.group_by: identity: descriptors (the identity rule)
        manifest="data/download/manifest.csv",
        groups="data/download/groups.csv",
        images="data/download/images",  # the rejected inputs' picture
        download_report="data/download/report.json",
        landmarks=shard_tables("align", "landmarks.csv"),
        masks=mask_tables("masks.csv"),
        rejects=[
            "data/download/rejects.csv",
            *shard_tables("align", "rejects.csv"),
            *mask_tables("rejects.csv"),
        ],
        code=code("split"),
    output:
        **reported(identity_outputs(), "data_identities.rst", "data"),
        split="data/split/split.csv",
        rejects="data/split/rejects.csv",
        report="data/split/report.json",
        data_report="results/data/report.json",
        data_labels=report(
            "results/data/labels.png",
            caption="../report/data_labels.rst",
            category="data",
        ),
        data_rejects=report(
            "results/data/rejects.png",
            caption="../report/data_rejects.rst",
            category="data",
        ),
    log:
        "logs/split.log",
    conda:
        "../envs/split.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cfg=config["split"],
    script:
        "../scripts/split.py"
