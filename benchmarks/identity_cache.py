"""Keep the identity stage's descriptors where dlib is, and replay them where dlib is not.

The ``identity`` stage (``split.group_by: identity``) needs dlib's face descriptor network; the
lent GPU machine has no dlib. This script collects the descriptors of a finished run made here
(``data/identity/*/descriptors.csv``, with the aligned landmarks of ``data/align/*/landmarks.csv``)
into one file; :func:`install` then makes the stage look each face up by its file name instead
of running dlib, after checking that its aligned landmarks (which the GPU machine reproduces
from a landmarks table, ``align.landmarks``) are within ``TOLERANCE`` pixels of the cached ones. A
face the cache lacks, or aligned elsewhere, is a reject of the stage (``descriptor_error``) and
so a ``no_identity`` reject of the split. Everything else (the tables, the split, the report)
runs as usual.

    # here, after `snakemake --configfile presets/utkface.yaml presets/identity.yaml --until split`
    python benchmarks/identity_cache.py data descriptors.npz
    # on the GPU machine (see README):
    python benchmarks/utkface_gpu.py plan.json landmarks.npz --descriptors descriptors.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from maskprivacy.core.io import read_table
from maskprivacy.faces import identity
from maskprivacy.faces.landmarks import landmarks_array

TOLERANCE = 1.0  # pixels: largest difference between the cached and the given landmarks


def build(data: str | Path) -> dict[str, np.ndarray]:
    """The npz arrays of every shard's descriptors under ``data`` (a run's ``data/`` folder)."""
    data = Path(data)
    tables = sorted((data / "identity").glob("*/descriptors.csv"))
    if not tables:
        raise FileNotFoundError(f"no {data}/identity/*/descriptors.csv: run the identity stage")
    desc = pd.concat([read_table(t) for t in tables], ignore_index=True)
    marks = pd.concat(
        [read_table(t) for t in sorted((data / "align").glob("*/landmarks.csv"))],
        ignore_index=True,
    )
    both = desc.merge(marks, on="file", how="inner", validate="one_to_one")
    return {
        "files": both["file"].to_numpy(str),
        "landmarks": landmarks_array(both).astype(np.float32),
        "descriptors": both[identity.DESCRIPTOR_COLUMNS].to_numpy(np.float32),
    }


def install(path: str | Path) -> int:
    """Make the identity stage take each face's descriptor from the cache at ``path``;
    returns the number of faces it holds."""
    z = np.load(path)
    table = {
        str(f): (m.astype(np.float64), v)
        for f, m, v in zip(z["files"], z["landmarks"], z["descriptors"], strict=True)
    }

    def describe_file(name, rgb, landmarks, cfg, model) -> np.ndarray:
        if name not in table:
            raise KeyError(f"descriptor cache {path} has no face {name}")
        cached, vec = table[name]
        gap = float(np.abs(cached - np.asarray(landmarks, dtype=np.float64)).max())
        if gap > TOLERANCE:
            raise ValueError(f"{name}: landmarks {gap:.1f} px from the cache's: aligned otherwise")
        return np.asarray(vec, dtype=np.float32)

    identity.describe_file = describe_file
    # no dlib model there either: the cache stands for it (in the stage's report and checkpoint)
    identity.model_path = lambda cfg=None: Path(path)
    return len(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path, help="a run's data/ folder (identity and align stages)")
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    arrays = build(args.data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{len(arrays['files'])} faces -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
