"""evaluate_external: one trained model on an external set's unmasked or masked faces."""

from maskprivacy.stages import evaluate_external
from maskprivacy.stages.entry import from_snakemake

from_snakemake(evaluate_external.run, snakemake)
