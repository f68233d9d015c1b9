"""download: fetch the images, verify them, handle label defects and duplicates; write the tables."""

from maskprivacy.stages import download
from maskprivacy.stages.entry import from_snakemake

from_snakemake(download.run, snakemake)
