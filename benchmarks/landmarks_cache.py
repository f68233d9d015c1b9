"""Find every image's face once where dlib is, and replay it where dlib is not.

The ``align`` stage detects, finds the 68 landmarks and warps in one go. The lent GPU machine has
no dlib, so this script runs the stage's own detection (:func:`maskprivacy.faces.align.find_face`, with
the ``align`` params of ``--params``: the same cascade, routes and reasons) on every image of an
archive or folder and saves the result per file, keyed by the sha1 of the file's bytes (so renamed
files still match). :func:`install` then makes ``align`` take its faces from the cache instead of
dlib; the warp, the tables and everything after run as usual (see ``benchmarks/utkface_gpu.py``).

    python benchmarks/landmarks_cache.py ../shared/data/UTKFace.tar.gz landmarks.npz \\
        --params presets/utkface.yaml --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from maskprivacy.core.plumbing import no_bar
from maskprivacy.datasets import download
from maskprivacy.faces import align
from maskprivacy.faces import detect as faces


def _sha1(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _one(job: tuple[str, dict[str, Any]]) -> tuple[str, str, np.ndarray | None, str, str]:
    path, cfg = job
    key, name = _sha1(path), Path(path).name
    try:
        image = align.load_rgb(path)
    except Exception as exc:  # noqa: BLE001 - the stage rejects it the same way
        return key, name, None, "decode_error", f"{type(exc).__name__}: {exc}"
    return key, name, *align.find_face(image, cfg)


def build(files: list[str], cfg: dict[str, Any], workers: int = 1, progress: bool = True):
    """Detect the faces of ``files`` with the ``align`` params ``cfg``; returns the npz arrays."""
    faces.models(cfg.get("predictor") or None)  # once, before forking
    jobs = [(f, cfg) for f in files]
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            res = list(
                tqdm(pool.imap(_one, jobs, chunksize=32), total=len(jobs), disable=no_bar(progress))
            )
    else:
        res = [_one(j) for j in tqdm(jobs, disable=no_bar(progress))]
    lms = np.full((len(res), 68, 2), np.nan, dtype=np.float32)
    for i, r in enumerate(res):
        if r[2] is not None:
            lms[i] = r[2]
    return {
        "sha1": np.array([r[0] for r in res]),
        "files": np.array([r[1] for r in res]),
        "routes": np.array([r[3] for r in res]),
        "details": np.array([r[4] for r in res]),
        "landmarks": lms,
    }


def install(path: str | Path) -> dict[str, tuple[np.ndarray | None, str, str]]:
    """Make ``align`` take each file's face from the cache at ``path`` instead of dlib.

    A file the cache does not hold stops the stage with an error naming it: the cache was made
    from other files.
    """
    z = np.load(path)
    table = {
        str(h): (None if route in ("no_face", "decode_error") else lm.astype(np.float64), route, d)
        for h, lm, route, d in zip(
            z["sha1"],
            z["landmarks"],
            z["routes"].astype(str),
            z["details"].astype(str),
            strict=True,
        )
    }
    original = align.align_one

    def align_one(file: Path, cfg: dict[str, Any]) -> dict[str, Any]:
        key = _sha1(file) if Path(file).is_file() else ""
        if key and key not in table:
            raise KeyError(f"landmarks cache {path} has no entry for {file} (sha1 {key})")
        pts, route, detail = table.get(key, (None, "no_face", "not in the cache"))
        align.find_face = lambda image, cfg: (pts, route, detail)
        return original(file, cfg)

    align.align_one = align_one
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="folder or archive of images")
    ap.add_argument("out", type=Path)
    ap.add_argument("--params", type=Path, default=Path("presets/utkface.yaml"))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    cfg = yaml.safe_load(args.params.read_text())["align"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.source)
        if src.is_file():
            src = download.safe_extract(src, Path(tmp) / "x")
        files = [str(p) for p in download.list_images(src)]
        t0 = time.perf_counter()
        arrays = build(files, cfg, args.workers)
        dt = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(
        f"{len(files)} images in {dt:.1f} s ({len(files) / dt:.1f} img/s, {args.workers} workers)"
    )
    print(dict(sorted(Counter(arrays["routes"].tolist()).items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
