"""mask: draw a synthetic mask on every aligned face from its landmarks; a contact sheet."""

from maskprivacy.stages import mask
from maskprivacy.stages.entry import from_snakemake

from_snakemake(mask.run, snakemake)
