"""describe: dlib's 128-D face descriptor of every masked face of one mask set and shard."""

from maskprivacy.stages import describe
from maskprivacy.stages.entry import from_snakemake

from_snakemake(describe.run, snakemake)
