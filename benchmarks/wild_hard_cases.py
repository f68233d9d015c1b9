"""Hard cases of real-world photos made from UTKFace, and the align + mask coverage on them.

``make``: from the UTKFace archive (or any folder or archive of UTKFace-named faces), a seeded
set of pictures: faces rotated, small, off-centre, turned, mirrored, two in a picture, mixed,
on 448 px backgrounds, with a labels file in each format the ``external`` stage reads
(:func:`maskprivacy.datasets.hard_cases.generate`; keep it outside the repository)::

    python benchmarks/wild_hard_cases.py make ../shared/data/UTKFace.tar.gz /work/wild-hard/set --n 420

``measure``: the package's align + mask on that set with each ``align.detector``, in this
process (one core), with the ``align`` params an external set's jobs get (no prior box, the
default CNN levels: :func:`maskprivacy.stages.align.external_params`): coverage (labelled faces
aligned and masked, per kind), images per second, and every loss with its reason::

    python benchmarks/wild_hard_cases.py measure /work/wild-hard/set --params presets/utkface.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from maskprivacy.datasets import hard_cases  # noqa: E402
from maskprivacy.faces.detect import DETECTORS  # noqa: E402
from maskprivacy.masks.sets import set_params  # noqa: E402
from maskprivacy.stages.align import external_params  # noqa: E402


def make(args: argparse.Namespace) -> int:
    summary = hard_cases.generate(args.source, args.out, n=args.n, seed=args.seed, size=args.size)
    print(json.dumps(summary, indent=1))
    return 0


def measure(args: argparse.Namespace) -> int:
    params = yaml.safe_load(args.params.read_text())
    mask_cfg = set_params(params["mask"], next(iter(params["mask"]["sets"])))
    out: dict[str, dict] = {}
    pd.set_option("display.width", 200)
    for det in args.detectors.split(","):
        cfg, note = external_params({**params["align"], "detector": det})
        if note:
            print(f"as an external set: {note}")
        with tempfile.TemporaryDirectory() as work:
            results, seconds = hard_cases.measure(args.set, cfg, mask_cfg, work, args.limit)
        tab = hard_cases.coverage(results)
        n = len(results)
        print(f"\nalign.detector {det}: {n} pictures, {n / seconds:.2f} img/s per CPU second")
        print(tab.to_string())
        print("routes:", results["route"].value_counts().to_dict())
        lost = results[results["outcome"] != "covered"]
        for r in lost.itertuples():
            print(f"  lost {r.file} ({r.kind}): {r.outcome}: {r.detail}")
        out[det] = {
            "n": n,
            "img_s": n / seconds,
            "coverage": float(tab.loc["all", "coverage"]),
            "by_kind": tab["coverage"].to_dict(),
            "losses": lost[["file", "kind", "outcome", "detail"]].to_dict(orient="records"),
        }
        if args.csv:
            results.to_csv(args.csv.with_name(f"{args.csv.stem}_{det}{args.csv.suffix}"))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="make the set")
    m.add_argument("source", type=Path, help="UTKFace archive or folder")
    m.add_argument("out", type=Path, help="the set's folder (replaced)")
    m.add_argument("--n", type=int, default=420)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--size", type=int, default=448)
    m.set_defaults(func=make)
    s = sub.add_parser("measure", help="align + mask coverage and speed on the set")
    s.add_argument("set", type=Path, help="a folder made by make")
    s.add_argument("--params", type=Path, default=Path("presets/utkface.yaml"))
    s.add_argument("--detectors", default=",".join(DETECTORS))
    s.add_argument("--limit", type=int, default=None, help="the first N pictures only")
    s.add_argument("--json", type=Path, default=None)
    s.add_argument("--csv", type=Path, default=None, help="per-picture results, one per detector")
    s.set_defaults(func=measure)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
