"""Keep the identity stage's descriptors where dlib is, and replay them where dlib is not.

The ``identity`` stage (``split.group_by: identity``) needs dlib's face descriptor network; the
lent GPU machine has no dlib. This script collects the descriptors of a finished run made here
(``data/identity/*/descriptors.csv``, with the aligned landmarks of ``data/align/*/landmarks.csv``)
into one file; :func:`install` then makes ``identity.describe`` look each face up instead of
running dlib. A face is keyed by its aligned landmarks rounded to whole pixels, which is all of
the landmarks the descriptor uses (dlib takes integer points), and which the GPU machine
reproduces from ``benchmarks/landmarks_cache.py``; a face whose key is missing is matched to
the cached face with the nearest landmarks within ``TOLERANCE`` pixels, else the stage rejects
it (``descriptor_error``). Everything else (the tables, the split, the report) runs as usual.

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

from maskprivacy import identity
from maskprivacy.align import landmarks_array
from maskprivacy.io import read_table

TOLERANCE = 1.0  # pixels: largest landmark difference accepted for a face missing by key


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


def _key(landmarks: np.ndarray) -> bytes:
    return np.rint(np.asarray(landmarks, dtype=np.float64)).astype(np.int32).tobytes()


def install(path: str | Path) -> int:
    """Make ``identity.describe`` take each face's descriptor from the cache at ``path``;
    returns the number of faces it holds."""
    z = np.load(path)
    marks, vecs = z["landmarks"].astype(np.float64), z["descriptors"]
    table = {_key(m): v for m, v in zip(marks, vecs, strict=True)}
    flat = marks.reshape(len(marks), -1)

    def describe(rgb, landmarks, num_jitters=0, padding=0.25, model=None) -> np.ndarray:
        vec = table.get(_key(landmarks))
        if vec is None:
            gap = np.abs(flat - np.asarray(landmarks, dtype=np.float64).ravel()).max(axis=1)
            i = int(gap.argmin()) if len(gap) else -1
            if i < 0 or gap[i] > TOLERANCE:
                raise KeyError(f"descriptor cache {path} has no face with these landmarks")
            vec = vecs[i]
        return np.asarray(vec, dtype=np.float32)

    identity.describe = describe
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
