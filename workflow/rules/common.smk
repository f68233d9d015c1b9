# Helper functions shared by the rules (kept apart from the rules, as the Snakemake linter asks).
from maskprivacy_workflow.codedeps import stage_code
from maskprivacy.datasets.external import says_worn


def code(stage):
    """The package modules workflow/scripts/<stage>.py computes with, as inputs: an edit to one
    reruns the stage and what follows, under Snakemake (a newer input with a new checksum) and
    DVC (dvc.yaml lists them as deps). Result-neutral helpers (logging, progress bars, atomic
    writes, the stage entry: maskprivacy_workflow.codedeps.RESULT_NEUTRAL) are left out, so
    editing them reruns nothing."""
    return stage_code(workflow.basedir, f"workflow/scripts/{stage}.py")


def tracked_config():
    """Every params.yaml section but compute (how to compute, never what) and ladder (the
    ladder rule's own: adding a rung reruns no compare): compare reports them all, and reruns
    when any changes, under Snakemake and DVC alike."""
    return {k: v for k, v in config.items() if k not in ("compute", "ladder")}


def section_without(name, *keys):
    """A params.yaml section without ``keys``: what one job of the stage computes with (train's
    jobs take their seed from the wildcard, so adding a seed to train.seeds reruns no model that
    exists). DVC tracks the same keys, one by one."""
    return {k: v for k, v in config.get(name, {}).items() if k not in keys}


def download_inputs(wildcards):
    """The folders or archives named by download.path are inputs (reruns when they change)."""
    if config["download"]["source"] == "path":
        path = config["download"]["path"]
        return [path] if isinstance(path, str) else list(path)
    return []


def label_fixes_input(wildcards):
    """The corrections table of download.label_defects: fix (the committed one by default)."""
    return (
        config["download"].get("label_fixes")
        or "src/maskprivacy/data/utkface_label_fixes.csv"
    )


def align_landmarks_input(wildcards):
    """align.landmarks (landmarks computed elsewhere, by file sha256) is an input when set."""
    path = config["align"].get("landmarks", "")
    # one path, not a one-path list: the script reads input.landmarks as the table's path
    return path if path else []


def shard_tables(stage, name):
    """One output of ``stage`` per shard, e.g. every shard's data/align/<shard>/landmarks.csv."""
    return expand("data/{stage}/{shard}/{name}", stage=stage, shard=SHARDS, name=name)


def mask_tables(name):
    """One output of the mask stage per mask set and shard: data/mask/<set>/<shard>/<name>."""
    return expand(
        "data/mask/{maskset}/{shard}/{name}", maskset=MASK_SETS, shard=SHARDS, name=name
    )


def dataset_images(dataset):
    """The image folders (one per shard) of a data set: the faces as aligned (unmasked), or
    those of one mask set."""
    if dataset == "unmasked":
        return shard_tables("align", "images")
    return expand("data/mask/{maskset}/{shard}/images", maskset=dataset, shard=SHARDS)


def mask_set(wildcards):
    """One set of mask.sets, by name, as {name: {type: weight}}: only its own jobs rerun when
    it changes (under DVC, their params are mask.sets.<name>)."""
    return {wildcards.maskset: config["mask"]["sets"][wildcards.maskset]}


def study_inputs():
    """The mask study (more than one mask set): the landmarks of every shard, for what each mask
    type covers; none otherwise."""
    if len(MASK_SETS) < 2:
        return {}
    return dict(landmarks=shard_tables("align", "landmarks.csv"))


def condition_model(condition, seed):
    """The model a condition tests: the one trained on its training set with that seed."""
    return "results/train/{}/seed{}/model.pt".format(
        CONDITION[condition]["train"], seed
    )


def identity_inputs():
    """split.group_by: identity: the descriptors of every shard (so the identity rule runs),
    its rejects and the aligned faces (for the contact sheet); else none (the rule is not run).
    """
    if config["split"].get("group_by", "duplicates") != "identity":
        return {}
    return dict(
        descriptors=shard_tables("identity", "descriptors.csv"),
        identity_rejects=shard_tables("identity", "rejects.csv"),
        aligned=shard_tables("align", "images"),
    )


def identity_outputs():
    """split.group_by: identity: the contact sheet of identity groups near the threshold."""
    if config["split"].get("group_by", "duplicates") != "identity":
        return {}
    return dict(identities="results/data/identities.png")


# Snakemake's report (`snakemake --report report.html`): the outputs people look at carry
# report() with a caption (workflow/report/*.rst) and a category.
def reported(files, caption, category):
    """``files`` (name -> path) marked for the report with one caption and category."""
    return {
        name: report(path, caption=f"../report/{caption}", category=category)
        for name, path in files.items()
    }


def plot_category(wildcards):
    """The report category of a figure of results/compare/plots."""
    # the answer table, and every change from the baseline
    if wildcards.figure in ("verdict", "forest"):
        return "answer"
    if wildcards.figure == "masks":  # the first mask set's faces with every mask type
        return "masks"
    if wildcards.figure == "learning_curves":
        return "training"
    if wildcards.figure.startswith("study/"):
        return "mask study"
    if wildcards.figure.startswith(
        "real_masks"
    ):  # the figures, and the sentences (.html)
        return "real masks"
    return "evaluation"


