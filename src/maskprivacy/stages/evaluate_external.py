"""The ``evaluate_external`` stage: one trained model (training set, seed) on one version
(unmasked or masked) of an external test set: per-face predictions, and metrics for the labels
the set gives (:mod:`maskprivacy.analysis.external`). Every model is scored on the same faces of
a version: the set's faces that passed both align and mask; a set with real masks' ``worn``
version, its photos that wear one (:func:`~maskprivacy.analysis.external.scored_faces`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from maskprivacy.analysis.external import headline, scored_faces, write_scores
from maskprivacy.model.predict import predict_condition
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    w = config.wildcards
    torch.set_num_threads(config.compute.threads)
    faces = scored_faces(
        inputs.manifest,
        inputs.landmarks,
        inputs.masks,
        w["ext"],
        "evaluate_external",
        w["version"],
    )
    name = f"{w['ext']}: {w['version']}, trained on {w['dataset']}"
    cfg = config.params
    preds = (
        predict_condition(
            name,
            faces,
            inputs.model,
            inputs.images,
            config.compute,
            config.compute.threads,
            tta=cfg.get("tta", "none"),
        )
        if len(faces)
        else None  # a version this set lacks: empty predictions (write_scores)
    )
    job = {
        "set": w["ext"],
        "version": w["version"],
        "train": w["dataset"],
        "seed": int(w["seed"]),
        "data_source": json.loads(Path(inputs.download_report).read_text())["source"],
    }
    metrics = write_scores(outputs, faces, preds, int(cfg["bootstrap"]), int(cfg["seed"]), job)
    log.info("%s, seed %s: %d faces", name, w["seed"], metrics["n_faces"])
    return {"set": w["ext"], "n_faces": metrics["n_faces"], **headline(metrics)}
