# The recognizer attacker (recognize.enabled) on each external test set (evaluate.external): the
# heads recognize fitted on UTKFace (per training set and seed, not refitted) on the descriptors
# of the set's unmasked and masked faces (describe_external, external.smk), on the faces the CNN's
# evaluate_external scores. compare reports them beside the CNN's.
rule recognize_external:
    input:
        **external_faces(),  # the manifest and the faces every version has
        descriptors=lambda wildcards: expand(
            "data/external/{ext}/describe/{version}/{shard}/descriptors.csv",
            ext=wildcards.ext,
            version=external_versions(wildcards.ext),
            shard=SHARDS,
        ),
        heads=heads_files(),  # recognize's, kept when an external set is configured
        download_report="data/download/report.json",
        code=code("recognize_external"),
    output:
        # version-major, then training set, seed: as compare lists them
        predictions=expand(
            "results/recognize_external/{{ext}}/{version}/{dataset}/seed{seed}/predictions.csv",
            version=EXTERNAL_VERSIONS,
            dataset=TRAIN_SETS,
            seed=SEEDS,
        ),
        metrics=expand(
            "results/recognize_external/{{ext}}/{version}/{dataset}/seed{seed}/metrics.json",
            version=EXTERNAL_VERSIONS,
            dataset=TRAIN_SETS,
            seed=SEEDS,
        ),
        rejects="results/recognize_external/{ext}/rejects.csv",
        report="results/recognize_external/{ext}/report.json",
    log:
        "logs/recognize_external/{ext}.log",
    conda:
        "../envs/recognize_external.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        # bootstrap and seed of the metrics (as evaluate_external's); the heads carry recognize's
        cfg=section_without("evaluate", "conditions", "external", "tta"),
    script:
        "../scripts/recognize_external.py"
