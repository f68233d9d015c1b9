"""download: fetch the images, verify them, handle label defects and duplicates; write the tables."""

import time

from maskprivacy.core.logs import finish, logger
from maskprivacy.datasets import download

log = logger("download", snakemake.log[0])
t0 = time.perf_counter()
summary = download.run(
    snakemake.params.cfg,
    snakemake.output.images,
    snakemake.output.manifest,
    snakemake.output.rejects,
    groups_out=snakemake.output.groups,
    pairs_out=snakemake.output.pairs,
    verification_out=snakemake.output.verification,
    sheet_out=snakemake.output.sheet,
)
finish("download", summary, t0, snakemake.output.report, log)
