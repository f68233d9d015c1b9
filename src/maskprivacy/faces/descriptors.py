"""The table of face descriptors that ``identity`` writes and ``split`` reads
(``data/identity/{shard}/descriptors.csv``: file, sha256 of the aligned image, ``d0`` .. ``d127``).

Kept apart from :mod:`.identity` so that ``split`` (:mod:`.identity_groups`) reads descriptors
without importing dlib: its conda env has no dlib.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from maskprivacy.core.io import read_table

MODEL_NAME = "dlib_face_recognition_resnet_model_v1.dat"
DIM = 128
DESCRIPTOR_COLUMNS = [f"d{i}" for i in range(DIM)]


def read_descriptors(tables: Sequence[str | os.PathLike]) -> tuple[list[str], np.ndarray]:
    """File names and (N, 128) float32 descriptors of every shard's table, sorted by file."""
    frames = [read_table(t) for t in tables]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["file"])
    df = df.sort_values("file", kind="stable").reset_index(drop=True)
    if df["file"].duplicated().any():
        dup = df.loc[df["file"].duplicated(), "file"].tolist()[:5]
        raise ValueError(f"descriptors: files described in two shards: {dup}")
    x = df[DESCRIPTOR_COLUMNS].to_numpy(np.float32) if len(df) else np.zeros((0, DIM), np.float32)
    return df["file"].tolist(), x
