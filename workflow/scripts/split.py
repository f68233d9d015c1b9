"""split: one seeded, stratified train/val/test split, shared by every condition."""

import time

from maskprivacy import split
from maskprivacy.io import read_table, write_table
from maskprivacy.stage import finish, logger

log = logger("split", snakemake.log[0])
t0 = time.perf_counter()
present = [
    set(read_table(snakemake.input.landmarks)["file"]),
    set(read_table(snakemake.input.masks)["file"]),
]
table, rejects, summary = split.run(
    snakemake.params.cfg, read_table(snakemake.input.manifest), present
)
write_table(snakemake.output.split, table)
write_table(snakemake.output.rejects, rejects)
finish("split", summary, t0, snakemake.output.report, log)
