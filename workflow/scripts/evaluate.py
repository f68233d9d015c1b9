"""evaluate: score every condition on the shared test images and compare them, paired."""

import json
import time
from pathlib import Path

from maskprivacy import evaluate
from maskprivacy.stage import finish, logger

log = logger("evaluate", snakemake.log[0])
t0 = time.perf_counter()
datasets = [Path(m).parent.name for m in snakemake.input.models]
download_report = json.loads(Path(snakemake.input.download_report).read_text())
metrics = evaluate.run(
    snakemake.params.cfg,
    snakemake.params.train,
    split_table=snakemake.input.split,
    models=dict(zip(datasets, snakemake.input.models, strict=True)),
    histories=dict(zip(datasets, snakemake.input.histories, strict=True)),
    images=snakemake.params.images,
    reject_tables=snakemake.input.rejects,
    n_inputs=download_report["n_inputs"],
    data_source=download_report["source"],
    out_metrics=snakemake.output.metrics,
    out_statistics=snakemake.output.statistics,
    out_predictions=snakemake.output.predictions,
    out_rejects=snakemake.output.rejects,
    out_plots=snakemake.output.plots,
    out_groups=snakemake.output.groups,
    out_report=snakemake.output.report,
    all_params=snakemake.params.all,
    threads=snakemake.threads,
)
finish("evaluate", metrics, t0, None, log)
