"""evaluate: one condition's model (one training seed) on its test images: predictions, metrics, plots."""

from maskprivacy.stages import evaluate
from maskprivacy.stages.entry import from_snakemake

from_snakemake(evaluate.run, snakemake)
