"""mask: draw a synthetic mask on every aligned face from its landmarks; a contact sheet."""

import time

from maskprivacy.core.logs import finish, logger
from maskprivacy.masks import draw as masks

log = logger(f"mask[{snakemake.wildcards.shard}]", snakemake.log[0])
t0 = time.perf_counter()
summary = masks.run(
    snakemake.params.cfg,
    snakemake.input.images,
    snakemake.input.landmarks,
    snakemake.output.images,
    snakemake.output.masks,
    snakemake.output.rejects,
    threads=snakemake.threads,
    contact_sheet_out=snakemake.output.sheet,
)
finish("mask", {"shard": snakemake.wildcards.shard, **summary}, t0, snakemake.output.report, log)
