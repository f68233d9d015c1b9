# Helper functions shared by the rules (kept apart from the rules, as the Snakemake linter asks).


def download_inputs(wildcards):
    """A local folder or archive named by download.path is an input (reruns when it changes)."""
    if config["download"]["source"] == "path":
        return [config["download"]["path"]]
    return []


def dataset_images(dataset):
    """The image folder of a data set: faces as aligned, or with a synthetic mask."""
    return {"unmasked": "data/align/images", "masked": "data/mask/images"}[dataset]
