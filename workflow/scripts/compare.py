"""compare: every condition against the baseline on the same test images and seeds; metrics, report."""

from maskprivacy.stages import compare
from maskprivacy.stages.entry import from_snakemake

from_snakemake(compare.run, snakemake)
