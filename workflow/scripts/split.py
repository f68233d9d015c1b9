"""split: one seeded, stratified, group-aware train/val/test split, and the data report."""

from maskprivacy.stages import split
from maskprivacy.stages.entry import from_snakemake

from_snakemake(split.run, snakemake)
