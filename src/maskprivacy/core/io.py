"""The files every stage writes and reads: tables, JSON, figures (written atomically), hashes.

Part of what a stage computes (column order, JSON layout, hashes): a change here reruns every
stage. The atomic-write machinery it uses is in :mod:`maskprivacy.core.plumbing`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.core.plumbing import atomic_path

REJECT_COLUMNS = ["file", "stage", "reason", "detail"]


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_table(path: str | os.PathLike, df: pd.DataFrame) -> None:
    """Write a CSV atomically."""
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)


def read_table(path: str | os.PathLike, **kw: Any) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kw)


def rejects_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A rejects table: one row per input that did not make it, with a reason."""
    df = pd.DataFrame(rows, columns=REJECT_COLUMNS)
    return df.sort_values("file", kind="stable").reset_index(drop=True)


def n_rejected(rejects: pd.DataFrame) -> int:
    """How many inputs the rejects tables account for: each row of ``download`` is one entry
    (names may repeat there: two entries of one name); after it a face has one name, and a face
    two stages or two mask sets rejected (the same bad face under every mask set) counts once."""
    if rejects.empty:
        return 0
    first = rejects["stage"] == "download"
    return int(first.sum() + rejects.loc[~first, "file"].nunique())


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
