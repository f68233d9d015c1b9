"""Inference: the outputs of one multitask model or of the paper's single-task models, and the
per-image prediction table of a model file on test images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from maskprivacy.analysis.metrics import accuracy, mae
from maskprivacy.core.compute import Compute
from maskprivacy.core.labels import AGE_BUCKET_STARTS
from maskprivacy.model.checkpoints import load_checkpoint
from maskprivacy.model.config import TrainConfig, autocast, resolve_device
from maskprivacy.model.images import GPUAugment, load_images
from maskprivacy.model.network import N_RACE, N_SEX
from maskprivacy.model.tasks import task_loss, task_outputs

# evaluate.tta: the test-time augmentations predict knows
TTA = ("none", "flip")


@torch.no_grad()
def predict(
    models: nn.Module | dict[str, nn.Module],
    images: torch.Tensor,
    augment: GPUAugment,
    device: torch.device,
    batch_size: int = 512,
    precision: str = "auto",
    labels: torch.Tensor | None = None,
    cfg: TrainConfig | None = None,
    tta: str = "none",
) -> dict[str, np.ndarray]:
    """Predictions of one multitask model or of several single-task models (keyed by task) for
    uint8 images: ``sex_prob``, ``race_prob``, ``age`` (years), and ``age_group_prob`` when an
    age-group model is there. With ``labels`` (and ``cfg``), also ``loss``: the summed loss.

    ``tta`` (test-time augmentation, ``evaluate.tta``): ``none``, or ``flip``: each output is the
    mean of the model's outputs on the face and on its mirror image (probabilities and age), as
    the training's random flips make both equally likely to the model."""
    if tta not in TTA:
        raise ValueError(f"predict: tta must be one of {', '.join(TTA)}, not {tta!r}")
    if isinstance(models, nn.Module):
        models = {"multitask": models}
    for m in models.values():
        m.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    loss = torch.zeros((), device=device)
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device, non_blocking=True)
        x = augment(x, train=False).contiguous(memory_format=torch.channels_last)
        for task, model in models.items():
            with autocast(device, precision):
                out = model(x)
            outputs = task_outputs(task, out)
            if tta == "flip":
                with autocast(device, precision):
                    mirrored = task_outputs(task, model(x.flip(3)))
                outputs = {k: (v + mirrored[k]) / 2 for k, v in outputs.items()}
            for k, v in outputs.items():
                parts.setdefault(k, []).append(v)
            if labels is not None:
                y = labels[i : i + batch_size].to(device)
                loss += task_loss(task, out, y, cfg or TrainConfig()) * len(x)
    result = {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}
    if len(images) == 0:
        result = {
            "sex_prob": np.zeros((0, N_SEX)),
            "race_prob": np.zeros((0, N_RACE)),
            "age": np.zeros(0),
        }
    if labels is not None:
        result["loss"] = np.array(float(loss) / max(1, len(images)))
    return result


def prediction_metrics(pred: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    """The validation metrics of :func:`predict`'s outputs against labels ``y`` (sex, race, age
    columns): ``sex_acc``, ``race_acc``, ``age_mae`` and, with an age-group model, ``age_group_acc``."""
    out = {
        "sex_acc": accuracy(y[:, 0], pred["sex_prob"].argmax(1)),
        "race_acc": accuracy(y[:, 1], pred["race_prob"].argmax(1)),
        "age_mae": mae(y[:, 2], pred["age"]),
    }
    if "age_group_prob" in pred:
        groups = np.searchsorted(AGE_BUCKET_STARTS, y[:, 2], side="right")
        out["age_group_acc"] = accuracy(groups, pred["age_group_prob"].argmax(1))
    return out


def predict_condition(
    condition: str,
    test: pd.DataFrame,
    model_path: str | Path,
    images_dir: str | Path | list[str | Path],
    compute: Compute,
    threads: int = 1,
    progress: bool = True,
    tta: str = "none",
) -> pd.DataFrame:
    """Per-image predictions of the model file's model(s) on the ``test`` rows' images: the
    predicted classes and age, and the class probabilities (so that compare can average the
    seeds' models, the ensemble); ``tta`` as :func:`predict`'s."""
    device = resolve_device(compute.device)
    models, payload = load_checkpoint(model_path, device)
    size = int(payload["image_size"])
    images = load_images(images_dir, test["file"].tolist(), size, threads, progress)
    p = predict(
        models,
        images,
        GPUAugment({}, size, device, 0),
        device,
        compute.eval_batch_size,
        compute.precision,
        tta=tta,
    )
    df = pd.DataFrame(
        {
            "file": test["file"],
            "condition": condition,
            "sex_pred": p["sex_prob"].argmax(1),
            "race_pred": p["race_prob"].argmax(1),
            "age_pred": p["age"],
            "sex_prob_female": p["sex_prob"][:, 1],
        }
    )
    for k in range(p["race_prob"].shape[1]):
        df[f"race_prob_{k}"] = p["race_prob"][:, k]
    if "age_group_prob" in p:  # the paper protocol's 7-class age model
        df["age_group_pred"] = p["age_group_prob"].argmax(1)
        for k in range(p["age_group_prob"].shape[1]):
            df[f"age_group_prob_{k}"] = p["age_group_prob"][:, k]
    return df
