"""The ``evaluate_external`` stage: one trained model (training set, seed) on one version
(unmasked or masked) of an external test set: per-face predictions, and metrics for the labels
the set gives (:mod:`maskprivacy.analysis.external`). Every model and version is scored on the
same faces: the set's faces that passed both align and mask."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from maskprivacy.analysis.external import external_metrics, faces_in_every_version, headline
from maskprivacy.core.io import read_table, write_json, write_table
from maskprivacy.model.predict import predict_condition
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    w = config.wildcards
    torch.set_num_threads(config.compute.threads)
    manifest = read_table(inputs.manifest)
    versions: dict[str, list[pd.DataFrame]] = {
        "unmasked": [read_table(t) for t in inputs.landmarks]
    }
    for table in inputs.masks:  # data/external/<set>/mask/<mask set>/<shard>/masks.csv
        versions.setdefault(Path(table).parts[-3], []).append(read_table(table))
    faces = faces_in_every_version(manifest, versions)
    if faces.empty:
        raise ValueError(
            f"evaluate_external: no face of external set {w['ext']!r} passed align and every mask set"
        )
    name = f"{w['ext']}: {w['version']}, trained on {w['dataset']}"
    preds = predict_condition(
        name, faces, inputs.model, inputs.images, config.compute, config.compute.threads
    )
    cfg = config.params
    metrics = external_metrics(faces, preds, int(cfg["bootstrap"]), int(cfg["seed"]))
    data_source = json.loads(Path(inputs.download_report).read_text())["source"]
    write_table(outputs.predictions, preds)
    write_json(
        outputs.metrics,
        {
            "set": w["ext"],
            "version": w["version"],
            "train": w["dataset"],
            "seed": int(w["seed"]),
            "data_source": data_source,
            **metrics,
        },
    )
    log.info("%s, seed %s: %d faces", name, w["seed"], metrics["n_faces"])
    return {"set": w["ext"], "n_faces": metrics["n_faces"], **headline(metrics)}
