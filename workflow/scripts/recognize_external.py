"""recognize_external: the recognizer's heads (fitted by recognize) on one external test set."""

from maskprivacy.stages import recognize_external
from maskprivacy.stages.entry import from_snakemake

from_snakemake(recognize_external.run, snakemake)
