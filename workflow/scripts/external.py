"""external: read an external test set (folder or archive, labels CSV) into images and a manifest."""

from maskprivacy.stages import external
from maskprivacy.stages.entry import from_snakemake

from_snakemake(external.run, snakemake)
