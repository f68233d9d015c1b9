"""identity: dlib's 128-D face descriptor of every aligned face of one shard (for the split)."""

import time

from maskprivacy.core.logs import finish, logger
from maskprivacy.faces import identity

log = logger(f"identity[{snakemake.wildcards.shard}]", snakemake.log[0])
t0 = time.perf_counter()
summary = identity.run(
    snakemake.params.cfg,
    snakemake.input.images,
    snakemake.input.landmarks,
    snakemake.output.descriptors,
    snakemake.output.rejects,
    shard=snakemake.wildcards.shard,
)
finish("identity", summary, t0, snakemake.output.report, log)
