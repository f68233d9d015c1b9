"""compare: every condition against the baseline on the same test images and seeds; metrics, report."""

import json
import time
from pathlib import Path

from maskprivacy.analysis import compare
from maskprivacy.core.logs import finish, logger
from maskprivacy.masks.sets import by_set

log = logger("compare", snakemake.log[0])
t0 = time.perf_counter()
names = [c["name"] for c in snakemake.params.conditions]
seeds = [int(s) for s in snakemake.params.seeds]
datasets = sorted({c["train"] for c in snakemake.params.conditions})


def by_condition_and_seed(files):
    """The rule's expand() lists, condition-major and seed-minor, as {condition: {seed: file}}."""
    if len(files) != len(names) * len(seeds):  # e.g. a plan run with train.seeds --set anew
        raise ValueError(
            f"compare: {len(files)} files for {len(names)} conditions x {len(seeds)} seeds "
            f"{seeds}: the jobs were made for other train.seeds (export the plan again)"
        )
    files = iter(files)
    return {n: {s: next(files) for s in seeds} for n in names}


def by_model(files):
    """The rule's per-model lists (training set-major, seed-minor) as {"masked seed 0": file}."""
    models = [f"{d} seed {s}" for d in datasets for s in seeds]
    return dict(zip(models, files, strict=True))


download_report = json.loads(Path(snakemake.input.download_report).read_text())
metrics = compare.run(
    snakemake.params.cfg,
    snakemake.params.conditions,
    split_table=snakemake.input.split,
    predictions=by_condition_and_seed(snakemake.input.predictions),
    condition_metrics=by_condition_and_seed(snakemake.input.metrics),
    condition_plots=by_condition_and_seed(snakemake.input.plots),
    histories=by_model(snakemake.input.histories),
    reject_tables=snakemake.input.rejects,
    masks_table=by_set(snakemake.input.masks),
    n_inputs=download_report["n_inputs"],
    data_source=download_report["source"],
    all_params=snakemake.params.all,
    out_metrics=snakemake.output.metrics,
    out_statistics=snakemake.output.statistics,
    out_groups=snakemake.output.groups,
    out_rejects=snakemake.output.rejects,
    out_plots=snakemake.output.plots,
    out_report=snakemake.output.report,
    contact_sheets=list(snakemake.input.sheet),
    train_reports=by_model(snakemake.input.train_reports),
    data_report=snakemake.input.data_report,
    identity_sheet=getattr(snakemake.input, "identities", None),  # split.group_by: identity
    landmark_tables=getattr(snakemake.input, "landmarks", []),  # more than one mask set
)
finish("compare", metrics, t0, None, log)
