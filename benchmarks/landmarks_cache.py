"""Detect the 68 landmarks of every image once and save them (source frame) to an .npz file.

The ``align`` stage detects and warps in one go. A machine without dlib (the lent GPU machine,
for one) can still run ``align``'s warp, and everything after it, from this cache: see
``benchmarks/utkface_gpu.py``. Uses ``maskprivacy.faces.detect_landmarks``, the same call the
stage makes, with the same upsample cascade.

    python benchmarks/landmarks_cache.py ../shared/data/UTKFace.tar.gz landmarks.npz --workers 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskprivacy import download, faces
from maskprivacy.align import load_rgb

UPSAMPLE = (0, 1)


def _one(path: str) -> tuple[str, np.ndarray | None, str]:
    try:
        rgb = np.asarray(load_rgb(path))
    except Exception as exc:  # noqa: BLE001 - recorded, as the stage does
        return Path(path).name, None, f"decode_error: {exc}"
    pts, route = faces.detect_landmarks(rgb, UPSAMPLE)
    return Path(path).name, pts, route


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="folder or archive of images")
    ap.add_argument("out", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.source)
        if src.is_file():
            src = download.safe_extract(src, Path(tmp) / "x")
        files = [str(p) for p in download.list_images(src)]
        t0 = time.perf_counter()
        with mp.get_context("fork").Pool(args.workers) as pool:
            res = list(
                tqdm(pool.imap(_one, files, chunksize=32), total=len(files), desc="landmarks")
            )
        dt = time.perf_counter() - t0
    names = np.array([r[0] for r in res])
    routes = np.array([r[2] for r in res])
    lms = np.full((len(res), 68, 2), np.nan, dtype=np.float32)
    for i, r in enumerate(res):
        if r[1] is not None:
            lms[i] = r[1]
    np.savez_compressed(args.out, files=names, routes=routes, landmarks=lms)
    uniq, counts = np.unique([r.split(":")[0] for r in routes], return_counts=True)
    print(
        f"{len(files)} images in {dt:.1f} s ({len(files) / dt:.1f} img/s, {args.workers} workers)"
    )
    print(dict(zip(uniq.tolist(), counts.tolist(), strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
