"""Training images as tensors: decoded once into uint8 (N, 3, size, size), augmented and normalised
on their device, per sample and seeded (random affine through ``affine_grid`` / ``grid_sample``,
horizontal flip, brightness and contrast; ImageNet statistics)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from maskprivacy.core.plumbing import no_bar
from maskprivacy.core.shards import locate

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
        return np.array(im, dtype=np.uint8)


def load_images(
    folder: str | Path | Sequence[str | Path],
    files: Sequence[str],
    size: int,
    workers: int = 4,
    progress: bool = True,
) -> torch.Tensor:
    """Decode ``files`` into a (N, 3, size, size) uint8 tensor on the host; ``folder`` is one
    image folder or a list of them (the shards'), each file in exactly one."""
    out = torch.empty((len(files), size, size, 3), dtype=torch.uint8)
    paths = locate(folder, files)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        it = pool.map(lambda p: _decode(p, size), paths, chunksize=64)
        for i, arr in enumerate(
            tqdm(it, total=len(files), desc="decode", unit="img", disable=no_bar(progress))
        ):
            out[i] = torch.from_numpy(arr)
    return out.permute(0, 3, 1, 2)


def labels_tensor(table: pd.DataFrame) -> torch.Tensor:
    """(N, 3) float tensor: sex, race, age."""
    return torch.tensor(table[["sex", "race", "age"]].to_numpy(dtype=np.float32))


class GPUAugment:
    """Per-sample seeded augmentation and normalisation of uint8 batches, on their device."""

    def __init__(self, aug: dict[str, float], size: int, device: torch.device, seed: int):
        self.aug = aug
        self.size = size
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

    def _u(self, n: int, device: torch.device, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, device=device, generator=self.gen) * (hi - lo) + lo

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        x = x.float()
        n, dev = x.shape[0], x.device
        if train:
            a = self.aug
            angle = self._u(n, dev, -1, 1) * math.radians(a.get("rotate", 0.0))
            scale = 1 + self._u(n, dev, -1, 1) * a.get("scale", 0.0)
            flip = torch.where(self._u(n, dev, 0, 1) < a.get("flip", 0.0), -1.0, 1.0)
            tx = self._u(n, dev, -1, 1) * 2 * a.get("translate", 0.0)
            ty = self._u(n, dev, -1, 1) * 2 * a.get("translate", 0.0)
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            theta = torch.stack(
                [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
            )
            grid = F.affine_grid(theta, [n, 3, self.size, self.size], align_corners=False)
            x = F.grid_sample(
                x, grid, mode="bilinear", padding_mode="reflection", align_corners=False
            )
            b = 1 + self._u(n, dev, -1, 1).view(n, 1, 1, 1) * a.get("brightness", 0.0)
            c = 1 + self._u(n, dev, -1, 1).view(n, 1, 1, 1) * a.get("contrast", 0.0)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * c + mean) * b
            x = x.clamp(0, 255)
        elif x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return (x - self.mean) / self.std
