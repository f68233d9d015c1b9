def download_inputs(wildcards):
    """A local folder or archive named by download.path is an input (reruns when it changes)."""
    if config["download"]["source"] == "path":
        return [config["download"]["path"]]
    return []


rule download:
    input:
        download_inputs,
    output:
        images=directory("data/download/images"),
        manifest="data/download/manifest.csv",
        rejects="data/download/rejects.csv",
        report="data/download/report.json",
    log:
        "logs/download.log",
    conda:
        "../envs/download.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        cfg=config["download"],
    script:
        "../scripts/download.py"
