"""align: detect each face, find its 68 landmarks and warp it so the eyes sit at fixed places."""

import time

from maskprivacy.core.logs import finish, logger
from maskprivacy.faces import align

shard = int(snakemake.wildcards.shard)
log = logger(f"align[{shard}]", snakemake.log[0])
t0 = time.perf_counter()
summary = align.run(
    snakemake.params.cfg,
    snakemake.input.images,
    snakemake.input.manifest,
    snakemake.output.images,
    snakemake.output.landmarks,
    snakemake.output.rejects,
    threads=snakemake.threads,
    shard=shard,
    shards=int(snakemake.params.cfg.get("shards", 1)),
)
finish("align", summary, t0, snakemake.output.report, log)
