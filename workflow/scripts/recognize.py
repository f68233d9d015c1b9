"""recognize: the recognizer attacker's heads on face descriptors, every condition and seed."""

from maskprivacy.stages import recognize
from maskprivacy.stages.entry import from_snakemake

from_snakemake(recognize.run, snakemake)
