"""How many photos of a set with real masks `align` finds, and at what cost per photo.

Reads an external set as the ``external`` stage does (a folder or archive and its labels file,
with ``set_labels``), then aligns every kept photo with the params an external set's jobs get
(:func:`maskprivacy.stages.align.external_params`), worn-mask photos with their upper-face
checks, in one process (the CNN in its helper). Prints the share aligned, worn and not, the
routes, every reject with its reason, and CPU seconds per photo (this process and the CNN's
helper: wall time on a shared machine says how busy the others were).

    python benchmarks/real_masks_align.py ../shared/data/halfface.tar.gz halfface/labels.csv \\
        --set-label race=Indian --params presets/cpu.yaml
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml
from PIL import Image

from maskprivacy.datasets import external
from maskprivacy.datasets.worn import worn_files
from maskprivacy.faces import align, cnn, detect
from maskprivacy.stages.align import external_params


def paired_cost(small: list[Path], big: list[Path], cfg: dict, worn, scale: int) -> int:
    """Each photo aligned at 1x then at ``scale``x, in turn (the machine's speed swings): CPU
    seconds per photo of each, their ratio, and whether the same faces were found."""
    detect.load_models(cfg.get("predictor") or None, cfg.get("detector", "cascade+cnn"))
    cost = {1: 0.0, scale: 0.0}
    same = 0
    for a, b in zip(small, big, strict=True):
        found = {}
        for k, path in ((1, a), (scale, b)):
            t = cnn.cpu_seconds()
            res = align.align_one(path, cfg, worn=path.name in worn)
            cost[k] += cnn.cpu_seconds() - t
            found[k] = res["ok"]
        same += found[1] == found[scale]
    n = len(small)
    print(
        json.dumps(
            {
                "photos": n,
                "cpu_s_per_photo": {f"{k}x": round(v / n, 3) for k, v in cost.items()},
                "ratio": round(cost[scale] / max(cost[1], 1e-9), 2),
                "same_outcome": f"{same} of {n}",
            },
            indent=1,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="the set: a folder or an archive")
    ap.add_argument("labels", help="its labels file (a path inside an archive is extracted)")
    ap.add_argument("--params", default="params.yaml", help="params file whose align: is used")
    ap.add_argument("--set-label", action="append", default=[], help="label=value for every photo")
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    ap.add_argument("--json", help="write the figures here too")
    ap.add_argument(
        "--scale",
        type=int,
        default=1,
        help="enlarge every photo this many times first (halfFace's originals: up to 4x): the "
        "cost per photo of any size, against --scale 1 in the same run (--paired)",
    )
    ap.add_argument(
        "--paired",
        action="store_true",
        help="with --scale: align each photo at 1x and at --scale in turn, and print the ratio "
        "of their CPU seconds",
    )
    args = ap.parse_args(argv)
    params = yaml.safe_load(Path("params.yaml").read_text())
    if args.params != "params.yaml":
        params["align"].update(yaml.safe_load(Path(args.params).read_text()).get("align", {}))
    cfg, _ = external_params({**params["align"], "prealigned": True})
    with tempfile.TemporaryDirectory() as work:
        labels = Path(args.labels)
        if not labels.is_file():
            with tarfile.open(args.source) as tf:
                tf.extract(args.labels, work, filter="data")
            labels = Path(work) / args.labels
        set_labels = dict(kv.split("=", 1) for kv in args.set_label)
        lmap = external.label_map({"set_labels": set_labels})
        manifest, rejects, _ = external.ingest(args.source, labels, Path(work) / "images", lmap)
        if args.limit:
            manifest = manifest.head(args.limit)
        worn = worn_files(manifest)
        paths = [Path(work) / "images" / f for f in manifest["file"]]
        if args.scale > 1:
            big = Path(work) / "big"
            big.mkdir()
            for path in paths:
                with Image.open(path) as im:
                    im.resize((im.width * args.scale, im.height * args.scale)).save(
                        big / path.name, quality=95
                    )
            if args.paired:
                return paired_cost(paths, [big / p.name for p in paths], cfg, worn, args.scale)
            paths = [big / p.name for p in paths]
        wall, cpu = time.perf_counter(), cnn.cpu_seconds()
        out = Path(work) / "aligned"
        out.mkdir()
        rows = align.align_files(paths, out, cfg, threads=1, worn=worn)
        wall, cpu = time.perf_counter() - wall, cnn.cpu_seconds() - cpu
    ok = [r for r in rows if r["ok"]]
    kind = {r["file"]: ("worn" if r["file"] in worn else "not worn") for r in rows}
    found = collections.Counter(kind[r["file"]] for r in ok)
    total = collections.Counter(kind.values())
    figures = {
        "photos": len(rows),
        "aligned": len(ok),
        "aligned_fraction": round(len(ok) / len(rows), 4) if rows else None,
        "by_kind": {k: f"{found[k]} of {total[k]}" for k in sorted(total)},
        "routes": dict(collections.Counter(r["route"] for r in ok).most_common()),
        "rejects": [
            {
                "file": r["file"],
                "worn": r["file"] in worn,
                "reason": r["reason"],
                "detail": r["detail"],
            }
            for r in rows
            if not r["ok"]
        ],
        "ingest_rejects": int(len(rejects)),
        "cpu_s_per_photo": round(cpu / max(len(rows), 1), 3),
        "wall_s": round(wall, 1),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