def plot_subcategory(wildcards):
    if wildcards.figure == "comparison":
        return "comparison"
    if wildcards.figure.startswith("groups_"):
        return "group heat maps"
    return None


def descriptor_tables(dataset):
    """The descriptor tables (one per shard) of a data set's faces: the identity stage's for the
    unmasked faces (the ones split.group_by: identity reads: described once), the describe
    stage's for a mask set's."""
    if dataset == "unmasked":
        return shard_tables("identity", "descriptors.csv")
    return expand(
        "data/describe/{maskset}/{shard}/descriptors.csv", maskset=dataset, shard=SHARDS
    )


def recognizer_outputs(name):
    """recognize's per-condition, per-seed files (condition-major, seed-minor, as compare reads
    them): results/recognize/<condition>/seed<seed>/<name>."""
    return expand(
        "results/recognize/{condition}/seed{seed}/{name}",
        condition=CONDITIONS,
        seed=SEEDS,
        name=name,
    )


def recognizer_inputs():
    """recognize.enabled: the recognizer's predictions, metrics and rejects, for compare; else
    none (no describe or recognize job runs)."""
    if not RECOGNIZE:
        return {}
    return dict(
        recognizer_predictions=recognizer_outputs("predictions.csv"),
        recognizer_metrics=recognizer_outputs("metrics.json"),
        recognizer_rejects="results/recognize/rejects.csv",
    )


def recognizer_heads():
    """recognize.enabled: recognize keeps its fitted heads, one file per training set and seed,
    for recognize_external (the external test sets); kept with or without external sets, so
    adding one refits nothing."""
    if not RECOGNIZE:
        return {}
    return dict(heads=heads_files())


def heads_files():
    """recognize's fitted heads: results/recognize/heads/<training set>/seed<seed>.joblib."""
    return expand(
        "results/recognize/heads/{dataset}/seed{seed}.joblib",
        dataset=TRAIN_SETS,
        seed=SEEDS,
    )


def external_images(ext, version, shards):
    """An external set's image folders, one per shard, of one version: as aligned (unmasked, and
    worn: the photos that wear a real mask, never painted over) or under a mask set."""
    stage = "align" if version in ("unmasked", "worn") else f"mask/{version}"
    return expand(
        "data/external/{ext}/{stage}/{shard}/images", ext=ext, stage=stage, shard=shards
    )


def external_faces():
    """An external set's manifest and the tables of the faces every version has (align's
    landmarks, each mask set's masks): the faces evaluate_external and recognize_external score.
    """
    return dict(
        manifest="data/external/{ext}/manifest.csv",
        landmarks=expand(
            "data/external/{{ext}}/align/{shard}/landmarks.csv", shard=SHARDS
        ),
        masks=expand(
            "data/external/{{ext}}/mask/{maskset}/{shard}/masks.csv",
            maskset=MASK_SETS,
            shard=SHARDS,
        ),
    )


def external_versions(ext):
    """(EXTERNAL_WORN, EXTERNAL: external.smk) The versions of a set's faces: as aligned (unmasked), under each mask set (mask.sets),
    and, for a set with real masks, its worn photos as they are (worn)."""
    return ["unmasked", *MASK_SETS, *(["worn"] if ext in EXTERNAL_WORN else [])]


def per_set_version(pattern, **wildcards):
    """``pattern`` expanded for every set and each of its versions (set-major, then version, then
    the other wildcards as expand orders them)."""
    return [
        f
        for ext in EXTERNAL
        for f in expand(pattern, ext=ext, version=external_versions(ext), **wildcards)
    ]


def ladder_model(rung, dataset, seed):
    """A rung's model of one training set: its own (train_ladder), or the study's for a rung
    that changes no train setting (reused, not retrained)."""
    if LADDER[rung]["reused"]:
        return f"results/train/{dataset}/seed{seed}/model.pt"
    return f"results/ladder/{rung}/train/{dataset}/seed{seed}/model.pt"


def ladder_inputs():
    """ladder.rungs: each rung's predictions for compare.baseline and ladder.condition (rung-
    major, baseline first) and its train reports; the recognizer's predictions when it is a rung
    (ladder.recognizer and recognize.enabled). Reused rungs read the study's own files.
    """
    preds, reports = [], []
    for rung, r in LADDER.items():
        root = "results" if r["reused"] else f"results/ladder/{rung}"
        for condition in LADDER_CONDITIONS:
            preds.append(
                f"{root}/evaluate/{condition}/seed{LADDER_SEED}/predictions.csv"
            )
        for dataset in dict.fromkeys(CONDITION[c]["train"] for c in LADDER_CONDITIONS):
            reports.append(f"{root}/train/{dataset}/seed{LADDER_SEED}/report.json")
    out = dict(predictions=preds, train_reports=reports)
    if RECOGNIZE and config["ladder"].get("recognizer", True):
        out["recognizer_predictions"] = [
            f"results/recognize/{c}/seed{LADDER_SEED}/predictions.csv"
            for c in LADDER_CONDITIONS
        ]
    return out
