"""train: one multitask ResNet (sex, race, age) per training set and seed, on the GPU when there is one."""

import time

from maskprivacy.core.logs import finish, logger
from maskprivacy.model import train

dataset, seed = snakemake.wildcards.dataset, int(snakemake.wildcards.seed)
log = logger(f"train[{dataset}, seed {seed}]", snakemake.log[0])
t0 = time.perf_counter()
summary = train.run(
    {**snakemake.params.cfg, "seed": seed},  # the seed of this job (one of train.seeds)
    snakemake.input.split,
    list(snakemake.input.images),
    snakemake.output.model,
    snakemake.output.history,
    threads=snakemake.threads,
    name=f"{dataset} seed {seed}",
    logger=log,
)
finish("train", {"dataset": dataset, "seed": seed, **summary}, t0, snakemake.output.report, log)
train.discard_checkpoint(snakemake.output.model, log)  # only once every output is written
