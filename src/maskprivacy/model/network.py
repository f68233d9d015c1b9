"""The network: a torchvision ResNet whose last layer gives the protocol's outputs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from maskprivacy.core.labels import RACES, SEXES

N_SEX, N_RACE = len(SEXES), len(RACES)
N_MULTITASK = N_SEX + N_RACE + 1  # sex logits, race logits, normalised age
ARCHES = ("resnet18", "resnet34", "resnet50", "resnet101")


def build_model(arch: str = "resnet50", weights: str = "", n_out: int = N_MULTITASK) -> nn.Module:
    """A torchvision ResNet whose last layer (``fc``, one linear layer) gives ``n_out`` outputs:
    sex logits (2), race logits (5) and normalised age (1) for the multitask model, or one task's
    outputs for the paper's single-task models. From scratch unless ``weights`` names a file."""
    import torchvision

    if arch not in ARCHES:
        raise ValueError(f"train.arch must be one of {ARCHES}, got {arch!r}")
    model = torchvision.models.get_model(arch, weights=None)
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"train.weights: {path} does not exist. Download torchvision's ImageNet weights for "
                f"{arch} (e.g. ResNet50_Weights.IMAGENET1K_V2 from download.pytorch.org) on a machine "
                "with internet, copy the .pth file here, and point train.weights at it; or leave "
                "train.weights empty to train from scratch."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
            raise ValueError(
                f"train.weights: {path} does not fit {arch} (unexpected {unexpected[:3]}, missing {missing[:3]})"
            )
    model.fc = nn.Linear(model.fc.in_features, n_out)
    return model
