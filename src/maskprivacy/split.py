"""The ``split`` stage: one seeded, stratified train/val/test split shared by every condition.

Strata are sex x race x age bucket (the paper's seven groups). Within each stratum the images
are shuffled with the seed and cut by the largest-remainder method, so every split gets its
share of every stratum as closely as whole images allow; strata too small to cut are pooled
and cut together. The split is keyed by image file name, so the unmasked and masked versions
of an image always fall in the same part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PARTS = ("train", "val", "test")


def _cut(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Whole counts per part summing to n, by the largest-remainder method."""
    raw = np.array(fractions) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def stratified_split(
    table: pd.DataFrame,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    strata: tuple[str, ...] = ("sex", "race", "age_bucket"),
    min_stratum: int | None = None,
) -> pd.Series:
    """A Series (indexed like ``table``) naming each row's part: train, val or test."""
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    if min_stratum is None:
        nonzero = [f for f in fractions if f > 0]
        min_stratum = int(np.ceil(1 / min(nonzero))) if nonzero else 1
    rng = np.random.default_rng(seed)
    # Sort first so that the result does not depend on the input row order.
    ordered = table.sort_values("file", kind="stable")
    keys = ordered[list(strata)].astype(str).agg("|".join, axis=1)
    sizes = keys.map(keys.value_counts())
    keys = keys.where(sizes >= min_stratum, "__pooled__")
    part = pd.Series(index=ordered.index, dtype=object)
    for key in sorted(keys.unique()):
        idx = ordered.index[keys == key].to_numpy()
        idx = idx[rng.permutation(len(idx))]
        start = 0
        for name, count in zip(PARTS, _cut(len(idx), fractions), strict=True):
            part[idx[start : start + count]] = name
            start += count
    return part.reindex(table.index)


def run(
    cfg: dict, manifest: pd.DataFrame, present: list[set[str]]
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Split the images that every condition has; the others go to rejects.

    ``present`` holds, per condition, the set of file names that made it through its stages.
    """
    from .io import rejects_frame

    common = set.intersection(*present) if present else set(manifest["file"])
    keep = manifest[manifest["file"].isin(common)].copy()
    keep["split"] = stratified_split(keep, tuple(cfg["fractions"]), int(cfg["seed"]))
    union = set.union(*present) if present else set()
    missing = sorted(union - common)
    rejects = rejects_frame(
        [
            {
                "file": f,
                "stage": "split",
                "reason": "not_in_every_condition",
                "detail": "missing from at least one condition, so it cannot be paired",
            }
            for f in missing
        ]
    )
    cols = ["file", "age", "sex", "race", "age_bucket", "split"]
    out = keep[cols].sort_values("file", kind="stable").reset_index(drop=True)
    summary = {
        "n_images": len(out),
        "counts": out["split"].value_counts().reindex(PARTS, fill_value=0).to_dict(),
        "n_rejects": len(rejects),
    }
    return out, rejects, summary
