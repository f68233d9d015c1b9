"""Make a landmarks table for ``align.landmarks`` where dlib is (a CPU cluster): ``align``'s
own detection cascade, with the ``align`` params of ``--params``, run on each input image; its
68 landmarks in the input's frame (or ``no_face`` /
``landmarks_implausible`` / ``decode_error`` and why), keyed by the
sha256 of the file's bytes (see :mod:`maskprivacy.faces.landmarks`). Run it on the downloaded
images (``snakemake --until download`` first), then give the table to ``align`` where dlib is
not (a GPU node): ``align.landmarks: path/to/table.csv``.

    python -m maskprivacy.faces.find_landmarks data/download/images \\
        --manifest data/download/manifest.csv --params params.yaml --workers 16 -o landmarks.csv
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from maskprivacy.faces import align, detect, landmarks


def _detect(job: tuple[str, dict[str, Any]]) -> tuple[str, landmarks.Face]:
    path, cfg = job
    sha = landmarks.file_sha256(path)
    try:
        image = align.load_rgb(path)
    except Exception as exc:  # noqa: BLE001 - align decodes it again and rejects it the same way
        return sha, (None, "decode_error", f"{type(exc).__name__}: {exc}")
    return sha, align.find_face(image, cfg)


def make(
    files: list[str], cfg: dict[str, Any], workers: int = 1
) -> list[tuple[str, landmarks.Face]]:
    """Run ``align``'s detection cascade (params ``cfg``) on ``files``: (sha256, face) pairs."""
    detect.load_models(cfg.get("predictor") or None, cfg.get("detector", detect.DEFAULT_DETECTOR))
    jobs = [(f, cfg) for f in files]
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            return list(pool.imap(_detect, jobs, chunksize=16))
    return [_detect(j) for j in jobs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m maskprivacy.faces.find_landmarks", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("images", type=Path, help="folder of input images (e.g. data/download/images)")
    ap.add_argument("--manifest", type=Path, help="only the files of this table's `file` column")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"), help="its align: section")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    cfg = yaml.safe_load(args.params.read_text())["align"]
    if args.manifest:
        names = pd.read_csv(args.manifest, usecols=["file"])["file"].tolist()
    else:
        names = sorted(p.name for p in args.images.iterdir() if p.is_file())
    faces = make([str(args.images / n) for n in names], cfg, args.workers)
    table = landmarks.write_table(args.out, faces)
    n_face = int((~table["route"].isin(landmarks.NOT_FOUND)).sum())
    print(f"{len(names)} files -> {args.out} ({n_face} faces)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
