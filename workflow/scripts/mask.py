"""mask: draw a synthetic mask on every aligned face from its landmarks; a contact sheet."""

import time

from maskprivacy.core.logs import finish, logger
from maskprivacy.masks import draw as masks

wc = snakemake.wildcards
log = logger(f"mask[{wc.maskset}, {wc.shard}]", snakemake.log[0])
t0 = time.perf_counter()
summary = masks.run(
    {**snakemake.params.cfg, "types": snakemake.params.maskset[wc.maskset]},
    snakemake.input.images,
    snakemake.input.landmarks,
    snakemake.output.images,
    snakemake.output.masks,
    snakemake.output.rejects,
    threads=snakemake.threads,
    contact_sheet_out=snakemake.output.sheet,
)
finish(
    "mask", {"maskset": wc.maskset, "shard": wc.shard, **summary}, t0, snakemake.output.report, log
)
