"""Which mask type and texture each image gets: weights from ``mask.types`` and
``mask.textures``, drawn with a generator per image (order-free, repeatable)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np

from maskprivacy.masks.geometry import MASK_TYPES


def normalise_choice(
    spec: str | Iterable[str] | Mapping[str, float], valid: tuple[str, ...], what: str
) -> dict[str, float]:
    """One name, a list of names (equally likely) or a mapping name -> weight, as weights."""
    if isinstance(spec, str):
        weights = {spec: 1.0}
    elif isinstance(spec, Mapping):
        weights = {str(k): float(v) for k, v in spec.items()}
    else:
        names = list(spec)
        if len(set(names)) != len(names):
            raise ValueError(f"{what}: names repeat in {names}")
        weights = {str(n): 1.0 for n in names}
    if not weights:
        raise ValueError(f"{what}: empty; valid: {', '.join(valid)}")
    for name, w in weights.items():
        if name not in valid:
            raise ValueError(f"{what}: unknown {name!r}; valid: {', '.join(valid)}")
        if not w > 0:
            raise ValueError(f"{what}: weight of {name!r} must be > 0, got {w}")
    return weights


def choose(weights: Mapping[str, float], rng: np.random.Generator) -> str:
    """One name drawn with the given weights (a single name is returned without drawing)."""
    names = sorted(weights)
    if len(names) == 1:
        return names[0]
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def choose_type(types: str | Iterable[str] | Mapping[str, float], rng: np.random.Generator) -> str:
    """One mask type from ``mask.types`` (a name, a list or a mapping type -> weight)."""
    return choose(normalise_choice(types, MASK_TYPES, "mask.types"), rng)


def image_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per image, from the stage seed and the file name (order-free, repeatable)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
