"""align: detect each face, find its 68 landmarks and warp it so the eyes sit at fixed places."""

import time

from maskprivacy import align
from maskprivacy.stage import finish, logger

log = logger("align", snakemake.log[0])
t0 = time.perf_counter()
summary = align.run(
    snakemake.params.cfg,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.output.images,
    snakemake.output.landmarks,
    snakemake.output.rejects,
    threads=snakemake.threads,
)
finish("align", summary, t0, snakemake.output.report, log)
