"""identity: dlib's 128-D face descriptor of every aligned face of one shard (for the split)."""

from maskprivacy.stages import identity
from maskprivacy.stages.entry import from_snakemake

from_snakemake(identity.run, snakemake)
