"""evaluate: one condition's model (one training seed) on its test images: predictions, metrics, plots.

A condition is a model trained on one data set, tested on the test part of another; every
condition is scored on the same test images of the shared split, so compare can pair them. The
predictions come from :mod:`maskprivacy.model.predict` (computing as ``compute:`` says), the
metrics with seeded bootstrap intervals from :mod:`maskprivacy.analysis.conditions`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from maskprivacy.analysis.conditions import condition_metrics, headline, test_part
from maskprivacy.core.io import write_json, write_table
from maskprivacy.core.labels import AGE_BUCKETS, RACES, SEXES
from maskprivacy.core.plumbing import atomic_dir
from maskprivacy.model.predict import predict_condition
from maskprivacy.report import plots
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    """Evaluate condition ``{condition}`` of ``evaluate.conditions`` with the model of training
    seed ``{seed}``; write predictions, metrics, plots."""
    cfg = config.params
    condition, seed = config.wildcards["condition"], int(config.wildcards["seed"])
    threads = config.compute.threads
    torch.set_num_threads(threads)
    cond = config.extra["condition"]  # this job's entry of evaluate.conditions
    if cond["name"] != condition:
        raise ValueError(f"evaluate: job {condition!r} was given condition {cond['name']!r}")
    data_source = json.loads(Path(inputs.download_report).read_text())["source"]
    demo = data_source == "demo"
    test = test_part(inputs.split)
    preds = predict_condition(
        condition,
        test,
        inputs.model,
        inputs.images,
        config.compute,
        threads,
        tta=cfg.get("tta", "none"),
    )
    full = condition_metrics(test, preds, int(cfg["bootstrap"]), int(cfg["seed"]))
    tag = f"{condition}_seed{seed}"
    with atomic_dir(outputs.plots) as tmp:
        for attr, names in (
            ("sex", SEXES),
            ("race", RACES),
            ("age_group", [b[0] for b in AGE_BUCKETS]),
        ):
            if attr in full:
                plots.confusion_matrix_png(
                    full[attr]["confusion"],
                    list(names),
                    f"{attr}: {condition}, seed {seed}",
                    tmp / f"confusion_{attr}_{tag}.png",
                    demo=demo,
                )
        plots.age_scatter_png(
            test["age"].to_numpy(float),
            preds["age_pred"].to_numpy(float),
            f"age: {condition}, seed {seed}",
            tmp / f"age_{tag}.png",
            demo=demo,
        )
    write_table(outputs.predictions, preds)
    write_json(
        outputs.metrics, {"condition": cond, "seed": seed, "data_source": data_source, **full}
    )
    return headline(full)
