"""align: detect each face, find its 68 landmarks and warp it so the eyes sit at fixed places."""

from maskprivacy.stages import align
from maskprivacy.stages.entry import from_snakemake

from_snakemake(align.run, snakemake)
