"""compare: every condition against the baseline on the same test images; metrics and report."""

import json
import time
from pathlib import Path

from maskprivacy import compare
from maskprivacy.stage import finish, logger

log = logger("compare", snakemake.log[0])
t0 = time.perf_counter()
names = [c["name"] for c in snakemake.params.conditions]
download_report = json.loads(Path(snakemake.input.download_report).read_text())
metrics = compare.run(
    snakemake.params.cfg,
    snakemake.params.conditions,
    split_table=snakemake.input.split,
    predictions=dict(zip(names, snakemake.input.predictions, strict=True)),
    condition_metrics=dict(zip(names, snakemake.input.metrics, strict=True)),
    condition_plots=dict(zip(names, snakemake.input.plots, strict=True)),
    histories={Path(h).parent.name: h for h in snakemake.input.histories},
    reject_tables=snakemake.input.rejects,
    masks_table=list(snakemake.input.masks),
    n_inputs=download_report["n_inputs"],
    data_source=download_report["source"],
    all_params=snakemake.params.all,
    out_metrics=snakemake.output.metrics,
    out_statistics=snakemake.output.statistics,
    out_groups=snakemake.output.groups,
    out_rejects=snakemake.output.rejects,
    out_plots=snakemake.output.plots,
    out_report=snakemake.output.report,
    contact_sheets=[snakemake.input.sheet],
    data_report=snakemake.input.data_report,
    identity_sheet=getattr(snakemake.input, "identities", None),  # split.group_by: identity
)
finish("compare", metrics, t0, None, log)
