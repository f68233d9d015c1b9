"""split: one seeded, stratified, group-aware train/val/test split, and the data report."""

import json
import time
from pathlib import Path

import pandas as pd

from maskprivacy.core.io import read_table, write_table
from maskprivacy.core.logs import finish, logger
from maskprivacy.datasets import identity_groups, split
from maskprivacy.masks.sets import by_set
from maskprivacy.report import data as report

log = logger("split", snakemake.log[0])
t0 = time.perf_counter()
cfg = snakemake.params.cfg
present = [  # the faces every shard aligned, and those every shard of each mask set masked
    {f for t in snakemake.input.landmarks for f in read_table(t)["file"]},
    *(
        {f for t in tables for f in read_table(t)["file"]}
        for tables in by_set(snakemake.input.masks).values()
    ),
]
manifest = read_table(snakemake.input.manifest)
groups = read_table(snakemake.input.groups)
by_identity = cfg.get("group_by", "duplicates") == "identity"
split_groups = groups
if by_identity:  # identity groups (the identity stage's descriptors) merged with duplicates
    manifest, split_groups, no_identity, pairs, sweep = identity_groups.for_split(
        cfg,
        manifest,
        present,
        groups,
        snakemake.input.descriptors,
        snakemake.input.identity_rejects,
    )
table, rejects, summary = split.run(cfg, manifest, present, split_groups)
if by_identity:
    identity_groups.check_parts(table, cfg["fractions"], split_groups, sweep)
    rejects = pd.concat([rejects, no_identity], ignore_index=True)
write_table(snakemake.output.split, table)
write_table(snakemake.output.rejects, rejects)
data = report.data_report(
    json.loads(Path(snakemake.input.download_report).read_text()),
    table,
    [read_table(t) for t in snakemake.input.rejects] + [rejects],
    groups,
    split_summary=summary,
)
data["identity"] = {"group_by": "duplicates", "descriptors": "not computed"}
if by_identity:
    data["identity"] = identity_groups.report(
        cfg,
        split_groups,
        table,
        split.run(cfg, manifest, present, groups)[0],  # the duplicates-only split, for leakage
        no_identity,
        pairs,
        sweep,
        snakemake.input.aligned,
        snakemake.output.identities,
        demo=data["source"] == "demo",
    )
    summary["identity"] = identity_groups.summary(data["identity"])
report.write_data_report(data, snakemake.output.data_report, snakemake.output.data_labels)
summary["data_report"] = {"accounting": data["accounting"], "final": data["final"]["n_images"]}
finish("split", summary, t0, snakemake.output.report, log)
