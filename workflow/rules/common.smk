# Helper functions shared by the rules (kept apart from the rules, as the Snakemake linter asks).


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


def shard_tables(stage, name):
    """One output of ``stage`` per shard, e.g. every shard's data/align/<shard>/landmarks.csv."""
    return expand("data/{stage}/{shard}/{name}", stage=stage, shard=SHARDS, name=name)


def dataset_images(dataset):
    """The image folders (one per shard) of a data set: faces as aligned, or masked."""
    return shard_tables({"unmasked": "align", "masked": "mask"}[dataset], "images")


def condition_model(condition, seed):
    """The model a condition tests: the one trained on its training set with that seed."""
    return "results/train/{}/seed{}/model.pt".format(
        CONDITION[condition]["train"], seed
    )
