"""split: one seeded, stratified, group-aware train/val/test split, and the data report."""

import json
import time
from pathlib import Path

from maskprivacy import report, split
from maskprivacy.io import read_table, write_table
from maskprivacy.stage import finish, logger

log = logger("split", snakemake.log[0])
t0 = time.perf_counter()
present = [  # the faces every shard aligned, and masked
    {f for t in snakemake.input.landmarks for f in read_table(t)["file"]},
    {f for t in snakemake.input.masks for f in read_table(t)["file"]},
]
groups = read_table(snakemake.input.groups)
table, rejects, summary = split.run(
    snakemake.params.cfg, read_table(snakemake.input.manifest), present, groups
)
write_table(snakemake.output.split, table)
write_table(snakemake.output.rejects, rejects)
data = report.data_report(
    json.loads(Path(snakemake.input.download_report).read_text()),
    table,
    [read_table(t) for t in snakemake.input.rejects] + [rejects],
    groups,
    split_summary=summary,
)
report.write_data_report(data, snakemake.output.data_report, snakemake.output.data_labels)
summary["data_report"] = {"accounting": data["accounting"], "final": data["final"]["n_images"]}
finish("split", summary, t0, snakemake.output.report, log)
