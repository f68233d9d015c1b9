"""train: one multitask ResNet (sex, race, age) per training set, on the GPU when there is one."""

import time

from maskprivacy import train
from maskprivacy.stage import finish, logger

dataset = snakemake.wildcards.dataset
log = logger(f"train[{dataset}]", snakemake.log[0])
t0 = time.perf_counter()
summary = train.run(
    snakemake.params.cfg,
    snakemake.input.split,
    list(snakemake.input.images),
    snakemake.output.model,
    snakemake.output.history,
    threads=snakemake.threads,
    name=dataset,
    logger=log,
)
finish("train", {"dataset": dataset, **summary}, t0, snakemake.output.report, log)
train.discard_checkpoint(snakemake.output.model, log)  # only once every output is written
