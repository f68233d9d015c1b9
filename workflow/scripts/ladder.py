"""ladder: the mask's cost for attackers of growing strength, against each one's unmasked score."""

from maskprivacy.stages import ladder
from maskprivacy.stages.entry import from_snakemake

from_snakemake(ladder.run, snakemake)
