"""evaluate: one condition's model (one training seed) on its test images: predictions, metrics, plots."""

import json
import time
from pathlib import Path

from maskprivacy.core.logs import finish, logger
from maskprivacy.model import evaluate

condition, seed = snakemake.wildcards.condition, int(snakemake.wildcards.seed)
log = logger(f"evaluate[{condition}, seed {seed}]", snakemake.log[0])
t0 = time.perf_counter()
download_report = json.loads(Path(snakemake.input.download_report).read_text())
summary = evaluate.run(
    snakemake.params.cfg,
    condition,
    snakemake.params.train,
    split_table=snakemake.input.split,
    model_path=snakemake.input.model,
    images_dir=list(snakemake.input.images),
    data_source=download_report["source"],
    out_predictions=snakemake.output.predictions,
    out_metrics=snakemake.output.metrics,
    out_plots=snakemake.output.plots,
    threads=snakemake.threads,
    seed=seed,
)
finish("evaluate", {"condition": condition, "seed": seed, **summary}, t0, None, log)
