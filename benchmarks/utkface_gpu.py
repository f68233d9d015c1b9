"""Run the pipeline's stages on real UTKFace in one process, for a machine without dlib/Snakemake.

The lent GPU machine has PyTorch but neither dlib nor Snakemake. This driver calls the same
package functions the workflow scripts call (download -> align -> mask -> split -> train ->
evaluate), in the same order and with the same outputs under ``--workdir``; the one difference
is that ``align`` takes each face's 68 landmarks from a cache made by
``benchmarks/landmarks_cache.py`` (same detector call, run where dlib is) instead of calling
dlib itself. Timings of every stage are printed and written to ``timings.json``.

    python benchmarks/utkface_gpu.py UTKFace.tar.gz landmarks.npz --workdir /tmp/run \\
        --params presets/utkface.yaml
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml

from maskprivacy import align, download, evaluate, faces, masks, split, train
from maskprivacy.io import read_table, write_json, write_table


def use_landmark_cache(path: Path) -> dict:
    """Replace dlib detection by a lookup in the cache (by file name)."""
    z = np.load(path)
    table = {
        str(f): (lm.astype(np.float64), str(r))
        for f, lm, r in zip(z["files"], z["landmarks"], z["routes"], strict=True)
    }

    orig_align_one = align.align_one

    def align_one(path_, cfg):
        name = Path(path_).name
        lm, route = table.get(name, (None, "no_face"))
        if route.startswith("decode_error") or lm is None or not np.isfinite(lm).all():
            faces_detect = lambda *a, **k: (None, "no_face")  # noqa: E731
        else:
            faces_detect = lambda *a, **k: (lm, route)  # noqa: E731
        faces.detect_landmarks = faces_detect
        return orig_align_one(path_, cfg)

    align.align_one = align_one
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="UTKFace archive or folder")
    ap.add_argument("landmarks", type=Path)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("presets/utkface.yaml"))
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--set", action="append", default=[], help="override: train.epochs=2")
    args = ap.parse_args(argv)
    p = yaml.safe_load(args.params.read_text())
    for item in args.set:
        key, value = item.split("=", 1)
        sec, name = key.split(".", 1)
        p[sec][name] = yaml.safe_load(value)
    p["download"].update(source="path", path=str(Path(args.source).resolve()))
    w = args.workdir
    d = lambda *parts: w.joinpath(*parts)  # noqa: E731
    timings: dict[str, float] = {}

    def stage(name, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        print(f"[{name}] {timings[name]} s: {json.dumps(out, default=str)[:600]}", flush=True)
        write_json(d("reports", f"{name}.json"), {"seconds": timings[name], **(out or {})})
        return out

    dl = stage(
        "download",
        lambda: download.run(
            p["download"],
            d("data/download/images"),
            d("data/download/manifest.csv"),
            d("data/download/rejects.csv"),
            progress=False,
        ),
    )
    use_landmark_cache(args.landmarks)
    stage(
        "align",
        lambda: align.run(
            p["align"],
            d("data/download/images"),
            d("data/download/manifest.csv"),
            d("data/align/images"),
            d("data/align/landmarks.csv"),
            d("data/align/rejects.csv"),
            threads=args.threads,
            progress=False,
        ),
    )
    stage(
        "mask",
        lambda: masks.run(
            p["mask"],
            d("data/align/images"),
            d("data/align/landmarks.csv"),
            d("data/mask/images"),
            d("data/mask/masks.csv"),
            d("data/mask/rejects.csv"),
            threads=args.threads,
            progress=False,
        ),
    )

    def do_split():
        present = [
            set(read_table(d("data/align/landmarks.csv"))["file"]),
            set(read_table(d("data/mask/masks.csv"))["file"]),
        ]
        table, rejects, summary = split.run(
            p["split"], read_table(d("data/download/manifest.csv")), present
        )
        write_table(d("data/split/split.csv"), table)
        write_table(d("data/split/rejects.csv"), rejects)
        return summary

    stage("split", do_split)
    images = {"unmasked": d("data/align/images"), "masked": d("data/mask/images")}
    sets = sorted({c["train"] for c in p["evaluate"]["conditions"]})
    for ds in sets:
        stage(
            f"train_{ds}",
            lambda ds=ds: train.run(
                p["train"],
                d("data/split/split.csv"),
                images[ds],
                d("results/train", ds, "model.pt"),
                d("results/train", ds, "history.csv"),
                threads=args.threads,
                progress=False,
                name=ds,
            ),
        )
    stage(
        "evaluate",
        lambda: evaluate.run(
            p["evaluate"],
            p["train"],
            d("data/split/split.csv"),
            models={s: d("results/train", s, "model.pt") for s in sets},
            histories={s: d("results/train", s, "history.csv") for s in sets},
            images=images,
            reject_tables=[
                d(f"data/{s}/rejects.csv") for s in ("download", "align", "mask", "split")
            ],
            n_inputs=dl["n_inputs"],
            data_source="utkface",
            out_metrics=d("results/metrics.json"),
            out_statistics=d("results/evaluate/statistics.json"),
            out_predictions=d("results/evaluate/predictions.csv"),
            out_rejects=d("results/evaluate/rejects.csv"),
            out_plots=d("results/evaluate/plots"),
            threads=args.threads,
            progress=False,
        ),
    )
    write_json(d("timings.json"), timings)
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
