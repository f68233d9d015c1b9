"""train: one multitask ResNet (or the paper's four single-task ones) per training set and seed.

Trains on the split's train part and validates on its val part (:mod:`maskprivacy.model.loop`),
computing as ``compute:`` says. A killed run resumes from ``checkpoint.pt`` beside ``model.pt``
when the params and inputs are the same (:mod:`maskprivacy.model.checkpoints`); ``model.pt`` is
written once, at the end, and the checkpoint removed once the model and history are written.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
import torch

from maskprivacy.core.io import read_table, write_table
from maskprivacy.core.plumbing import explain_full_disk, remove_stale
from maskprivacy.core.shards import locate
from maskprivacy.model.checkpoints import (
    checkpoint_path,
    discard_checkpoint,
    run_key,
    save_checkpoint,
)
from maskprivacy.model.config import TrainConfig
from maskprivacy.model.images import labels_tensor, load_images
from maskprivacy.model.loop import selection_summary, train_models
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    """Train the models of seed ``{seed}`` on ``{dataset}``; write model, history (and report)."""
    dataset, seed = config.wildcards["dataset"], int(config.wildcards["seed"])
    cfg = TrainConfig.from_params({**config.params, "seed": seed})  # this job's seed of train.seeds
    threads = config.compute.threads
    table = read_table(inputs.split)
    tr, va = table[table["split"] == "train"], table[table["split"] == "val"]
    if len(tr) < 2:
        raise ValueError(f"train: only {len(tr)} training image(s) in {inputs.split}")
    remove_stale(
        outputs.model
    )  # a final write cut short by a kill (the checkpoint's: train_models)
    files = pd.concat([tr, va])
    key = run_key(cfg, files, locate(inputs.images, files["file"].tolist()))
    x_tr = load_images(inputs.images, tr["file"].tolist(), cfg.image_size, threads)
    x_va = load_images(inputs.images, va["file"].tolist(), cfg.image_size, threads)
    t0 = time.perf_counter()
    result = train_models(
        cfg,
        config.compute,
        x_tr,
        labels_tensor(tr),
        x_va,
        labels_tensor(va),
        checkpoint=checkpoint_path(outputs.model),
        threads=threads,
        name=f"{dataset} seed {seed}",
        key=key,
        logger=log,
    )
    history, kept = result.history, result.kept
    with explain_full_disk("train"):
        save_checkpoint(
            result.models,
            cfg,
            max(k["epoch"] for k in kept.values()),
            outputs.model,
            extra={"select": cfg.select, "kept": kept},
        )
        write_table(outputs.history, history)
    discard_checkpoint(outputs.model, log)
    last = {("last_epoch_seconds" if k == "seconds" else k): v for k, v in history.iloc[-1].items()}
    summary = {
        "n_train": len(tr),
        "n_val": len(va),
        "fit_seconds": time.perf_counter() - t0,
        "resumed_after_epoch": result.resumed_after,
        **last,
        **selection_summary(kept, cfg.select),
    }
    if torch.cuda.is_available():
        summary["device"] = torch.cuda.get_device_name()
        summary["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return summary
