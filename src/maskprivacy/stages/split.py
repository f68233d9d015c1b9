"""split: one seeded, stratified, group-aware train/val/test split, and the data report.

Only faces that every shard aligned and masked are split (:mod:`maskprivacy.datasets.split`),
each duplicate group on one side; with ``split.group_by: identity`` the groups are the identity
groups of the identity stage's descriptors merged with the duplicate groups
(:mod:`maskprivacy.datasets.identity_groups`), and the data report says how much leakage the
duplicates-only split would have had. The data report (:mod:`maskprivacy.report.data`)
accounts for every file from download to split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.core.io import read_table, write_table
from maskprivacy.core.shards import locate
from maskprivacy.datasets import identity_groups, split
from maskprivacy.masks.sets import by_set
from maskprivacy.report import data as report
from maskprivacy.report import sheets
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    """Split the faces present in every shard; write the split, its rejects and the data report."""
    cfg = dict(config.params)
    present = [  # the faces every shard aligned, and those every shard of each mask set masked
        {f for t in inputs.landmarks for f in read_table(t)["file"]},
        *(
            {f for t in tables for f in read_table(t)["file"]}
            for tables in by_set(inputs.masks).values()
        ),
    ]
    manifest = read_table(inputs.manifest)
    groups = read_table(inputs.groups)
    by_identity = cfg.get("group_by", "duplicates") == "identity"
    split_groups = groups
    if by_identity:  # identity groups (the identity stage's descriptors) merged with duplicates
        manifest, split_groups, no_identity, pairs, sweep = identity_groups.for_split(
            cfg, manifest, present, groups, inputs.descriptors, inputs.identity_rejects
        )
    upstream = [read_table(t) for t in inputs.rejects]  # download, align, every mask set
    rejected = {f for r in upstream for f in r["file"]}
    table, rejects, summary = split.run(cfg, manifest, present, split_groups, rejected)
    if by_identity:
        identity_groups.check_parts(table, cfg["fractions"], split_groups, sweep)
        rejects = pd.concat([rejects, no_identity], ignore_index=True)
    write_table(outputs.split, table)
    write_table(outputs.rejects, rejects)
    data = report.data_report(
        json.loads(Path(inputs.download_report).read_text()),
        table,
        [*upstream, rejects],
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
            sweep,
            Path(outputs.identities).name,
        )
        files = split_groups["file"].tolist()
        sheets.identity_sheet(
            split_groups,
            pairs,
            dict(zip(files, locate(list(inputs.aligned), files), strict=True)),
            data["identity"]["threshold"],
            outputs.identities,
            demo=data["source"] == "demo",
        )
        summary["identity"] = identity_groups.summary(data["identity"])
    report.write_data_report(data, outputs.data_report, outputs.data_labels)
    sheets.rejects_sheet(
        pd.concat(upstream, ignore_index=True),
        inputs.images,
        outputs.data_rejects,
        demo=data["source"] == "demo",
    )
    summary["data_report"] = {"accounting": data["accounting"], "final": data["final"]["n_images"]}
    return summary
