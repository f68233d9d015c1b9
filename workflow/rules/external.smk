# External test sets (evaluate.external: a name -> a folder or archive of faces and a labels CSV).
# Each is read by `external`, then taken through the same align and mask code as UTKFace, with
# the same parameters, as jobs of its own (align_external: one per set and shard; mask_external:
# one per set, mask set and shard),
# then every trained model (training set, seed) scores its unmasked and its masked faces
# (evaluate_external.smk). compare reports them next to UTKFace's test set. With recognize.enabled,
# the recognizer attacker too: describe_external (one job per set, version and shard) gives dlib's
# descriptors of every version, recognize_external (one per set) applies recognize's fitted heads.
EXTERNAL_SETS = config["evaluate"].get("external") or {}
EXTERNAL = sorted(EXTERNAL_SETS)
# the sets whose labels say which photos wear a real mask (a masked column): their worn photos
# are a version of their own, "worn", scored as they are and never painted over
EXTERNAL_WORN = [ext for ext in EXTERNAL if says_worn(EXTERNAL_SETS[ext])]


# every version of any set (recognize_external writes each for every set: a set without real
# masks has an empty worn version, which compare does not read)
EXTERNAL_VERSIONS = ["unmasked", *MASK_SETS, *(["worn"] if EXTERNAL_WORN else [])]
# compare's inputs (none without external sets): set-major, then version, training set, seed
EXTERNAL_INPUTS = (
    dict(
        external_reports=expand("data/external/{ext}/report.json", ext=EXTERNAL),
        external_manifests=expand("data/external/{ext}/manifest.csv", ext=EXTERNAL),
        # a set with real masks: its photos, for the picture of those align could not use
        external_images=expand("data/external/{ext}/images", ext=EXTERNAL_WORN),
        external_rejects=[
            f
            for ext in EXTERNAL
            for f in [
                f"data/external/{ext}/rejects.csv",
                *expand(
                    "data/external/{ext}/align/{shard}/rejects.csv",
                    ext=ext,
                    shard=SHARDS,
                ),
                *expand(
                    "data/external/{ext}/mask/{maskset}/{shard}/rejects.csv",
                    ext=ext,
                    maskset=MASK_SETS,
                    shard=SHARDS,
                ),
            ]
        ],
        external_predictions=per_set_version(
            "results/external/{ext}/{version}/{dataset}/seed{seed}/predictions.csv",
            dataset=TRAIN_SETS,
            seed=SEEDS,
        ),
        **(
            dict(
                recognizer_external_predictions=per_set_version(
                    "results/recognize_external/{ext}/{version}/{dataset}/seed{seed}/predictions.csv",
                    dataset=TRAIN_SETS,
                    seed=SEEDS,
                ),
                recognizer_external_rejects=expand(
                    "results/recognize_external/{ext}/rejects.csv", ext=EXTERNAL
                ),
            )
            if RECOGNIZE
            else {}
        ),
    )
    if EXTERNAL
    else {}
)


wildcard_constraints:
    ext="|".join(EXTERNAL) or "$^",  # the set names (none: nothing matches)
    version="|".join(EXTERNAL_VERSIONS),


rule external:
    input:
        sources=lambda wildcards: [
            EXTERNAL_SETS[wildcards.ext]["path"],
            EXTERNAL_SETS[wildcards.ext]["labels"],
        ],
        code=code("external"),
    output:
        images=directory("data/external/{ext}/images"),
        manifest="data/external/{ext}/manifest.csv",
        rejects="data/external/{ext}/rejects.csv",
        report="data/external/{ext}/report.json",
    log:
        "logs/external/{ext}.log",
    conda:
        "../envs/external.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # its own set only: another set reruns no set there was
        cfg=lambda wildcards: {wildcards.ext: EXTERNAL_SETS[wildcards.ext]},
    script:
        "../scripts/external.py"


use rule align as align_external with:
    input:
        images="data/external/{ext}/images",
        manifest="data/external/{ext}/manifest.csv",
        code=code("align"),  # align.landmarks (a table of UTKFace's faces) is not used
    output:
        images=directory("data/external/{ext}/align/{shard}/images"),
        landmarks="data/external/{ext}/align/{shard}/landmarks.csv",
        rejects="data/external/{ext}/align/{shard}/rejects.csv",
        report="data/external/{ext}/align/{shard}/report.json",
    log:
        "logs/external/{ext}/align/{shard}.log",


use rule mask as mask_external with:
    input:
        images="data/external/{ext}/align/{shard}/images",
        landmarks="data/external/{ext}/align/{shard}/landmarks.csv",
        manifest="data/external/{ext}/manifest.csv",  # photos that wear a real mask: not painted
        code=code("mask"),
    output:
        images=directory("data/external/{ext}/mask/{maskset}/{shard}/images"),
        masks="data/external/{ext}/mask/{maskset}/{shard}/masks.csv",
        rejects="data/external/{ext}/mask/{maskset}/{shard}/rejects.csv",
        report="data/external/{ext}/mask/{maskset}/{shard}/report.json",
        # shown in the reports through real masks and the external set's section (no shards)
        sheet="results/external/{ext}/mask/{maskset}/{shard}/contact_sheet.png",
    log:
        "logs/external/{ext}/mask/{maskset}/{shard}.log",


# the recognizer attacker (recognize.enabled): dlib's descriptor of each version of a set's faces
# (unmasked: as aligned; each mask set's), the describe job with the identity: parameters
use rule describe as describe_external with:
    input:
        images=lambda wildcards: external_images(
            wildcards.ext, wildcards.version, [wildcards.shard]
        )[0],
        landmarks="data/external/{ext}/align/{shard}/landmarks.csv",
        manifest="data/external/{ext}/manifest.csv",  # the version's photos (worn or not)
        code=code("describe"),
    output:
        descriptors="data/external/{ext}/describe/{version}/{shard}/descriptors.csv",
        rejects="data/external/{ext}/describe/{version}/{shard}/rejects.csv",
        report="data/external/{ext}/describe/{version}/{shard}/report.json",
    log:
        "logs/external/{ext}/describe/{version}/{shard}.log",
