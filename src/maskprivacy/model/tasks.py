"""What each network learns: the protocols' tasks, their targets, losses and outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maskprivacy.core.labels import AGE_BUCKET_STARTS, AGE_BUCKETS
from maskprivacy.model.config import TrainConfig
from maskprivacy.model.network import N_MULTITASK, N_RACE, N_SEX

# The multitask model's normalised age target, and the paper's.
AGE_CENTRE, AGE_SCALE = 35.0, 20.0
PAPER_AGE_CENTRE, PAPER_AGE_SCALE = 60.0, 60.0
# protocol -> the models it trains: (task, number of outputs)
PROTOCOLS: dict[str, tuple[tuple[str, int], ...]] = {
    "multitask": (("multitask", N_MULTITASK),),
    "paper": (("sex", N_SEX), ("race", N_RACE), ("age", 1), ("age_group", len(AGE_BUCKETS))),
}


def age_group(age: torch.Tensor) -> torch.Tensor:
    """The paper's seven age groups (:data:`maskprivacy.core.labels.AGE_BUCKETS`) as class
    indices."""
    bounds = torch.tensor(AGE_BUCKET_STARTS, dtype=age.dtype, device=age.device)
    return torch.bucketize(age.contiguous(), bounds, right=True)


def task_loss(task: str, out: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Training loss of one model; ``y`` holds sex, race and age columns."""
    out = out.float()
    ls = cfg.label_smoothing
    if task == "multitask":
        return multitask_loss(out, y, cfg.loss_weights, ls)
    if task == "sex":
        return F.cross_entropy(out, y[:, 0].long(), label_smoothing=ls)
    if task == "race":
        return F.cross_entropy(out, y[:, 1].long(), label_smoothing=ls)
    if task == "age":
        target = (y[:, 2] - PAPER_AGE_CENTRE) / PAPER_AGE_SCALE
        return F.smooth_l1_loss(out[:, 0], target, beta=0.1 * AGE_SCALE / PAPER_AGE_SCALE)
    if task == "age_group":
        return F.cross_entropy(out, age_group(y[:, 2]).long(), label_smoothing=ls)
    raise ValueError(f"unknown task {task!r}")


def task_outputs(task: str, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """What one model predicts: class probabilities and/or age in years."""
    out = out.float()
    if task == "multitask":
        s, r, a = split_outputs(out)
        return {
            "sex_prob": s.softmax(1),
            "race_prob": r.softmax(1),
            "age": a * AGE_SCALE + AGE_CENTRE,
        }
    if task == "sex":
        return {"sex_prob": out.softmax(1)}
    if task == "race":
        return {"race_prob": out.softmax(1)}
    if task == "age":
        return {"age": out[:, 0] * PAPER_AGE_SCALE + PAPER_AGE_CENTRE}
    if task == "age_group":
        return {"age_group_prob": out.softmax(1)}
    raise ValueError(f"unknown task {task!r}")


def split_outputs(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out = out.float()
    return out[:, :N_SEX], out[:, N_SEX : N_SEX + N_RACE], out[:, -1]


def multitask_loss(
    out: torch.Tensor, y: torch.Tensor, weights: dict[str, float], label_smoothing: float = 0.0
) -> torch.Tensor:
    sex, race, age = split_outputs(out)
    ls = F.cross_entropy(sex, y[:, 0].long(), label_smoothing=label_smoothing)
    lr = F.cross_entropy(race, y[:, 1].long(), label_smoothing=label_smoothing)
    la = F.smooth_l1_loss(age, (y[:, 2] - AGE_CENTRE) / AGE_SCALE, beta=0.1)
    return (
        weights.get("sex", 1.0) * ls + weights.get("race", 1.0) * lr + weights.get("age", 1.0) * la
    )
