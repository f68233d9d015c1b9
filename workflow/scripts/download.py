"""download: fetch (or generate, for the demo) the images and write the manifest and rejects."""

import time

from maskprivacy import download
from maskprivacy.stage import finish, logger

log = logger("download", snakemake.log[0])
t0 = time.perf_counter()
summary = download.run(
    snakemake.params.cfg,
    snakemake.output.images,
    snakemake.output.manifest,
    snakemake.output.rejects,
)
finish("download", summary, t0, snakemake.output.report, log)
